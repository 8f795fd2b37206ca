"""Content-Encoding decoders (gzip, deflate, br) with a bounded output: no compression bombs."""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from typing import Protocol

import brotli

from gateway.masking.errors import MaskingError

PIECE = 256 * 1024  # the most one decoder step may inflate to
_RATIO_AFTER = 1024 * 1024  # the inflate ratio is checked once this much is decoded


class Decoder(Protocol):
    def decode(self, data: bytes) -> Iterator[bytes]: ...

    def flush(self) -> Iterator[bytes]: ...


class _Zlib:
    """gzip (several members allowed), or deflate: zlib-wrapped or raw as some servers send."""

    def __init__(self, gzip: bool) -> None:
        self._gzip = gzip
        self._d: zlib._Decompress | None = zlib.decompressobj(31) if gzip else None
        self._head = b""  # deflate: the first bytes, until there are two to tell the kind
        self._eof = False

    def decode(self, data: bytes) -> Iterator[bytes]:
        if self._d is None:
            data = self._head + data
            if len(data) < 2:  # a first chunk of one byte cannot show the zlib header
                self._head = data
                return
            self._head = b""
            # RFC 9110 deflate is zlib-wrapped; raw deflate is a common mistake.
            wrapped = data[0] & 0x0F == 8 and (data[0] << 8 | data[1]) % 31 == 0
            self._d = zlib.decompressobj(15 if wrapped else -15)
        try:
            while data:
                out = self._d.decompress(data, PIECE)
                data = self._d.unconsumed_tail
                if out:
                    yield out
                while len(out) == PIECE and not data:
                    out = self._d.decompress(b"", PIECE)
                    if out:
                        yield out
                if self._d.eof:
                    rest = self._d.unused_data
                    if self._gzip and rest:
                        self._d = zlib.decompressobj(31)
                        data = rest
                        continue
                    if rest.strip():
                        raise MaskingError("bad_encoding", "data after the compressed body")
                    self._eof = True
                    return
        except zlib.error as exc:
            raise MaskingError("bad_encoding", f"cannot decode the upstream body: {exc}") from None

    def flush(self) -> Iterator[bytes]:
        if self._d is None or not (self._eof or self._d.eof):
            raise MaskingError("bad_encoding", "the compressed upstream body is truncated")
        return iter(())


class _Brotli:
    def __init__(self) -> None:
        self._d = brotli.Decompressor()

    def decode(self, data: bytes) -> Iterator[bytes]:
        try:
            out = self._d.process(data, output_buffer_limit=PIECE)
            if out:
                yield out
            while not self._d.can_accept_more_data():
                out = self._d.process(b"", output_buffer_limit=PIECE)
                if out:
                    yield out
        except brotli.error as exc:
            raise MaskingError("bad_encoding", f"cannot decode the upstream body: {exc}") from None

    def flush(self) -> Iterator[bytes]:
        if not self._d.is_finished():
            raise MaskingError("bad_encoding", "the compressed upstream body is truncated")
        return iter(())


def _one(coding: str) -> Decoder:
    if coding in ("gzip", "x-gzip"):
        return _Zlib(gzip=True)
    if coding == "deflate":
        return _Zlib(gzip=False)
    if coding == "br":
        return _Brotli()
    raise MaskingError("unsupported_encoding", f"cannot mask a body in Content-Encoding {coding!r}")


class Chain:
    """Undoes the codings of a Content-Encoding header (in reverse order). A compressed body
    may not decode to more than `max_bytes` nor inflate more than `max_ratio` times."""

    def __init__(self, header: str | None, max_bytes: int, max_ratio: int, code: str) -> None:
        codings = [c.strip().lower() for c in (header or "").split(",")]
        self._steps = [_one(c) for c in reversed(codings) if c and c != "identity"]
        self._max_bytes = max_bytes
        self._max_ratio = max_ratio
        self._code = code
        self.bytes_in = 0
        self.bytes_out = 0

    @property
    def identity(self) -> bool:
        """No coding to undo: the body is as the upstream sent it."""
        return not self._steps

    def decode(self, data: bytes) -> Iterator[bytes]:
        self.bytes_in += len(data)
        yield from self._through(0, data)

    def flush(self) -> Iterator[bytes]:
        for i, step in enumerate(self._steps):
            for piece in step.flush():
                yield from self._through(i + 1, piece)

    def _through(self, index: int, data: bytes) -> Iterator[bytes]:
        if index == len(self._steps):
            if data:
                self._count(len(data))
                yield data
            return
        for piece in self._steps[index].decode(data):
            yield from self._through(index + 1, piece)

    def _count(self, n: int) -> None:
        self.bytes_out += n
        if not self._steps:
            return  # an identity body is as large as the upstream sent: no amplification
        if self.bytes_out > self._max_bytes:
            raise MaskingError(
                "decoded_too_large",
                f"the decoded upstream body exceeds {self._max_bytes} bytes",
                code=self._code,
            )
        if self.bytes_out > _RATIO_AFTER and self.bytes_out > self._max_ratio * self.bytes_in:
            raise MaskingError(
                "decoded_too_large",
                f"the upstream body inflates more than {self._max_ratio} times",
                code=self._code,
            )
