"""The checks a policy bundle must pass before a gateway uses it, shared by start-up, reload
and `datagate policy check`, so the tool refuses exactly what the gateway would."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

from gateway.access.http import check_reserved
from gateway.configtree import Secret
from gateway.errors import ConfigError
from gateway.masking.config import MaskingConfig
from gateway.masking.plan import check_dataset
from gateway.policy.bundle import PolicyBundle

BundleCheck = Callable[[PolicyBundle], None]
# Without a config the secret is unknown; `policy check --dir` assumes one is configured.
_ASSUMED_SECRET = MaskingConfig(pseudonym_secret=Secret("policy-check", "assumed"))


def check_masking(bundle: PolicyBundle, masking: MaskingConfig) -> None:
    """Every field's strategy, parameters and paths compile; the error names file and key."""
    catalog = bundle.catalog
    for i, dataset in enumerate(catalog.datasets.values()):
        for j, spec in enumerate(dataset.fields):
            try:
                check_dataset(dataclasses.replace(dataset, fields=[spec]), masking)
            except ConfigError as exc:
                raise ConfigError(f"{catalog.source}: datasets[{i}].fields[{j}]: {exc}") from None


def check_upstreams(bundle: PolicyBundle, upstreams: Mapping[str, Any]) -> None:
    catalog = bundle.catalog
    for i, dataset in enumerate(catalog.datasets.values()):
        if dataset.upstream not in upstreams:
            raise ConfigError(
                f"{catalog.source}: datasets[{i}].upstream: dataset {dataset.id!r} names "
                f"upstream {dataset.upstream!r}, which the config's upstreams do not define"
            )


def bundle_checks(config: Callable[[], Any] | None) -> tuple[BundleCheck, ...]:
    """The checks for the config in force (`config()` is read at each check, so a reloaded
    config is used); None: no config, so upstream names are not checked and the masking
    section is the default one with a pseudonym secret assumed."""
    if config is None:
        return (lambda bundle: check_masking(bundle, _ASSUMED_SECRET), check_reserved)
    return (
        lambda bundle: check_upstreams(bundle, config().upstreams),
        lambda bundle: check_masking(bundle, config().masking),
        check_reserved,
    )
