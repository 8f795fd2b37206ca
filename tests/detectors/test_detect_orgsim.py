"""The organisation generator: seeded, in the access-event shape, with its calendar, shared
addresses, service routines and every declared normal and attack kind."""

from __future__ import annotations

import argparse
import datetime as dt
import itertools
import os
import subprocess
import sys
from collections import Counter, defaultdict
from pathlib import Path
from typing import Any

import orjson
import pytest

from detectors.evaluate import _attack_actors
from detectors.events import event_from_dict, read_events
from detectors.orgsim import ATTACK_KINDS, CALENDAR, DATASETS, NORMAL_KINDS, generate
from detectors.scenarios import Scenario, write
from gateway.cli import detect
from gateway.errors import ConfigError


@pytest.fixture(scope="module")
def org() -> Scenario:
    return generate(5)


def _day(event: dict[str, Any]) -> dt.date:
    return dt.date.fromisoformat(event["ts"][:10])


def _hour(event: dict[str, Any]) -> float:
    return int(event["ts"][11:13]) + int(event["ts"][14:16]) / 60


def test_same_seed_same_events_other_seed_other_events() -> None:
    a = generate(11, history_days=2, test_days=2)
    b = generate(11, history_days=2, test_days=2)
    c = generate(12, history_days=2, test_days=2)
    assert a.history == b.history and a.test == b.test
    assert a.test != c.test


def test_a_seed_generates_in_a_separate_process_identically() -> None:
    """No per-process state (such as str hashing) leaks into the events."""
    here = generate(3, history_days=1, test_days=1)
    code = (
        "import sys, orjson; from detectors.orgsim import generate; "
        "s = generate(3, history_days=1, test_days=1); "
        "sys.stdout.buffer.write(orjson.dumps([s.history[-50:], s.test[-50:]]))"
    )
    env = {**os.environ, "PYTHONHASHSEED": "7"}
    other = subprocess.run(
        [sys.executable, "-c", code], check=True, capture_output=True, env=env
    ).stdout
    assert orjson.loads(other) == [here.history[-50:], here.test[-50:]]


def test_every_declared_kind_is_present(org: Scenario) -> None:
    kinds = {e["kind"] for e in itertools.chain(org.history, org.test)}
    assert kinds == set(NORMAL_KINDS) | set(ATTACK_KINDS)
    assert {e["label"] for e in org.history} == {"normal"}
    assert {e["label"] for e in org.test} == {"normal", *ATTACK_KINDS}
    for event in itertools.chain(org.history, org.test):
        assert (event["label"] == "normal") == (event["kind"] in NORMAL_KINDS)


def test_about_two_hundred_principals_in_eight_departments(org: Scenario) -> None:
    principals = {e["principal"] for e in org.history if e["principal"]}
    assert 150 <= len(principals) <= 250
    assert len({e["department"] for e in org.history if e["department"]}) == 8


def test_about_thirty_attack_actors_as_evaluate_counts_them(org: Scenario) -> None:
    attacks = [event_from_dict(e) for e in org.test if e["label"] != "normal"]
    roots = set(_attack_actors(attacks).values())
    assert 28 <= len(roots) <= 40
    assert len(roots) == len({(e["label"], e["actor"]) for e in org.test if e["label"] != "normal"})


def test_events_are_valid_access_events_that_replay_reads(org: Scenario, tmp_path: Path) -> None:
    small = Scenario(org.history[::97], org.test[::31])
    history, test = write(small, tmp_path)
    assert len(list(read_events(history))) == len(small.history)
    parsed = list(read_events(test, require_label=True))
    assert len(parsed) == len(small.test)
    for raw, event in zip(small.test, parsed, strict=True):
        ds = DATASETS[raw["dataset"]]
        assert raw["path"].startswith(ds.collection) and event.level == ds.level
        assert raw["status"] in (200, 401, 403, 404, 429)
        assert (raw["decision"] == "deny") == (raw["status"] in (401, 403, 429))
        assert (raw["principal"] is None) == (raw["status"] == 401)
        assert raw["ts"].endswith("+08:00")
        if raw["action"] == "read":
            assert event.record_id == raw["path"].rsplit("/", 1)[1]
        if raw["status"] != 200:
            assert raw["records_out"] == 0
    for part in (org.history, org.test):
        stamps = [e["ts"] for e in part]
        assert stamps == sorted(stamps)
    assert org.history[-1]["ts"] < org.test[0]["ts"]


