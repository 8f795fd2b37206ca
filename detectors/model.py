"""The anomaly model: IsolationForest fitted with scikit-learn, scored by a vectorised numpy
traversal, and saved with the principals' and groups' profiles as a versioned, pickle-free file."""

from __future__ import annotations

import dataclasses
import io
import math
from pathlib import Path
from typing import Any

import numpy as np
import orjson

from detectors.features import FEATURE_NAMES
from detectors.profiles import GroupProfile, Profile
from gateway.errors import ConfigError

__all__ = ["FORMAT", "FORMAT_VERSION", "DetectorModel", "FastForest", "fit_forest", "load_model"]

FORMAT = "datagate-detector"
FORMAT_VERSION = 2
_ARRAYS = ("feature", "threshold", "left", "right", "value", "roots")


def _average_path_length(n: float) -> float:
    """Expected path length of an unsuccessful search in a binary tree of n samples."""
    if n <= 1:
        return 0.0
    if n == 2:
        return 1.0
    return 2.0 * (math.log(n - 1.0) + np.euler_gamma) - 2.0 * (n - 1.0) / n


class FastForest:
    """All trees of an isolation forest as flat arrays, scored for many rows at once.

    Leaves point to themselves with an infinite threshold, so walking `depth` steps from
    every root lands every row on its leaf in every tree, with no per-row Python work.
    """

    __slots__ = (
        "_children",
        "denominator",
        "depth",
        "feature",
        "left",
        "n_features",
        "right",
        "roots",
        "threshold",
        "value",
    )

    def __init__(
        self,
        feature: np.ndarray,
        threshold: np.ndarray,
        left: np.ndarray,
        right: np.ndarray,
        value: np.ndarray,
        roots: np.ndarray,
        denominator: float,
        depth: int,
        n_features: int,
    ) -> None:
        n = len(feature)
        if not (len(threshold) == len(left) == len(right) == len(value) == n) or n == 0:
            raise ValueError("node arrays differ in length")
        if len(roots) == 0 or roots.min() < 0 or roots.max() >= n:
            raise ValueError("roots out of range")
        if left.min() < 0 or left.max() >= n or right.min() < 0 or right.max() >= n:
            raise ValueError("children out of range")
        if feature.min() < 0 or feature.max() >= n_features:
            raise ValueError("feature index out of range")
        if not denominator > 0 or not 0 < depth <= 64:
            raise ValueError("bad denominator or depth")
        self.feature = feature.astype(np.intp)
        self.threshold = threshold.astype(np.float64)
        self.left = left.astype(np.intp)
        self.right = right.astype(np.intp)
        self.value = value.astype(np.float64)
        self.roots = roots.astype(np.intp)
        self.denominator = float(denominator)
        self.depth = int(depth)
        self.n_features = int(n_features)
        # children[2 * node + went_right]: one gather per level instead of two and a select.
        self._children = np.stack([self.left, self.right], axis=1).ravel()

    @classmethod
    def from_sklearn(cls, forest: Any) -> FastForest:
        """Flatten a fitted `sklearn.ensemble.IsolationForest`."""
        n_features = int(forest.n_features_in_)
        parts: dict[str, list[np.ndarray]] = {k: [] for k in _ARRAYS[:-1]}
        roots: list[int] = []
        offset = 0
        depth = 0
        for estimator, features, apl, dpl in zip(
            forest.estimators_,
            forest.estimators_features_,
            forest._average_path_length_per_tree,
            forest._decision_path_lengths,
            strict=True,
        ):
            tree = estimator.tree_
            leaf = tree.children_left < 0
            nodes = np.arange(tree.node_count)
            # Trees fitted on a feature subset index into that subset.
            parts["feature"].append(np.where(leaf, 0, np.asarray(features)[tree.feature.clip(0)]))
            parts["threshold"].append(np.where(leaf, np.inf, tree.threshold))
            parts["left"].append(np.where(leaf, nodes, tree.children_left) + offset)
            parts["right"].append(np.where(leaf, nodes, tree.children_right) + offset)
            parts["value"].append(np.where(leaf, dpl + apl - 1.0, 0.0))
            roots.append(offset)
            offset += tree.node_count
            depth = max(depth, int(tree.max_depth))
        denominator = len(forest.estimators_) * _average_path_length(forest._max_samples)
        return cls(
            *(np.concatenate(parts[k]) for k in _ARRAYS[:-1]),
            roots=np.asarray(roots),
            denominator=denominator,
            depth=max(depth, 1),
            n_features=n_features,
        )

    def anomaly(self, X: np.ndarray) -> np.ndarray:
        """Anomaly in (0, 1) per row: equals `-IsolationForest.score_samples(X)`."""
        rows = np.asarray(X, dtype=np.float32)
        if rows.ndim != 2 or rows.shape[1] != self.n_features:
            raise ValueError(f"expected rows of {self.n_features} features")
        # Like scikit-learn: compare float32 inputs against float64 thresholds.
        flat = rows.astype(np.float64).ravel()
        base = (np.arange(rows.shape[0]) * self.n_features)[:, None]
        node = np.repeat(self.roots[None, :], rows.shape[0], axis=0)
        feature, threshold, children = self.feature, self.threshold, self._children
        for _ in range(self.depth):
            went_right = flat.take(base + feature.take(node)) > threshold.take(node)
            node = children.take(2 * node + went_right)
        depths = self.value.take(node).sum(axis=1)
        return np.power(2.0, -depths / self.denominator)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in _ARRAYS}


