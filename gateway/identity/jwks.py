"""A JSON Web Key Set from a file or URL: cached, refreshed after its TTL or on an unknown kid."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable

import aiohttp

from gateway.identity.config import JwksConfig
from gateway.identity.keys import MAX_JWKS_BYTES, VerificationKey, parse_jwks
from gateway.logs import get_logger

log = get_logger("datagate.identity")


class JwksSource:
    """One issuer's key set. Every fetch, whatever triggers it, is at most one per
    `refresh_interval` seconds, so unknown kids sent by an attacker cannot flood the issuer.
    """

    def __init__(
        self,
        cfg: JwksConfig,
        *,
        clock: Callable[[], float],
        on_keys_removed: Callable[[], None] = lambda: None,
    ) -> None:
        self._cfg = cfg
        self._clock = clock
        self._on_keys_removed = on_keys_removed
        self._session: aiohttp.ClientSession | None = None
        self._lock = asyncio.Lock()
        self._last_attempt = -math.inf
        self.keys: list[VerificationKey] = []
        self.loaded_at: float | None = None
        self.fetches = 0

    @property
    def where(self) -> str:
        return self._cfg.url or str(self._cfg.file)

    def stale(self) -> bool:
        return self.loaded_at is None or self._clock() - self.loaded_at >= self._cfg.cache_ttl

    async def start(self, session: aiohttp.ClientSession | None) -> None:
        self._session = session
        await self.refresh()

    async def refresh(self) -> bool:
        """Fetch the set unless a fetch was tried within `refresh_interval`; True if it
        replaced the keys. A failed fetch keeps the previous keys."""
        async with self._lock:
            now = self._clock()
            if now - self._last_attempt < self._cfg.refresh_interval:
                return False
            self._last_attempt = now
            try:
                data = await self._fetch()
                keys, skipped = parse_jwks(data)
            except (aiohttp.ClientError, TimeoutError, OSError, ValueError) as exc:
                log.warning("jwks_fetch_failed", source=self.where, error=str(exc))
                return False
            self.fetches += 1
            for problem in skipped:
                log.warning("jwks_key_skipped", source=self.where, problem=problem)
            removed = {k.fingerprint() for k in self.keys} - {k.fingerprint() for k in keys}
            self.keys = keys
            self.loaded_at = now
        if removed:
            self._on_keys_removed()
        return True

    async def _fetch(self) -> bytes:
        if self._cfg.file is not None:
            return await asyncio.to_thread(self._cfg.file.read_bytes)
        if self._session is None:
            raise aiohttp.ClientError("the verifier was not started")
        timeout = aiohttp.ClientTimeout(total=self._cfg.timeout)
        async with self._session.get(str(self._cfg.url), timeout=timeout) as resp:
            if resp.status != 200:
                raise aiohttp.ClientError(f"HTTP {resp.status}")
            body = bytearray()
            async for chunk in resp.content.iter_chunked(65536):
                body += chunk
                if len(body) > MAX_JWKS_BYTES:
                    raise ValueError(f"the key set is larger than {MAX_JWKS_BYTES} bytes")
            return bytes(body)
