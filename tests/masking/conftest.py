"""Fixtures for the masking tests."""

from __future__ import annotations

import pytest

from gateway.masking.config import MaskingConfig
from gateway.masking.plan import MaskPlan, compile_plan
from gateway.policy.catalog import Dataset
from tests.masking.mask_helpers import make_config, make_dataset


@pytest.fixture
def dataset() -> Dataset:
    return make_dataset()


@pytest.fixture
def config() -> MaskingConfig:
    return make_config(batch_bytes=1024)


@pytest.fixture
def plan(dataset: Dataset, config: MaskingConfig) -> MaskPlan:
    return compile_plan(dataset, 2, config)
