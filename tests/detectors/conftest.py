"""Small generated scenario data shared by the detector tests."""

from __future__ import annotations

import pytest

from detectors.config import DetectionConfig
from detectors.events import AccessEvent, event_from_dict
from detectors.model import DetectorModel
from detectors.scenarios import Scenario, generate
from detectors.training import train


@pytest.fixture(scope="session")
def small_scenario() -> Scenario:
    return generate(7, principals=12, history_days=5, test_days=1, attacks_per_scenario=1)


@pytest.fixture(scope="session")
def history(small_scenario: Scenario) -> list[AccessEvent]:
    return [event_from_dict(e) for e in small_scenario.history]


@pytest.fixture(scope="session")
def test_events(small_scenario: Scenario) -> list[AccessEvent]:
    return [event_from_dict(e) for e in small_scenario.test]


@pytest.fixture(scope="session")
def trained(history: list[AccessEvent]) -> DetectorModel:
    model, _ = train(history, DetectionConfig(), holdout_days=1, seed=0)
    return model
