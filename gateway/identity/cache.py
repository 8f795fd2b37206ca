"""The verified-token cache: raw token -> principal, while the token is valid; bounded LRU."""

from __future__ import annotations

from collections import OrderedDict

from gateway.identity.principal import Principal


class TokenCache:
    """Remembers verified tokens so a warm request costs a dict lookup, not a signature check.

    Entries are keyed by the raw token string (the signature is part of it, so a forged
    token can never hit another token's entry) and dropped at `valid_until`. A clock set back
    before `valid_from` (the token's nbf/iat) misses, so the token is judged again.
    """

    __slots__ = ("_entries", "maxsize")

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._entries: OrderedDict[str, tuple[Principal, float, float]] = OrderedDict()

    def __len__(self) -> int:
        return len(self._entries)

    def get(self, token: str, now: float) -> Principal | None:
        entry = self._entries.get(token)
        if entry is None:
            return None
        principal, valid_from, valid_until = entry
        if now >= valid_until:
            del self._entries[token]
            return None
        if now < valid_from:
            return None
        self._entries.move_to_end(token)
        return principal

    def put(self, token: str, principal: Principal, valid_from: float, valid_until: float) -> None:
        if self.maxsize <= 0:
            return
        self._entries[token] = (principal, valid_from, valid_until)
        self._entries.move_to_end(token)
        while len(self._entries) > self.maxsize:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self._entries.clear()
