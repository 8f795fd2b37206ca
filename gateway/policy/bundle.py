"""A policy bundle: catalog, model and rows from one directory, immutable, with a version."""

from __future__ import annotations

import dataclasses
import hashlib
from pathlib import Path

from gateway.errors import ConfigError
from gateway.policy.catalog import Catalog, parse_catalog
from gateway.policy.enforcer import RuleIndex
from gateway.policy.rules import ModelSpec, PolicyRow, parse_model, parse_policy

CATALOG_FILE = "catalog.yaml"
MODEL_FILE = "model.conf"
POLICY_FILE = "policy.csv"
FILES = (CATALOG_FILE, MODEL_FILE, POLICY_FILE)
TESTS_DIR = "tests"


@dataclasses.dataclass(frozen=True, slots=True)
class PolicyBundle:
    """What the authorise stage decides with; replaced whole on reload, never changed."""

    directory: Path
    catalog: Catalog
    model: ModelSpec
    rows: tuple[PolicyRow, ...]
    index: RuleIndex
    version: str  # content hash of the three files
    loaded_at: float  # epoch seconds


def read_sources(directory: Path) -> dict[str, str]:
    """The text of the bundle's files; a missing or unreadable file is a ConfigError."""
    texts: dict[str, str] = {}
    for name in FILES:
        path = directory / name
        try:
            texts[name] = path.read_text(encoding="utf-8")
        except OSError as exc:
            raise ConfigError(f"{path}: cannot read: {exc.strerror}") from None
        except UnicodeDecodeError:
            raise ConfigError(f"{path}: not UTF-8 text") from None
    return texts


def version_of(texts: dict[str, str]) -> str:
    digest = hashlib.sha256()
    for name in FILES:
        digest.update(name.encode() + b"\0" + texts[name].encode() + b"\0")
    return digest.hexdigest()[:16]


def parse_bundle(directory: Path, texts: dict[str, str], loaded_at: float) -> PolicyBundle:
    """Parse the three files; the first syntax error raises a ConfigError naming file:line."""
    catalog_path = directory / CATALOG_FILE
    try:
        catalog = parse_catalog(texts[CATALOG_FILE], str(catalog_path))
    except RecursionError:  # YAML nested deeper than the parser can go: a bad file too
        raise ConfigError(f"{catalog_path}: nested too deeply to parse") from None
    model = parse_model(texts[MODEL_FILE], str(directory / MODEL_FILE))
    rows = parse_policy(texts[POLICY_FILE], str(directory / POLICY_FILE), model)
    index = RuleIndex(model, rows, catalog.datasets.values())
    return PolicyBundle(directory, catalog, model, tuple(rows), index, version_of(texts), loaded_at)


def load_bundle(directory: Path, loaded_at: float) -> PolicyBundle:
    return parse_bundle(directory, read_sources(directory), loaded_at)
