"""`datagate detect train / replay / evaluate / generate / quality`: the detector's offline tools.

User mistakes (missing or bad files, bad config) raise ConfigError: one line, exit 2.
"""

from __future__ import annotations

import argparse
import math
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml

from detectors.config import DetectionConfig
from detectors.evaluate import Quality, ScenarioQuality, evaluate, format_quality
from detectors.events import AccessEvent, event_from_dict, read_events
from detectors.model import DetectorModel
from detectors.online import Detector
from detectors.replay import score_events
from detectors.scenarios import generate, write
from detectors.training import train
from gateway.configtree import build
from gateway.errors import ConfigError

__all__ = ["load_detection_config", "register"]


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "detect", help="train, replay and evaluate the abnormal-access detector"
    )
    sub = parser.add_subparsers(dest="detect_command", metavar="SUBCOMMAND")
    sub.required = True

    fit = sub.add_parser("train", help="fit baselines and the anomaly model on normal history")
    fit.add_argument("--events", required=True, type=Path, help="history (access events, JSONL)")
    fit.add_argument("--out", required=True, type=Path, help="model file to write")
    _common(fit)
    fit.set_defaults(handler=cmd_train)

    rep = sub.add_parser("replay", help="fit on history, then score events in time order")
    rep.add_argument("--baseline", required=True, type=Path, help="history to fit on (JSONL)")
    rep.add_argument("--events", required=True, type=Path, help="events to score (JSONL)")
    rep.add_argument("--out", required=True, type=Path, help="scores to write (JSONL)")
    _common(rep)
    rep.set_defaults(handler=cmd_replay)

    ev = sub.add_parser("evaluate", help="detection quality on labelled events")
    ev.add_argument("--events", required=True, type=Path, help="events with a `label` field")
    ev.add_argument("--baseline", type=Path, help="history to fit on; without it: rules only")
    _common(ev)
    ev.set_defaults(handler=cmd_evaluate)

    gen = sub.add_parser("generate", help="write labelled scenario data (history + test days)")
    gen.add_argument("--seed", type=int, default=0, help="random seed of the scenarios (0)")
    gen.add_argument("--out", required=True, type=Path, help="directory for history/test.jsonl")
    gen.add_argument("--principals", type=int, default=60, help="principals to simulate (60)")
    gen.add_argument("--history-days", type=int, default=13, help="days of history (13)")
    gen.add_argument("--test-days", type=int, default=5, help="days of test data (5)")
    gen.set_defaults(handler=cmd_generate)

    qual = sub.add_parser(
        "quality",
        help="the full evaluation: per seed, generate, train on 10 days, "
        "calibrate on 3, test on 5 days with attacks",
    )
    qual.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4], help="scenario seeds (0 1 2 3 4)"
    )
    qual.add_argument("--principals", type=int, default=60, help="principals to simulate (60)")
    qual.add_argument("--config", type=Path, help="YAML file whose `detection:` key is used")
    qual.add_argument(
        "--rules-only", action="store_true", help="score with rules and baselines, no forest"
    )
    qual.set_defaults(handler=cmd_quality)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--config", type=Path, help="YAML file whose `detection:` key is used")
    parser.add_argument(
        "--holdout-days",
        type=int,
        help="last days of history used to set the threshold (default: a quarter, at least 1)",
    )
    parser.add_argument("--seed", type=int, default=0, help="random seed of the forest")


def load_detection_config(path: Path | None) -> DetectionConfig:
    """DetectionConfig from the `detection:` key of a YAML file (other keys are ignored)."""
    if path is None:
        return DetectionConfig()
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{path}:{mark.line + 1}" if mark else str(path)
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    try:
        return build(DetectionConfig, data.get("detection"), "detection")
    except ConfigError as exc:
        raise ConfigError(f"{path}: {exc}") from None


def _load(path: Path, *, require_label: bool = False) -> list[AccessEvent]:
    events = list(read_events(path, require_label=require_label))
    if not events:
        raise ConfigError(f"{path}: no access events")
    return events


def _holdout_days(events: Sequence[AccessEvent], chosen: int | None) -> int:
    if chosen is not None:
        if chosen < 0:
            raise ConfigError(f"--holdout-days: must be >= 0, got {chosen}")
        return chosen
    span = (max(e.ts for e in events) - min(e.ts for e in events)) / 86400
    return 0 if span < 2 else max(1, round(span / 4))