def test_all_statuses_appear(org: Scenario) -> None:
    assert {e["status"] for e in org.test} == {200, 401, 403, 404, 429}


def _office_traffic(events: list[dict[str, Any]]) -> Counter[dt.date]:
    office = {"office", "early_starter", "late_worker", "manager", "analyst", "branch_nat"}
    return Counter(_day(e) for e in events if e["kind"] in office)


def test_holiday_week_is_quiet_and_make_up_saturdays_are_worked(org: Scenario) -> None:
    per_day = _office_traffic(org.history + org.test)
    ordinary = [n for day, n in per_day.items() if day.weekday() < 5 and CALENDAR.working(day)]
    typical = sorted(ordinary)[len(ordinary) // 2]
    for day in CALENDAR.holidays:
        assert per_day[day] < typical * 0.1, day
    for day in CALENDAR.makeup_days:
        assert day.weekday() == 5
        assert per_day[day] > typical * 0.6, day
    sundays = [n for day, n in per_day.items() if day.weekday() == 6]
    assert max(sundays) < typical * 0.1


def test_round_the_clock_desks_keep_working_through_the_holiday(org: Scenario) -> None:
    desk = Counter(_day(e) for e in org.history if e["kind"] in ("desk_24x7", "shift_worker"))
    for day in CALENDAR.holidays:
        assert desk[day] > 100, day
    night = [e for e in org.history if e["kind"] == "desk_24x7" and _hour(e) < 6]
    assert len(night) > 500


def test_quarter_end_is_a_peak(org: Scenario) -> None:
    exports = Counter(
        _day(e) for e in org.history if e["kind"] == "analyst" and e["action"] == "export"
    )
    quarter_end = exports[dt.date(2026, 9, 29)] + exports[dt.date(2026, 9, 30)]
    others = [n for day, n in exports.items() if day.month == 9 and day.day < 28]
    assert quarter_end > 2 * max(others, default=0)


def test_early_starters_begin_at_half_past_seven(org: Scenario) -> None:
    first: dict[tuple[str, dt.date], float] = {}
    for event in org.history:
        if event["kind"] == "early_starter":
            first.setdefault((event["principal"], _day(event)), _hour(event))
    starts = sorted(first.values())
    assert 7.2 < starts[len(starts) // 2] < 8.0


def test_nat_addresses_are_shared_by_several_principals(org: Scenario) -> None:
    behind: dict[str, set[str]] = defaultdict(set)
    for event in org.history:
        if event["principal"] and event["client_ip"].startswith("100.64."):
            behind[event["client_ip"]].add(event["principal"])
    assert len(behind) >= 3
    assert all(len(users) >= 5 for users in behind.values())
    # an attacker hides behind one of them during the test days
    sheltered = {e["client_ip"] for e in org.test if e["label"] == "nat_shelter"}
    assert len(sheltered) == 1 and sheltered <= behind.keys()


def test_nightly_service_routines_repeat_every_history_night(org: Scenario) -> None:
    nights = {_day(e) for e in org.history}
    runs: dict[tuple[str, str], set[dt.date]] = defaultdict(set)
    hours: dict[str, list[float]] = defaultdict(list)
    for event in org.history:
        if event["kind"] in ("svc_nightly_sync", "svc_page_crawl", "svc_nightly_export"):
            runs[(event["kind"], event["principal"])].add(_day(event))
            hours[event["principal"]].append(_hour(event))
    assert {k for k, _ in runs} == {"svc_nightly_sync", "svc_page_crawl", "svc_nightly_export"}
    for (kind, name), days in runs.items():
        assert days >= nights - {min(nights)}, (kind, name)
        spread = max(hours[name]) - min(hours[name])
        assert spread < 3 or kind == "svc_page_crawl", (kind, name)  # same hour every night


def test_the_nightly_sync_walks_ids_in_order(org: Scenario) -> None:
    walked: dict[str, list[int]] = defaultdict(list)
    for event in org.history:
        if event["kind"] == "svc_nightly_sync":
            walked[event["principal"]].append(int(event["record_id"]))
    for ids in walked.values():
        steps = Counter(b - a for a, b in itertools.pairwise(ids))
        assert steps[1] > 0.99 * (len(ids) - 1) - 2  # +1 each time; wraps once at most


def test_hourly_pollers_poll_every_hour(org: Scenario) -> None:
    hours: dict[str, set[tuple[dt.date, int]]] = defaultdict(set)
    for event in org.history:
        if event["kind"] == "svc_hourly_poller":
            hours[event["principal"]].add((_day(event), int(event["ts"][11:13])))
    days = len({_day(e) for e in org.history})
    for seen in hours.values():
        assert len(seen) >= 24 * days - 2


def test_new_staff_have_no_history(org: Scenario) -> None:
    new = {e["principal"] for e in org.test if e["kind"] == "new_staff"}
    assert new and not new & {e["principal"] for e in org.history}


def test_misconfigured_client_bursts_404s(org: Scenario) -> None:
    minutes = Counter(
        (e["principal"], e["ts"][:16])
        for e in org.history
        if e["kind"] == "svc_misconfigured" and e["status"] == 404
    )
    assert max(minutes.values()) >= 30


def test_attacks_keep_their_disguises(org: Scenario) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = defaultdict(list)
    for event in org.test:
        by_kind[event["label"]].append(event)
    # slow credential stuffing: under one attempt per 10 s, from a handful of neighbours
    slow = by_kind["slow_credential_stuffing"]
    span = (
        dt.datetime.fromisoformat(slow[-1]["ts"]) - dt.datetime.fromisoformat(slow[0]["ts"])
    ).total_seconds()
    assert len(slow) / span < 0.1
    assert {e["status"] for e in slow} == {401}
    # the night peek: level 4, after midnight, from the owner's own office address
    history_ips = defaultdict(set)
    for event in org.history:
        history_ips[event["principal"]].add(event["client_ip"])
    for event in by_kind["night_core_peek"]:
        assert event["level"] == 4 and _hour(event) < 4
        assert event["client_ip"] in history_ips[event["principal"]]
    # token in two places: the owner's token of the day, from an address the owner never used
    owner: dict[str, set[str]] = defaultdict(set)
    for event in org.test:
        if event["label"] == "normal" and event["token_id"]:
            owner[event["token_id"]].add(event["client_ip"])
    for event in by_kind["token_two_places"]:
        assert owner[event["token_id"]] and event["client_ip"] not in owner[event["token_id"]]
    # the service account export at ten times its usual volume
    usual: dict[str, list[int]] = defaultdict(list)
    for event in org.history:
        if event["kind"] == "svc_nightly_export" and event["action"] == "export":
            usual[event["principal"]].append(event["records_out"])
    pulled: Counter[str] = Counter()
    for event in by_kind["bulk_export"]:
        pulled[event["principal"]] += event["records_out"]
    assert pulled
    for name, total in pulled.items():
        assert total > 5 * max(usual[name])


def _run(*argv: str) -> int:
    parser = argparse.ArgumentParser(prog="datagate")
    detect.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(["detect", *argv])
    return int(args.handler(args))


def test_generate_command_writes_the_org_scenario(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "org"
    argv = ("generate", "--generator", "org", "--seed", "2", "--out", str(out))
    assert _run(*argv, "--history-days", "2", "--test-days", "1") == 0
    expected = generate(2, history_days=2, test_days=1)
    written = [orjson.loads(line) for line in (out / "test.jsonl").read_bytes().splitlines()]
    assert written == expected.test
    assert len(list(read_events(out / "history.jsonl"))) == len(expected.history)
    assert f"{len(expected.test)} labelled test events" in capsys.readouterr().out


def test_generate_command_refuses_what_the_org_generator_cannot_do(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"--principals: the org generator sizes"):
        _run("generate", "--generator", "org", "--out", str(tmp_path), "--principals", "50")
    with pytest.raises(ConfigError, match=r"--test-days: must be >= 1"):
        _run("generate", "--generator", "org", "--out", str(tmp_path), "--test-days", "0")
    with pytest.raises(SystemExit):
        _run("generate", "--generator", "nonesuch", "--out", str(tmp_path))
