"""`datagate detect train / replay / evaluate / generate / quality`: the detector's offline tools.

User mistakes (missing or bad files, bad config) raise ConfigError: one line, exit 2.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
import yaml
from tqdm import tqdm

from detectors import orgsim
from detectors.config import DetectionConfig
from detectors.evaluate import Quality, ScenarioQuality, evaluate, format_quality
from detectors.events import AccessEvent, event_from_dict, read_events
from detectors.model import DetectorModel
from detectors.online import Detector
from detectors.replay import score_events
from detectors.scenarios import Scenario, generate, write
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
    gen.add_argument(
        "--generator",
        choices=sorted(GENERATORS),
        default="basic",
        help="basic: the detector's own scenarios (default); org: an independently written "
        "organisation (detectors/orgsim.py)",
    )
    gen.add_argument("--principals", type=int, help="basic only (default 60)")
    gen.add_argument("--history-days", type=int, help="default: basic 13, org 21")
    gen.add_argument("--test-days", type=int, help="default: basic 5, org 7")
    gen.set_defaults(handler=cmd_generate)

    qual = sub.add_parser(
        "quality",
        help="the full evaluation: per seed, generate, train on 10 days, "
        "calibrate on 3, test on 5 days with attacks",
    )
    qual.add_argument(
        "--seeds", type=int, nargs="+", default=[0, 1, 2], help="scenario seeds (0 1 2)"
    )
    qual.add_argument(
        "--generator",
        action="append",
        choices=sorted(_generators()),
        help="traffic generator(s) to evaluate (default: every available one); with two or "
        "more, cross-generator figures too (train on one's history, test on the other's)",
    )
    qual.add_argument("--verbose", action="store_true", help="name every false positive")
    qual.add_argument("--principals", type=int, default=60, help="basic generator only")
    qual.add_argument("--config", type=Path, help="YAML file whose `detection:` key is used")
    qual.add_argument(
        "--rules-only", action="store_true", help="score with rules and baselines, no forest"
    )
    qual.set_defaults(handler=cmd_quality)


def _generators() -> dict[str, Any]:
    """The labelled traffic generators: name -> `make(seed, principals)` giving a Scenario."""
    return {
        "basic": lambda seed, principals: generate(seed, principals=principals),
        "org": lambda seed, principals: orgsim.generate(seed),
    }


def _bar(events: Any, what: str) -> Any:
    """A progress bar on a terminal (tqdm: well kept, and silent when stderr is not a TTY)."""
    return tqdm(events, desc=what, unit="ev", leave=False, disable=None, mininterval=0.5)


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
        events,
        config,
        holdout_days=_holdout_days(events, args.holdout_days),
        seed=args.seed,
        progress=_bar,
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
    with tqdm(total=len(events), desc="replay", unit="ev", leave=False, disable=None) as bar:
        scores = score_events(Detector(config, model), events, progress=bar.update)
    elapsed = time.perf_counter() - started
    try:
        with args.out.open("wb") as handle:
            for score in scores:
                handle.write(orjson.dumps(score.to_dict()) + b"\n")
    except OSError as exc:
        raise ConfigError(f"{args.out}: cannot write scores: {exc.strerror}") from None
    flagged = sum(s.anomalous for s in scores)
    print(
        f"scored {len(scores)} events ({len(scores) / max(elapsed, 1e-9):,.0f} events/s on one "
        f"core), {flagged} anomalous, {sum(s.incident for s in scores)} raising incidents; "
        f"written to {args.out}",
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


# name -> (default history days, default test days)
GENERATORS = {"basic": (13, 5), "org": (21, 7)}


def cmd_generate(args: argparse.Namespace) -> int:
    history_days, test_days = GENERATORS[args.generator]
    args.history_days = history_days if args.history_days is None else args.history_days
    args.test_days = test_days if args.test_days is None else args.test_days
    if args.generator == "org" and args.principals is not None:
        raise ConfigError("--principals: the org generator sizes its organisation from the seed")
    args.principals = 60 if args.principals is None else args.principals
    for name in ("principals", "history_days", "test_days"):
        if getattr(args, name) < 1:
            raise ConfigError(f"--{name.replace('_', '-')}: must be >= 1")
    if args.generator == "org":
        scenario = orgsim.generate(
            args.seed, history_days=args.history_days, test_days=args.test_days
        )
    else:
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
        merged.suspended += q.suspended
        merged.ttd.extend(q.ttd)
    total.normal_actors += part.normal_actors
    total.false_positive_actors.extend(part.false_positive_actors)
    total.false_positive_reasons.update(part.false_positive_reasons)
    total.suspended_actors.extend(part.suspended_actors)
    total.precision += part.precision
    total.recall += part.recall
    total.pr_auc += part.pr_auc
    return total


def _events(scenario: Scenario) -> tuple[list[AccessEvent], list[AccessEvent]]:
    return (
        [event_from_dict(e) for e in scenario.history],
        [event_from_dict(e) for e in scenario.test],
    )


def _summary(name: str, q: Quality, runs: int) -> str:
    fast = q.ttd(("burst_scraping", "enumeration"))
    return (
        f"{name:<34} detected {q.detection_rate:>6.1%}  incident FPR {q.actor_fpr:>6.2%}  "
        f"suspended FPR {q.suspended_fpr:>6.2%}  median TTD {_med(q.ttd())} s "
        f"(bursts+enumeration {_med(fast)} s)  PR-AUC {q.pr_auc / runs:.3f}"
    )


def _med(values: list[float]) -> str:
    return f"{sorted(values)[len(values) // 2]:.0f}" if values else "-"


def cmd_quality(args: argparse.Namespace) -> int:
    config = load_detection_config(args.config)
    available = _generators()
    names = args.generator or sorted(available)
    totals: dict[str, Quality] = {}
    runs: dict[str, int] = {}
    for seed in args.seeds:
        data = {n: _events(available[n](seed, args.principals)) for n in names}
        models = {}
        for name in names:
            history, _ = data[name]
            model, _ = train(history, config, holdout_days=3, seed=seed, progress=_bar)
            if args.rules_only:
                model.forest = None
            models[name] = model
        for trained_on in names:
            for tested_on in names:
                test = data[tested_on][1]
                with tqdm(
                    total=len(test),
                    desc=f"{tested_on} seed {seed}",
                    unit="ev",
                    leave=False,
                    disable=None,
                ) as bar:
                    scores = score_events(
                        Detector(config, models[trained_on]), test, progress=bar.update
                    )
                quality = evaluate(test, scores)
                label = tested_on
                if trained_on != tested_on:
                    label = f"{tested_on} (trained on {trained_on})"
                quality.false_positive_actors = [
                    f"{seed}:{a}" for a in quality.false_positive_actors
                ]
                quality.false_positive_reasons = {
                    f"{seed}:{a}": r for a, r in quality.false_positive_reasons.items()
                }
                quality.suspended_actors = [f"{seed}:{a}" for a in quality.suspended_actors]
                print(f"--- {label}, seed {seed}")
                print(format_quality(quality, verbose=args.verbose))
                totals[label] = _merge(totals.get(label), quality)
                runs[label] = runs.get(label, 0) + 1
    for label, total in totals.items():
        n = runs[label]
        print(f"=== {label}: all seeds {args.seeds} (event figures are means over seeds)")
        shown = dataclasses.replace(
            total, precision=total.precision / n, recall=total.recall / n, pr_auc=total.pr_auc / n
        )
        print(format_quality(shown, verbose=args.verbose))
    print("=== summary over seeds " + " ".join(map(str, args.seeds)))
    for label, total in totals.items():
        print(_summary(label, total, runs[label]))
    return 0
