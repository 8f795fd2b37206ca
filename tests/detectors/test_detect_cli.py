"""`datagate detect ...`: the commands, their outputs and their one-line errors."""

from __future__ import annotations

import argparse
from pathlib import Path

import orjson
import pytest

from detectors.model import load_model
from detectors.scenarios import Scenario, write
from gateway.cli import detect
from gateway.errors import ConfigError


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="datagate")
    detect.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["detect", *argv])
    return int(args.handler(args))


@pytest.fixture(scope="module")
def files(small_scenario: Scenario, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return write(small_scenario, tmp_path_factory.mktemp("scenario"))


def test_train_writes_a_loadable_model(
    files: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    history, _ = files
    out = tmp_path / "model.npz"
    assert _run("train", "--events", str(history), "--out", str(out)) == 0
    assert load_model(out).threshold > 0
    assert "model written to" in capsys.readouterr().out


def test_replay_writes_one_line_per_event_in_order(
    files: tuple[Path, Path], tmp_path: Path
) -> None:
    history, test = files
    out = tmp_path / "scores.jsonl"
    assert _run("replay", "--baseline", str(history), "--events", str(test), "--out", str(out)) == 0
    lines = [orjson.loads(line) for line in out.read_bytes().splitlines()]
    inputs = [orjson.loads(line) for line in test.read_bytes().splitlines()]
    assert [line["request_id"] for line in lines] == [e["request_id"] for e in inputs]
    assert set(lines[0]) == {"request_id", "score", "anomalous", "reasons", "incident", "suspended"}
    assert any(line["anomalous"] for line in lines)


def test_evaluate_prints_the_figures(
    files: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    history, test = files
    assert _run("evaluate", "--events", str(test), "--baseline", str(history)) == 0
    out = capsys.readouterr().out
    for needle in ("credential_stuffing", "FPR", "suspended", "PR-AUC", "median TTD"):
        assert needle in out
    assert _run("evaluate", "--events", str(test)) == 0  # rules only


def test_generate_writes_both_files(tmp_path: Path) -> None:
    assert (
        _run(
            "generate",
            "--seed",
            "1",
            "--out",
            str(tmp_path),
            "--principals",
            "10",
            "--history-days",
            "1",
            "--test-days",
            "1",
        )
        == 0
    )
    assert (tmp_path / "history.jsonl").stat().st_size > 0
    assert (tmp_path / "test.jsonl").stat().st_size > 0


def test_config_file_uses_only_the_detection_key(files: tuple[Path, Path], tmp_path: Path) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text("listen: {port: 1}\ndetection:\n  high_frequency: {per_minute: 5}\n")
    assert detect.load_detection_config(config).high_frequency.per_minute == 5


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("detection: [1]\n", "gateway.yaml: detection: expected a mapping, got list"),
        ("detection: {nope: 1}\n", "gateway.yaml: detection.nope: unknown key"),
        ("- a\n", "gateway.yaml: expected a mapping at the top level"),
        ("detection: {a: [\n", "gateway.yaml:2: invalid YAML"),
    ],
)
def test_bad_config_files(tmp_path: Path, text: str, message: str) -> None:
    config = tmp_path / "gateway.yaml"
    config.write_text(text)
    with pytest.raises(ConfigError) as info:
        detect.load_detection_config(config)
    assert message in str(info.value)


def test_user_mistakes_are_one_line_errors(files: tuple[Path, Path], tmp_path: Path) -> None:
    history, test = files
    missing = tmp_path / "missing.jsonl"
    with pytest.raises(ConfigError, match=r"missing.jsonl: cannot read events"):
        _run("train", "--events", str(missing), "--out", str(tmp_path / "m"))
    with pytest.raises(ConfigError, match=r"cannot read config"):
        _run(
            "replay",
            "--baseline",
            str(history),
            "--events",
            str(test),
            "--out",
            str(tmp_path / "s"),
            "--config",
            str(missing),
        )
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n")
    with pytest.raises(ConfigError, match=r"empty.jsonl: no access events"):
        _run("train", "--events", str(empty), "--out", str(tmp_path / "m"))
    unlabelled = tmp_path / "unlabelled.jsonl"
    unlabelled.write_bytes(test.read_bytes().replace(b',"label":"normal"', b""))
    with pytest.raises(ConfigError, match=r"unlabelled.jsonl:\d+: label: missing"):
        _run("evaluate", "--events", str(unlabelled))
    with pytest.raises(ConfigError, match=r"cannot write scores"):
        _run(
            "replay",
            "--baseline",
            str(history),
            "--events",
            str(test),
            "--out",
            str(tmp_path / "no" / "dir" / "s.jsonl"),
        )
    with pytest.raises(ConfigError, match=r"--holdout-days: must be >= 0"):
        _run(
            "train", "--events", str(history), "--out", str(tmp_path / "m"), "--holdout-days", "-1"
        )
    with pytest.raises(ConfigError, match=r"--principals: must be >= 1"):
        _run("generate", "--out", str(tmp_path), "--principals", "0")
