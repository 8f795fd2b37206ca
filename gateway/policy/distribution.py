"""Signed, versioned policy bundles in the state backend: push, verify, history, rollback."""

from __future__ import annotations

import dataclasses
import os
import re
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit import keys
from gateway.errors import ConfigError
from gateway.policy.bundle import FILES, TESTS_DIR, read_sources, version_of
from gateway.policy.cases import case_files
from gateway.state.base import StateBackend

BUNDLES_HASH = "policy-bundles"  # version -> signed bundle record
HISTORY_HASH = "policy-history"  # sequence -> activation (push or rollback)
ACTIVE_KEY = "policy-active"  # the activation in force: {"seq", "version"}
# Domain separation: a bundle signature can never be mistaken for an audit checkpoint's.
SIGNED_PREFIX = b"datagate-policy-bundle\n"
TEST_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,100}\.ya?ml")


class BundleRefused(ConfigError):
    """A stored bundle that must not be used: unsigned, wrongly signed, corrupt or failing."""


@dataclasses.dataclass(frozen=True, slots=True)
class Activation:
    """One entry of the history: which version became active, by whom, when and why."""

    seq: int
    version: str
    action: str  # push | rollback
    by: str
    at: float
    message: str

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)


def read_directory(directory: Path) -> dict[str, Any]:
    """The bundle's content: the three policy files and its test case files, as text."""
    tests = {}
    for path in case_files(directory / TESTS_DIR):
        try:
            tests[path.name] = path.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigError(f"{path}: cannot read: {exc}") from None
    return {"files": read_sources(directory), "tests": tests}


def content_from_json(body: Any) -> dict[str, Any]:
    """The bundle content an admin API caller sent, `{"files": {...}, "tests": {...}}`;
    ValueError(field, problem) naming the first bad part."""
    if not isinstance(body, dict):
        raise ValueError("body", "must be a JSON object")
    unknown = set(body) - {"files", "tests", "message"}
    if unknown:
        raise ValueError(sorted(unknown)[0], "unknown field")
    files = body.get("files")
    if not isinstance(files, dict) or set(files) != set(FILES):
        raise ValueError("files", f"must be an object with exactly {', '.join(FILES)}")
    for name, value in files.items():
        if not isinstance(value, str):
            raise ValueError(f"files.{name}", "must be text")
    tests = body.get("tests", {})
    if not isinstance(tests, dict):
        raise ValueError("tests", "must be an object of case file name to text")
    for name, value in tests.items():
        if not TEST_NAME.fullmatch(name):
            raise ValueError(f"tests.{name}", "must be a plain file name ending .yaml or .yml")
        if not isinstance(value, str):
            raise ValueError(f"tests.{name}", "must be text")
    return {"files": dict(files), "tests": dict(tests)}


def _signed_bytes(record: dict[str, Any]) -> bytes:
    body = {k: v for k, v in record.items() if k != "signature"}
    return SIGNED_PREFIX + orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def sign_bundle(
    content: dict[str, Any], key: Ed25519PrivateKey, *, by: str, at: float, message: str
) -> dict[str, Any]:
    """The record stored for `content`: its version, who pushed it, when, why, signed."""
    record = {
        "version": version_of(content["files"]),
        "files": content["files"],
        "tests": content["tests"],
        "pushed_by": by,
        "pushed_at": at,
        "message": message,
        "key_id": keys.key_id(key.public_key()),
    }
    record["signature"] = keys.sign(key, _signed_bytes(record))
    return record


def verify_record(raw: bytes, public_keys: Sequence[Ed25519PublicKey]) -> dict[str, Any]:
    """The record, if it parses, is signed by one of `public_keys` and its files hash to its
    version; BundleRefused saying which check failed otherwise."""
    try:
        record = orjson.loads(raw)
    except orjson.JSONDecodeError:
        raise BundleRefused("bundle is corrupt: not JSON") from None
    if not isinstance(record, dict) or not isinstance(record.get("files"), dict):
        raise BundleRefused("bundle is corrupt: no files")
    version = record.get("version")
    signature = record.get("signature")
    if not signature:
        raise BundleRefused(f"bundle {version} is unsigned")
    by_id = {keys.key_id(k): k for k in public_keys}
    key = by_id.get(record.get("key_id"))  # type: ignore[arg-type]
    if key is None:
        raise BundleRefused(
            f"bundle {version} is signed by unknown key {record.get('key_id')!r} "
            "(not in policy.public_keys)"
        )
    if not isinstance(signature, str) or not keys.valid(key, _signed_bytes(record), signature):
        raise BundleRefused(f"bundle {version}: signature does not verify")
    files, tests = record["files"], record.get("tests") or {}
    if set(files) != set(FILES) or not all(isinstance(v, str) for v in files.values()):
        raise BundleRefused(f"bundle {version} is corrupt: needs exactly {', '.join(FILES)}")
    if not isinstance(tests, dict) or not all(
        isinstance(k, str) and TEST_NAME.fullmatch(k) and isinstance(v, str)
        for k, v in tests.items()
    ):
        raise BundleRefused(f"bundle {version} is corrupt: bad test files")
    if version_of(files) != version:
        raise BundleRefused(f"bundle {version} is corrupt: its files hash to {version_of(files)}")
    return record