def fit_forest(X: np.ndarray, seed: int = 0, n_estimators: int = 100) -> Any:
    """Fit scikit-learn's IsolationForest on normal feature rows."""
    from sklearn.ensemble import IsolationForest

    forest = IsolationForest(n_estimators=n_estimators, max_samples=256, random_state=seed)
    forest.fit(np.asarray(X, dtype=np.float32))
    return forest


@dataclasses.dataclass(slots=True)
class DetectorModel:
    """A trained detector: the forest, its calibrated threshold, and what is normal: the
    principals' profiles, the peer groups' profiles, and the daily peaks of departments and
    addresses (`aggregates`, keyed `department:NAME` / `address:IP`: distinct records, requests).

    `threshold` is the smoothed anomaly at which the model score reaches 0.5 (anomalous).
    Without a forest (while training, or profiles only) it holds just the profiles.
    """

    forest: FastForest | None
    threshold: float
    profiles: dict[str, Profile]
    groups: dict[str, GroupProfile]
    aggregates: dict[str, tuple[float, float]]
    feature_names: tuple[str, ...] = FEATURE_NAMES
    info: dict[str, Any] = dataclasses.field(default_factory=dict)

    def save(self, path: Path) -> None:
        if self.forest is None:
            raise ValueError("cannot save a model without a forest")
        meta = {
            "format": FORMAT,
            "version": FORMAT_VERSION,
            "feature_names": list(self.feature_names),
            "threshold": self.threshold,
            "denominator": self.forest.denominator,
            "depth": self.forest.depth,
            "profiles": {k: p.to_dict() for k, p in self.profiles.items()},
            "groups": {k: g.to_dict() for k, g in self.groups.items()},
            "aggregates": {k: list(v) for k, v in self.aggregates.items()},
            "info": self.info,
        }
        buffer = io.BytesIO()
        np.savez_compressed(
            buffer,
            meta=np.frombuffer(orjson.dumps(meta), dtype=np.uint8),
            **self.forest.arrays(),
        )
        try:
            path.write_bytes(buffer.getvalue())
        except OSError as exc:
            raise ConfigError(f"{path}: cannot write model: {exc.strerror}") from None


def load_model(path: Path) -> DetectorModel:
    """Read a model file; any problem is a ConfigError naming the file."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read model: {exc.strerror}") from None
    try:
        with np.load(io.BytesIO(data), allow_pickle=False) as npz:
            arrays = {k: npz[k] for k in (*_ARRAYS, "meta")}
        meta = orjson.loads(arrays.pop("meta").tobytes())
    except (OSError, ValueError, KeyError, orjson.JSONDecodeError) as exc:
        raise ConfigError(f"{path}: not a DataGate detector model ({exc})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise ConfigError(f"{path}: not a DataGate detector model")
    if meta.get("version") != FORMAT_VERSION:
        raise ConfigError(
            f"{path}: model format version {meta.get('version')!r} is not supported "
            f"(expected {FORMAT_VERSION}); retrain with `datagate detect train`"
        )
    names = tuple(meta.get("feature_names") or ())
    if names != FEATURE_NAMES:
        raise ConfigError(
            f"{path}: model features do not match this version's features; retrain it"
        )
    try:
        forest = FastForest(
            **arrays,
            denominator=float(meta["denominator"]),
            depth=int(meta["depth"]),
            n_features=len(FEATURE_NAMES),
        )
        threshold = float(meta["threshold"])
        profiles = {str(k): Profile.from_dict(v) for k, v in meta["profiles"].items()}
        groups = {str(k): GroupProfile.from_dict(v) for k, v in meta["groups"].items()}
        aggregates = {
            str(k): (float(v[0]), float(v[1])) for k, v in meta["aggregates"].items()
        }
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise ConfigError(f"{path}: corrupt model ({exc})") from None
    if not 0 < threshold < 1:
        raise ConfigError(f"{path}: corrupt model (bad threshold)")
    return DetectorModel(
        forest, threshold, profiles, groups, aggregates, names, meta.get("info", {})
    )
