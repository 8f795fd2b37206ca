"""Signed checkpoints: the record count and head hash, one JSON line each, in a separate file."""

from __future__ import annotations

from collections.abc import Iterable

import orjson
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

from gateway.audit import keys
from gateway.audit.chain import Checkpoint, canonical


class CheckpointError(ValueError):
    """A checkpoint line that cannot be trusted; `line` is its line number."""

    def __init__(self, line: int, problem: str) -> None:
        super().__init__(f"checkpoints line {line}: {problem}")
        self.line = line


def _message(count: int, head: str, ts: str, kid: str) -> bytes:
    return canonical({"count": count, "head": head, "key_id": kid, "ts": ts})


def make(key: Ed25519PrivateKey, count: int, head: str, ts: str) -> bytes:
    """One signed checkpoint line (with newline)."""
    kid = keys.key_id(key.public_key())
    sig = keys.sign(key, _message(count, head, ts, kid))
    return canonical({"count": count, "head": head, "key_id": kid, "sig": sig, "ts": ts}) + b"\n"


def read(lines: Iterable[bytes], public: Ed25519PublicKey | None) -> list[Checkpoint]:
    """Parse checkpoint lines, checking each signature when a public key is given."""
    out: list[Checkpoint] = []
    last = 0
    for number, raw in enumerate(lines, start=1):
        try:
            data = orjson.loads(raw)
            count, head, ts, kid, sig = (
                data["count"],
                data["head"],
                data["ts"],
                data["key_id"],
                data["sig"],
            )
        except (orjson.JSONDecodeError, KeyError, TypeError):
            raise CheckpointError(
                number, "not a checkpoint (count, head, ts, key_id, sig)"
            ) from None
        if not isinstance(count, int) or count < 0 or not isinstance(head, str):
            raise CheckpointError(number, "count must be a non-negative integer, head a hash")
        if public is not None and not keys.valid(
            public, _message(count, head, str(ts), str(kid)), str(sig)
        ):
            raise CheckpointError(number, "bad signature for the given public key")
        if count < last:
            raise CheckpointError(number, f"count {count} is below the previous {last}")
        last = count
        out.append(Checkpoint(number, count, head))
    return out
