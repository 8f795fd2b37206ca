"""Masking strategies: pure functions from a clear value to its masked form, by name."""

from __future__ import annotations

import hashlib
import hmac
import itertools
import math
import re
from collections.abc import Callable, Mapping
from typing import Any

from gateway.errors import ConfigError

# A strategy compiled with its params: (value, per-consumer pseudonym key) -> masked value.
# Values are strings, except that `bucket` also takes numbers.
MaskFn = Callable[[Any, bytes], str]
StrategyFactory = Callable[[Mapping[str, Any]], MaskFn]

STAR = "*"
PSEUDONYM_PREFIX = "pn_"
_PSEUDONYM_RE = re.compile(r"pn_[0-9a-f]{32}")

# Full-width forms (U+FF01-FF5E) and the ideographic space fold to ASCII, as NFKC does.
WIDTH_FOLD = {c: c - 0xFEE0 for c in range(0xFF01, 0xFF5F)} | {0x3000: 0x20}

COMPOUND_SURNAMES = frozenset(
    {
        *("欧阳", "司马", "诸葛", "上官", "东方", "皇甫", "尉迟", "公孙", "慕容", "长孙", "宇文"),
        *("司徒", "令狐", "夏侯", "独孤", "端木", "西门", "南宫", "轩辕", "呼延", "澹台", "公羊"),
        *("万俟", "闻人", "赫连", "申屠", "太史", "钟离", "第五", "百里"),
    }
)
# A district/county marker that is not part of 自治区/地区/小区/社区/园区/街区/... .
_DISTRICT_RE = re.compile(r"(?<!自治)(?<![地小社园街校景厂矿])[区县旗]")
_CITY_RE = re.compile(r"[省市州盟]")
_RANGE_RE = re.compile(r"(-?[0-9]+(?:\.[0-9]+)?)-(-?[0-9]+(?:\.[0-9]+)?)")
_YEAR_RE = re.compile(r"(?<![0-9])([12][0-9]{3})")


class StrategyParamError(ValueError):
    """Bad params for a strategy; the catalog compiler adds the dataset and field."""


def fold(value: str) -> str:
    """Full-width digits and letters to ASCII (the NFKC width folding)."""
    return value if value.isascii() else value.translate(WIDTH_FOLD)


def keep_ends(value: str, first: int, last: int, keep: Callable[[str], bool]) -> str:
    """Star the characters selected by `keep` (and existing stars) except the first `first`
    and last `last` of them; other characters (separators) stay. Too short: star them all."""
    n = len(value)
    if value.isascii() and value.isalnum() and (keep is _is_alnum or value.isdigit()):
        if n <= first + last:
            return STAR * n
        return value[:first] + STAR * (n - first - last) + value[n - last :]
    slots = [i for i, c in enumerate(value) if c == STAR or keep(c)]
    hidden = slots if len(slots) <= first + last else slots[first : len(slots) - last]
    if not hidden:
        return value
    chars = list(value)
    for i in hidden:
        chars[i] = STAR
    return "".join(chars)


def _is_digit(c: str) -> bool:
    return "0" <= c <= "9"


def _is_alnum(c: str) -> bool:
    return c.isascii() and c.isalnum()


def mask_name(value: str, key: bytes = b"") -> str:
    """张三 -> 张*, 欧阳娜娜 -> 欧阳**: keep the (compound) surname, star the rest."""
    value = value.strip()
    if not value:
        return value
    keep = 2 if len(value) > 2 and value[:2] in COMPOUND_SURNAMES else 1
    if " " not in value:
        return value[:keep] + STAR * (len(value) - keep)
    return value[:keep] + "".join(c if c.isspace() else STAR for c in value[keep:])


def mask_mobile(value: str, key: bytes = b"") -> str:
    """13812345678 -> 138****5678; a +86/86 country prefix stays."""
    if len(value) == 11 and value.isascii() and value.isdigit():
        return value[:3] + "****" + value[7:]
    value = fold(value)
    digits = [i for i, c in enumerate(value) if c == STAR or _is_digit(c)]
    cut = 0
    if len(digits) > 11 and value[digits[0]] == "8" and value[digits[1]] == "6":
        cut = digits[2]
    return value[:cut] + keep_ends(value[cut:], 3, 4, _is_digit)


