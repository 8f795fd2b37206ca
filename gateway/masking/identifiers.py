"""Chinese identifier checksums (resident ID, USCC, bank card) and valid-identifier generators."""

from __future__ import annotations

import datetime as dt
import operator
import random

ID_WEIGHTS = (7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2)
ID_CHECK = "10X98765432"
USCC_ALPHABET = "0123456789ABCDEFGHJKLMNPQRTUWXY"
USCC_WEIGHTS = (1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28)
ORG_ALPHABET = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ"
ORG_WEIGHTS = (3, 7, 9, 10, 5, 8, 4, 2)


def resident_id_check(first17: str) -> str:
    """GB 11643 (ISO 7064 MOD 11-2) check character for 17 digits."""
    if len(first17) != 17:
        raise ValueError("a resident ID body has 17 digits")
    total = sum(map(operator.mul, map(int, first17), ID_WEIGHTS))
    return ID_CHECK[total % 11]


def is_resident_id(value: str) -> bool:
    """18 characters, a real date of birth at digits 7-14, and a valid check character."""
    if len(value) != 18 or not value[:17].isascii() or not value[:17].isdigit():
        return False
    try:
        born = dt.date(int(value[6:10]), int(value[10:12]), int(value[12:14]))
    except ValueError:
        return False
    if born.year < 1850:
        return False
    return resident_id_check(value[:17]) == value[17].upper()


def is_first_generation_id(value: str) -> bool:
    """15 digits (the ID before 1999, GB 11643-1989): an area code whose province part is a
    real one (11-82) and a real date of birth YYMMDD in 19YY at digits 7-12; no check digit,
    so the date is what keeps other 15-digit numbers out."""
    if len(value) != 15 or not value.isascii() or not value.isdigit():
        return False
    if not 11 <= int(value[:2]) <= 82:
        return False
    try:
        dt.date(1900 + int(value[6:8]), int(value[8:10]), int(value[10:12]))
    except ValueError:
        return False
    return True


def _org_code_check(first8: str) -> str | None:
    """GB 11714 check character for an 8-character organisation code."""
    total = 0
    for c, w in zip(first8, ORG_WEIGHTS, strict=True):
        pos = ORG_ALPHABET.find(c)
        if pos < 0:
            return None
        total += pos * w
    check = 11 - total % 11
    return {10: "X", 11: "0"}.get(check, str(check))


_USCC_VALUE = {c: i for i, c in enumerate(USCC_ALPHABET)}
_USCC_CHARS = frozenset(USCC_ALPHABET)


def uscc_check(first17: str) -> str | None:
    """GB 32100 check character for 17 characters; None if one is outside the alphabet."""
    if len(first17) != 17 or not _USCC_CHARS.issuperset(first17):
        return None
    total = sum(map(operator.mul, map(_USCC_VALUE.__getitem__, first17), USCC_WEIGHTS))
    return USCC_ALPHABET[(31 - total % 31) % 31]


def is_uscc(value: str) -> bool:
    """Unified social credit code (GB 32100) with a valid check character."""
    value = value.upper()
    if len(value) != 18 or not _USCC_CHARS.issuperset(value):
        return False
    return uscc_check(value[:17]) == value[17]


_LUHN_DOUBLED = {str(d): d * 2 - 9 if d > 4 else d * 2 for d in range(10)}


def luhn_ok(digits: str) -> bool:
    if not digits.isascii() or not digits.isdigit() or len(digits) < 2:
        return False
    backwards = digits[::-1]
    total = sum(map(int, backwards[0::2])) + sum(map(_LUHN_DOUBLED.__getitem__, backwards[1::2]))
    return total % 10 == 0


def luhn_check_digit(body: str) -> str:
    for d in "0123456789":
        if luhn_ok(body + d):
            return d
    raise AssertionError("unreachable: one Luhn digit always fits")


def is_bank_card(value: str) -> bool:
    return 16 <= len(value) <= 19 and luhn_ok(value)


# --- generators for synthetic data (demo datasets, tests, scenarios) ---

AREA_CODES = ("110105", "310104", "440305", "510107", "330106", "420102", "610113", "350102")


def make_resident_id(rng: random.Random, born: dt.date | None = None) -> str:
    if born is None:
        born = dt.date(1940, 1, 1) + dt.timedelta(days=rng.randrange(0, 365 * 65))
    body = f"{rng.choice(AREA_CODES)}{born:%Y%m%d}{rng.randrange(1000):03d}"
    return body + resident_id_check(body)


def make_uscc(rng: random.Random) -> str:
    org = "".join(rng.choice("0123456789ABCDEFGHJKLMNPQRTUWXY") for _ in range(8))
    org_check = _org_code_check(org)
    assert org_check is not None
    body = "91" + rng.choice(AREA_CODES) + org + org_check
    check = uscc_check(body)
    assert check is not None
    return body + check


def make_bank_card(rng: random.Random, length: int = 19) -> str:
    body = "62" + "".join(str(rng.randrange(10)) for _ in range(length - 3))
    return body + luhn_check_digit(body)


def make_mobile(rng: random.Random) -> str:
    return "1" + rng.choice("3456789") + "".join(str(rng.randrange(10)) for _ in range(9))