def _fit(
    events: list[AccessEvent],
    config: DetectionConfig,
    args: argparse.Namespace,
    out: Any = sys.stderr,
) -> DetectorModel:
    model, report = train(
        events, config, holdout_days=_holdout_days(events, args.holdout_days), seed=args.seed
    )
    print(
        f"trained on {report.train_events} events, threshold set on {report.holdout_events} "
        f"held-out events: {report.principals} principals, threshold {report.threshold:.4f}, "
        f"{report.holdout_rule_flagged} held-out principals flagged by rules",
        file=out,
    )
    return model


def cmd_train(args: argparse.Namespace) -> int:
    config = load_detection_config(args.config)
    model = _fit(_load(args.events), config, args, sys.stdout)
    model.save(args.out)
    print(f"model written to {args.out}")
    return 0


def cmd_replay(args: argparse.Namespace) -> int:
    config = load_detection_config(args.config)
    model = _fit(_load(args.baseline), config, args)
    events = _load(args.events)
    started = time.perf_counter()
    scores = score_events(Detector(config, model), events)
    elapsed = time.perf_counter() - started
    try:
        with args.out.open("wb") as handle:
            for score in scores:
                handle.write(orjson.dumps(score.to_dict()) + b"\n")
    except OSError as exc:
        raise ConfigError(f"{args.out}: cannot write scores: {exc.strerror}") from None
    flagged = sum(s.anomalous for s in scores)
    print(
        f"scored {len(scores)} events ({len(scores) / max(elapsed, 1e-9):,.0f} events/s), "
        f"{flagged} anomalous; written to {args.out}",
        file=sys.stderr,
    )
    return 0


def cmd_evaluate(args: argparse.Namespace) -> int:
    config = load_detection_config(args.config)
    model = _fit(_load(args.baseline), config, args) if args.baseline else None
    events = _load(args.events, require_label=True)
    scores = score_events(Detector(config, model), events)
    print(format_quality(evaluate(events, scores)))
    return 0


def cmd_generate(args: argparse.Namespace) -> int:
    for name in ("principals", "history_days", "test_days"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1")
    scenario = generate(
        args.seed,
        principals=args.principals,
        history_days=args.history_days,
        test_days=args.test_days,
    )
    try:
        history, test = write(scenario, args.out)
    except OSError as exc:
        raise ConfigError(f"{args.out}: cannot write scenario: {exc.strerror}") from None
    print(f"{len(scenario.history)} history events -> {history}")
    print(f"{len(scenario.test)} labelled test events -> {test}")
    return 0


def _merge(total: Quality | None, part: Quality) -> Quality:
    if total is None:
        return part
    for name, q in part.scenarios.items():
        merged = total.scenarios.setdefault(name, ScenarioQuality())
        merged.actors += q.actors
        merged.detected += q.detected
        merged.ttd.extend(q.ttd)
    total.normal_actors += part.normal_actors
    total.false_positive_actors.extend(part.false_positive_actors)
    total.false_positive_reasons.update(part.false_positive_reasons)
    return total


def cmd_quality(args: argparse.Namespace) -> int:
    config = load_detection_config(args.config)
    total: Quality | None = None
    precision, recall, auc = [], [], []
    for seed in args.seeds:
        scenario = generate(seed, principals=args.principals)
        history = [event_from_dict(e) for e in scenario.history]
        test = [event_from_dict(e) for e in scenario.test]
        model, report = train(history, config, holdout_days=3, seed=seed)
        if args.rules_only:
            model.forest = None
        quality = evaluate(test, score_events(Detector(config, model), test))
        print(f"--- seed {seed}: threshold {report.threshold:.4f}")
        print(format_quality(quality))
        quality.false_positive_actors = [f"{seed}:{a}" for a in quality.false_positive_actors]
        quality.false_positive_reasons = {
            f"{seed}:{a}": r for a, r in quality.false_positive_reasons.items()
        }
        precision.append(quality.precision)
        recall.append(quality.recall)
        auc.append(quality.pr_auc)
        total = _merge(total, quality)
    assert total is not None
    total.precision = math.fsum(precision) / len(precision)
    total.recall = math.fsum(recall) / len(recall)
    total.pr_auc = math.fsum(auc) / len(auc)
    print(f"=== all seeds {args.seeds} (event figures are means over seeds)")
    print(format_quality(total))
    return 0