def mask_resident_id(value: str, key: bytes = b"") -> str:
    """110105194912310038 -> 110105********0038."""
    if len(value) == 18 and value.isascii() and value.isalnum():
        return value[:6] + "********" + value[14:]
    return keep_ends(fold(value), 6, 4, _is_alnum)


def mask_uscc(value: str, key: bytes = b"") -> str:
    """91350100M000100Y43 -> 91350100**********: keep authority, type and region code."""
    return keep_ends(fold(value), 8, 0, _is_alnum)


def mask_email(value: str, key: bytes = b"") -> str:
    """dong@example.com -> d***@example.com."""
    value = fold(value)
    local, at, domain = value.rpartition("@")
    if not at:
        return STAR * 3
    return f"{local[:1]}{STAR * 3}@{domain}"


def mask_address(value: str, key: bytes = b"") -> str:
    """北京市朝阳区建国路88号 -> 北京市朝阳区****: keep down to the district or county."""
    m = _DISTRICT_RE.search(value)
    end = m.end() if m else 0
    if not end:
        for m in _CITY_RE.finditer(value):
            end = m.end()
    rest = value[end:]
    return value[:end] + (STAR * 4 if rest else "")


def mask_date(value: str, key: bytes = b"") -> str:
    """1949-12-31 -> 1949: the year only."""
    m = _YEAR_RE.search(value if value.isascii() else fold(value))
    return m.group(1) if m else STAR * 4


def _bank_card(params: Mapping[str, Any]) -> MaskFn:
    _only(params, {"show"})
    show = params.get("show", "first6_last4")
    if show == "first6_last4":
        first = 6
    elif show == "last4":
        first = 0
    else:
        raise StrategyParamError(f"show must be 'first6_last4' or 'last4', got {show!r}")

    def bank_card(value: str, key: bytes) -> str:
        return keep_ends(fold(value), first, 4, _is_digit)

    return bank_card


def _keep_last(params: Mapping[str, Any]) -> MaskFn:
    _only(params, {"n"})
    n = params.get("n", 4)
    if type(n) is not int or not 0 <= n <= 64:
        raise StrategyParamError(f"n must be an integer from 0 to 64, got {n!r}")

    def keep_last(value: str, key: bytes) -> str:
        if len(value) <= n:
            return STAR * len(value)
        return STAR * (len(value) - n) + value[len(value) - n :]

    return keep_last


def _redact(token: str) -> StrategyFactory:
    def factory(params: Mapping[str, Any]) -> MaskFn:
        _only(params, {"token"})
        fixed = params.get("token", token)
        if not isinstance(fixed, str) or not fixed:
            raise StrategyParamError(f"token must be a non-empty string, got {fixed!r}")

        def redact(value: str, key: bytes) -> str:
            return fixed

        return redact

    return factory


def pseudonym_key(secret: str, consumer: str) -> bytes:
    """The per-consumer key: two consumers' pseudonyms of one value cannot be joined."""
    label = b"datagate-pseudonym\x00" + consumer.encode()
    return hmac.new(secret.encode(), label, hashlib.sha256).digest()


def pseudonymise(value: str, key: bytes) -> str:
    """HMAC-SHA256 of the value under the consumer's key: `pn_` + 32 hex digits."""
    if _PSEUDONYM_RE.fullmatch(value):
        return value
    return PSEUDONYM_PREFIX + hmac.new(key, value.encode(), hashlib.sha256).hexdigest()[:32]


def _number(value: str | float) -> float | None:
    if isinstance(value, (int, float)):
        number = float(value)
    else:
        try:
            number = float(fold(value).strip().replace(",", ""))
        except ValueError:
            return None
    return number if math.isfinite(number) else None


def _fmt(x: float) -> str:
    return str(int(x)) if x == int(x) else repr(x)