def materialise(record: dict[str, Any], root: Path) -> Path:
    """Write the bundle's files under `root/<version>` so the gateway's own loader (the same
    validation and tests as for `policy.source: files`) reads them; returns that directory."""
    directory = root / record["version"]
    (directory / TESTS_DIR).mkdir(parents=True, exist_ok=True)
    for name, text in record["files"].items():
        (directory / name).write_text(text, encoding="utf-8")
    for name, text in (record.get("tests") or {}).items():
        (directory / TESTS_DIR / Path(name).name).write_text(text, encoding="utf-8")
    return directory


def load_public_keys(paths: Sequence[Path]) -> list[Ed25519PublicKey]:
    out = []
    for path in paths:
        try:
            out.append(keys.load_public(path))
        except ValueError as exc:
            raise ConfigError(f"policy.public_keys: {exc}") from None
    return out


def load_signing_key(path: Path | None) -> Ed25519PrivateKey:
    if path is None:
        raise ConfigError("policy.signing_key: not set (the key `policy push` signs with)")
    return keys.load_private(path, False, "policy.signing_key")


def bundle_root() -> Path:
    """Where this process writes the bundles it loads (one private directory per process)."""
    root = Path(tempfile.gettempdir()) / f"datagate-policy-{os.getpid()}"
    root.mkdir(mode=0o700, exist_ok=True)
    return root


class Distribution:
    """The bundles, the history and the active version in one state backend."""

    def __init__(self, backend: StateBackend, channel: str) -> None:
        self._backend = backend
        self._channel = channel

    async def active(self) -> tuple[int, str] | None:
        raw = await self._backend.get(ACTIVE_KEY)
        if raw is None:
            return None
        data = orjson.loads(raw)
        return int(data["seq"]), str(data["version"])

    async def record(self, version: str) -> bytes | None:
        return await self._backend.hget(BUNDLES_HASH, version)

    async def push(self, record: dict[str, Any]) -> Activation:
        """Store the signed record and make it active."""
        await self._backend.hset(
            BUNDLES_HASH, record["version"], orjson.dumps(record, option=orjson.OPT_SORT_KEYS)
        )
        return await self._activate(
            record["version"], "push", record["pushed_by"], record["pushed_at"], record["message"]
        )

    async def rollback(
        self,
        version: str,
        public_keys: Sequence[Ed25519PublicKey],
        *,
        by: str,
        at: float,
        message: str,
    ) -> Activation:
        """Re-activate a stored version after verifying it; BundleRefused if it fails."""
        raw = await self.record(version)
        if raw is None:
            raise LookupError(version)
        verify_record(raw, public_keys)
        return await self._activate(version, "rollback", by, at, message)

    async def _activate(
        self, version: str, action: str, by: str, at: float, message: str
    ) -> Activation:
        # The sequence is taken with compare-and-set on the active key, so two pushers at
        # once get distinct, increasing numbers and the later one wins.
        while True:
            raw = await self._backend.get(ACTIVE_KEY)
            seq = (int(orjson.loads(raw)["seq"]) if raw else 0) + 1
            new = orjson.dumps({"seq": seq, "version": version})
            if await self._backend.compare_and_set(ACTIVE_KEY, raw, new):
                break
        activation = Activation(seq, version, action, by, at, message)
        await self._backend.hset(HISTORY_HASH, str(seq), orjson.dumps(activation.to_json()))
        await self._backend.publish(self._channel, version.encode())
        return activation

    async def history(self) -> list[Activation]:
        raw = await self._backend.hgetall(HISTORY_HASH)
        items = [Activation(**orjson.loads(v)) for v in raw.values()]
        return sorted(items, key=lambda a: a.seq)
