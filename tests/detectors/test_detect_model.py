"""The fast scorer equals scikit-learn; model files load safely and reject bad input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.ensemble import IsolationForest

from detectors.features import FEATURE_NAMES
from detectors.model import DetectorModel, FastForest, load_model
from detectors.profiles import Profile, build_groups
from gateway.errors import ConfigError

N = len(FEATURE_NAMES)


def _rows(seed: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    rows = rng.normal(size=(n, N))
    rows[:, 7] = rng.integers(0, 2, n)  # a binary feature, like off_hours
    return rows


@pytest.mark.parametrize("max_features", [1.0, 0.5])
def test_fast_scorer_equals_scikit_learn(max_features: float) -> None:
    forest = IsolationForest(n_estimators=50, max_features=max_features, random_state=3)
    forest.fit(_rows(0, 3000))
    fast = FastForest.from_sklearn(forest)
    probe = np.vstack([_rows(1, 500) * 3, _rows(2, 10)])
    np.testing.assert_allclose(fast.anomaly(probe), -forest.score_samples(probe), atol=1e-9)
    one = probe[:1]
    np.testing.assert_allclose(fast.anomaly(one), -forest.score_samples(one), atol=1e-9)


def test_fast_scorer_rejects_the_wrong_width() -> None:
    forest = IsolationForest(n_estimators=5, random_state=0).fit(_rows(0, 300))
    with pytest.raises(ValueError, match=f"expected rows of {N} features"):
        FastForest.from_sklearn(forest).anomaly(np.zeros((2, 3)))


def _model() -> DetectorModel:
    forest = IsolationForest(n_estimators=10, random_state=0).fit(_rows(0, 500))
    profile = Profile(days=5, span=5, department="stats", ips=["10.0.0.1"], agents=["ua"])
    profiles = {"alice": profile}
    return DetectorModel(
        FastForest.from_sklearn(forest),
        0.6,
        profiles,
        build_groups(profiles, 3),
        {"department:stats": (10.0, 20.0)},
    )


def test_save_and_load_round_trip(tmp_path: Path) -> None:
    model = _model()
    path = tmp_path / "model.npz"
    model.save(path)
    loaded = load_model(path)
    rows = _rows(5, 20)
    assert loaded.forest is not None and model.forest is not None
    np.testing.assert_array_equal(loaded.forest.anomaly(rows), model.forest.anomaly(rows))
    assert loaded.threshold == 0.6
    assert loaded.profiles["alice"].ips == ["10.0.0.1"]
    assert loaded.groups["stats/staff"].members == 1
    assert loaded.aggregates == {"department:stats": (10.0, 20.0)}


def _rewrite(path: Path, **changes: object) -> None:
    with np.load(path, allow_pickle=False) as npz:
        arrays = {k: npz[k] for k in npz.files}
    for key, value in changes.items():
        arrays[key] = value  # type: ignore[assignment]
    np.savez(path, **arrays)


def test_bad_model_files_are_one_line_errors(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    with pytest.raises(ConfigError, match=r"model.npz: cannot read model: No such file"):
        load_model(path)
    path.write_text("not a model")
    with pytest.raises(ConfigError, match=r"model.npz: not a DataGate detector model"):
        load_model(path)

    _model().save(path)
    with np.load(path, allow_pickle=False) as npz:
        meta = bytes(npz["meta"]).replace(b'"version":2', b'"version":99')
    _rewrite(path, meta=np.frombuffer(meta, dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"model format version 99 is not supported"):
        load_model(path)

    _model().save(path)
    with np.load(path, allow_pickle=False) as npz:
        meta = bytes(npz["meta"]).replace(b'"count_1m"', b'"other"')
    _rewrite(path, meta=np.frombuffer(meta, dtype=np.uint8))
    with pytest.raises(ConfigError, match=r"model features do not match"):
        load_model(path)

    _model().save(path)
    _rewrite(path, left=np.full(3, 10**6))
    with pytest.raises(ConfigError, match=r"corrupt model"):
        load_model(path)


def test_pickled_arrays_are_refused(tmp_path: Path) -> None:
    path = tmp_path / "model.npz"
    _model().save(path)
    _rewrite(path, roots=np.array([object()], dtype=object))
    with pytest.raises(ConfigError, match=r"not a DataGate detector model"):
        load_model(path)