def _bucket(token: str) -> StrategyFactory:
    def factory(params: Mapping[str, Any]) -> MaskFn:
        _only(params, {"size", "edges"})
        if ("size" in params) == ("edges" in params):
            raise StrategyParamError("needs exactly one of size or edges")
        if "size" in params:
            size = params["size"]
            if not isinstance(size, (int, float)) or isinstance(size, bool) or not size > 0:
                raise StrategyParamError(f"size must be a positive number, got {size!r}")

            def label(x: float) -> str:
                low = math.floor(x / size) * size
                return f"{_fmt(low)}-{_fmt(low + size)}"

            def known(value: str) -> bool:
                m = _RANGE_RE.fullmatch(value)
                return m is not None and label(float(m.group(1))) == value

        else:
            edges = params["edges"]
            ok = isinstance(edges, list) and len(edges) >= 1
            ok = ok and all(isinstance(e, (int, float)) and not isinstance(e, bool) for e in edges)
            if not ok or any(a >= b for a, b in itertools.pairwise(edges)):
                raise StrategyParamError(f"edges must be increasing numbers, got {edges!r}")
            labels = [f"<{_fmt(edges[0])}", f">={_fmt(edges[-1])}"]
            labels += [f"{_fmt(a)}-{_fmt(b)}" for a, b in itertools.pairwise(edges)]
            label_set = frozenset(labels)

            def label(x: float) -> str:
                if x < edges[0]:
                    return f"<{_fmt(edges[0])}"
                for a, b in itertools.pairwise(edges):
                    if a <= x < b:
                        return f"{_fmt(a)}-{_fmt(b)}"
                return f">={_fmt(edges[-1])}"

            def known(value: str) -> bool:
                return value in label_set

        def bucket(value: str | float, key: bytes) -> str:
            if type(value) is int:
                return label(value)
            if isinstance(value, str) and known(value):
                return value
            number = _number(value)
            return token if number is None else label(number)

        return bucket

    return factory


def _only(params: Mapping[str, Any], allowed: set[str]) -> None:
    unknown = sorted(set(params) - allowed)
    if unknown:
        known = ", ".join(sorted(allowed)) or "none"
        raise StrategyParamError(f"unknown params {', '.join(unknown)} (known: {known})")


def _plain(fn: MaskFn) -> StrategyFactory:
    """A strategy without params (its `key` argument is ignored)."""

    def factory(params: Mapping[str, Any]) -> MaskFn:
        _only(params, set())
        return fn

    return factory


def _pseudonym(params: Mapping[str, Any]) -> MaskFn:
    _only(params, set())
    return pseudonymise


def registry(redact_token: str) -> dict[str, StrategyFactory]:
    """Strategy name -> factory(params) -> MaskFn. `remove` has no function."""
    return {
        "name": _plain(mask_name),
        "mobile": _plain(mask_mobile),
        "resident_id": _plain(mask_resident_id),
        "uscc": _plain(mask_uscc),
        "bank_card": _bank_card,
        "address": _plain(mask_address),
        "email": _plain(mask_email),
        "date": _plain(mask_date),
        "keep_last": _keep_last,
        "redact": _redact(redact_token),
        "pseudonym": _pseudonym,
        "bucket": _bucket(redact_token),
    }


STRATEGY_NAMES = (*sorted(registry("*")), "remove")


def compile_strategy(
    name: str, params: Mapping[str, Any], redact_token: str, where: str
) -> MaskFn | None:
    """The masking function for a catalog field (None for `remove`); errors name `where`."""
    if name == "remove":
        if params:
            raise ConfigError(f"{where}: strategy 'remove' takes no params")
        return None
    factories = registry(redact_token)
    if name not in factories:
        raise ConfigError(
            f"{where}: unknown strategy {name!r} (known: {', '.join(STRATEGY_NAMES)})"
        )
    try:
        return factories[name](params)
    except StrategyParamError as exc:
        raise ConfigError(f"{where}: strategy {name!r}: {exc}") from None
