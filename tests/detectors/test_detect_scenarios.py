"""The scenario generator: seeded, in the access-event shape, with every attack labelled."""

from __future__ import annotations

import itertools
import random

from detectors.events import event_from_dict
from detectors.scenarios import ATTACKS, NormalActor, Scenario, generate


def test_same_seed_same_events() -> None:
    a = generate(3, principals=5, history_days=1, test_days=1, attacks_per_scenario=1)
    b = generate(3, principals=5, history_days=1, test_days=1, attacks_per_scenario=1)
    c = generate(4, principals=5, history_days=1, test_days=1, attacks_per_scenario=1)
    assert a.test == b.test and a.history == b.history
    assert a.test != c.test


def test_events_follow_the_access_event_shape(small_scenario: Scenario) -> None:
    required = {
        "ts",
        "request_id",
        "principal",
        "department",
        "client_ip",
        "user_agent",
        "method",
        "path",
        "dataset",
        "level",
        "action",
        "decision",
        "status",
        "bytes_out",
        "records_out",
        "masked_fields",
        "latency_ms",
        "label",
    }
    for raw in itertools.chain(small_scenario.history[:200], small_scenario.test[:200]):
        assert required <= raw.keys()
        event_from_dict(raw)
    assert {e["label"] for e in small_scenario.history} == {"normal"}
    assert {e["label"] for e in small_scenario.test} == {"normal", *ATTACKS}
    times = [e["ts"] for e in small_scenario.test]
    assert times == sorted(times)


def test_history_days_have_a_working_rhythm(small_scenario: Scenario) -> None:
    hours = [int(e["ts"][11:13]) for e in small_scenario.history if e["principal"].startswith("u")]
    daytime = sum(8 <= h < 19 for h in hours)
    assert daytime / len(hours) > 0.9


def test_actors_plan_requests_in_time_order_for_reuse() -> None:
    actor = NormalActor("u001", "health", random.Random(1))
    start = 1_773_936_000.0  # Friday 00:00 +08:00
    planned = list(actor.plan(start, start + 86400))
    assert planned and all(a.ts <= b.ts for a, b in itertools.pairwise(planned))
    assert {p.dataset for p in planned} <= {"medical", "population", "enterprise"}
