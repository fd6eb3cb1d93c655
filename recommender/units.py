"""Parsing of the quantities people type: "100B", "2T", "60d", "8w", "$2.5M", "50ms", "20rps".

Every parser takes the field name so that an error names the field and the value.
SI multipliers throughout (tera = 1e12, giga = 1e9); binary units only where labelled (GiB).
"""

from __future__ import annotations

import math
import re

from recommender.errors import GpuplanError

_COUNT_SUFFIX = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12, "p": 1e15}
_NUMBER = r"([0-9]*\.?[0-9]+(?:e[+-]?[0-9]+)?)"
_DURATION_S = {
    "s": 1.0, "sec": 1.0, "secs": 1.0, "second": 1.0, "seconds": 1.0,
    "ms": 1e-3,
    "min": 60.0, "mins": 60.0, "minute": 60.0, "minutes": 60.0,
    "h": 3600.0, "hr": 3600.0, "hrs": 3600.0, "hour": 3600.0, "hours": 3600.0,
    "d": 86400.0, "day": 86400.0, "days": 86400.0,
    "w": 7 * 86400.0, "wk": 7 * 86400.0, "week": 7 * 86400.0, "weeks": 7 * 86400.0,
    "mo": 30 * 86400.0, "month": 30 * 86400.0, "months": 30 * 86400.0,
    "y": 365 * 86400.0, "yr": 365 * 86400.0, "year": 365 * 86400.0, "years": 365 * 86400.0,
}


# a comma is a thousands separator only: after 1-3 digits, each followed by exactly 3 digits
# ("1,000", "$2,500,000"); "1,5" is rejected, never read as 15 or as 1.5
_THOUSANDS = re.compile(r"[^0-9,]*[0-9]{1,3}(?:,[0-9]{3})+(?:[^0-9,][^,]*)?")


def _text(field: str, value: object) -> str:
    """The typed text with thousands separators and '_' digit groups removed."""
    text = str(value).strip()
    if "," in text and not _THOUSANDS.fullmatch(text):
        raise GpuplanError(field, value, "a comma only separates thousands (1,000); write a decimal as 1.5")
    return text.replace(",", "").replace("_", "")


def _finite_positive(field: str, raw: object, x: float, allow_zero: bool) -> float:
    if not math.isfinite(x):
        raise GpuplanError(field, raw, "must be a finite number")
    if x < 0 or (x == 0 and not allow_zero):
        need = "zero or more" if allow_zero else "greater than zero"
        raise GpuplanError(field, raw, f"must be {need}")
    return x


def parse_count(field: str, value: object, allow_zero: bool = False) -> float:
    """'100B' -> 1e11, '2T' -> 2e12, '1.5k' -> 1500, '3e9' -> 3e9 (parameters, tokens, counts)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite_positive(field, value, float(value), allow_zero)
    text = _text(field, value).lower()
    m = re.fullmatch(_NUMBER + r"\s*([kmbgtp]?)\s*(?:tokens?|params?)?", text)
    if text.startswith("-"):
        raise GpuplanError(field, value, "must be zero or more" if allow_zero else "must be greater than zero")
    if not m:
        raise GpuplanError(field, value, "cannot parse as a count; use e.g. 100B, 2T, 1.5M, 3e9")
    return _finite_positive(field, value, float(m.group(1)) * _COUNT_SUFFIX[m.group(2)], allow_zero)


MAX_INT = 10**9   # parse_int's ceiling: a billion GPUs, users or steps is past any plan, and
# products of such counts stay inside the 64-bit integers numpy and CP-SAT compute in
MAX_RATE = 1e9    # parse_rate_per_s's ceiling, requests/s (the same reason)
MIN_RATE = 1 / 3600   # and its floor: one request an hour (below it a fleet's cost per token is noise)
MAX_TOP = 100     # --top / a scenario's top: ranked alternatives (each one more exact solve)


def parse_int(field: str, value: object, minimum: int = 1, maximum: int = MAX_INT) -> int:
    """A whole number in [minimum, maximum] ('8', '1k' -> 1000)."""
    x = parse_count(field, value, allow_zero=minimum <= 0)
    if x != int(x):
        raise GpuplanError(field, value, "must be a whole number")
    if x < minimum:
        raise GpuplanError(field, value, f"must be at least {minimum}")
    if x > maximum:
        raise GpuplanError(field, value, f"must be at most {maximum:,}")
    return int(x)


def parse_duration_s(field: str, value: object) -> float:
    """'60d' -> 5184000 s; '8w', '36h', '50ms', '1.5s', '2mo' (30 d), '1y' (365 d)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        raise GpuplanError(field, value, "give a unit, e.g. 60d, 8w, 36h, 50ms")
    text = _text(field, value).lower()
    if text.startswith("-"):
        raise GpuplanError(field, value, "must be greater than zero")
    if re.fullmatch(_NUMBER, text):
        raise GpuplanError(field, value, "give a unit, e.g. 60d, 8w, 36h, 50ms")
    m = re.fullmatch(_NUMBER + r"\s*([a-z]+)", text)
    if not m or m.group(2) not in _DURATION_S:
        raise GpuplanError(field, value, "cannot parse as a duration; use e.g. 60d, 8w, 36h, 50ms")
    return _finite_positive(field, value, float(m.group(1)) * _DURATION_S[m.group(2)], False)


def parse_days(field: str, value: object) -> float:
    """A duration in days: '60d' -> 60, '8w' -> 56, '36h' -> 1.5."""
    return parse_duration_s(field, value) / 86400.0


def parse_usd(field: str, value: object) -> float:
    """'$2.5M' -> 2.5e6, '800k' -> 8e5, '$1,200' -> 1200; '¥10M' or '10M CNY' converted to USD at the
    catalog's dated rate; a plain number is in the command's display currency (--currency)."""
    from recommender import money

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return money.to_usd(_finite_positive(field, value, float(value), True), money.display())
    text, code = money.split_currency(field, _text(field, value))
    text = text.lower()
    if text.startswith("-"):
        raise GpuplanError(field, value, "must be zero or more")
    m = re.fullmatch(_NUMBER + r"\s*([kmbt]?)", text)
    if not m:
        raise GpuplanError(field, value, "cannot parse as money; use e.g. $2.5M, 800k, 1200, ¥10M")
    return money.to_usd(_finite_positive(field, value, float(m.group(1)) * _COUNT_SUFFIX[m.group(2)], True), code)


_PF_DAY_UNIT = r"(pf[- ]?d(?:ays?)?|petaflop(?:/s)?[- ]?days?|flops?|)"  # empty: PF-days


def parse_pf_days(field: str, value: object) -> float:
    """A compute budget in petaflop/s-days: '5000', '5k PF-days', '5000PFd'; or in FLOPs, '3.14e23 FLOPs'
    (1 PF-day = 1e15 FLOP/s x 86,400 s = 8.64e19 FLOPs, Brown et al. 2020's unit)."""
    from recommender.formulas.compute import pf_days

    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return _finite_positive(field, value, float(value), False)
    text = _text(field, value).lower()
    if text.startswith("-"):
        raise GpuplanError(field, value, "must be greater than zero")
    m = re.fullmatch(_NUMBER + r"\s*([kmbgtp]?)\s*" + _PF_DAY_UNIT, text)
    if not m:
        raise GpuplanError(field, value, "cannot parse as compute; use PF-days, e.g. 5000PFd, 5k PF-days, "
                           "or FLOPs, e.g. 3.14e23FLOPs")
    x = _finite_positive(field, value, float(m.group(1)) * _COUNT_SUFFIX[m.group(2)], False)
    return pf_days(x) if m.group(3).startswith("flop") else x


def parse_rate_per_s(field: str, value: object) -> float:
    """'20rps', '20/s', '1200/min', '30/h', '20' -> requests per second."""
    text = _text(field, value).lower()
    m = re.fullmatch(_NUMBER + r"\s*(rps|/s|req/s|/min|rpm|/h|rph|)", text)
    if not m:
        raise GpuplanError(field, value, "cannot parse as a rate; use e.g. 20rps, 1200/min, 30/h")
    scale = {"/min": 1 / 60, "rpm": 1 / 60, "/h": 1 / 3600, "rph": 1 / 3600}.get(m.group(2), 1.0)
    x = _finite_positive(field, value, float(m.group(1)) * scale, False)
    if x > MAX_RATE:
        raise GpuplanError(field, value, f"must be at most {MAX_RATE:,.0f} requests/s")
    if x < MIN_RATE * (1 - 1e-12):
        raise GpuplanError(field, value, "must be at least one request an hour (1/h)")
    return x


def fmt_count(x: float) -> str:
    """1.75e11 -> '175B' (for display)."""
    for suffix, scale in (("T", 1e12), ("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g}{suffix}"
    return f"{x:.3g}"


def fmt_usd(x: float) -> str:
    """2.5e6 -> '$2.50M', in the command's display currency (recommender.money)."""
    from recommender import money

    return money.fmt(x)


def parse_fraction(field: str, value: object) -> float:
    """'30%' or '0.3' -> 0.3, a share in (0, 1]."""
    text = _text(field, value).lower()
    pct = text.endswith("%")
    try:
        x = float(text.rstrip("%")) / (100.0 if pct else 1.0)
    except ValueError:
        raise GpuplanError(field, value, "write a share as 0.3 or 30%") from None
    if not (math.isfinite(x) and 0 < x <= 1):
        raise GpuplanError(field, value, "must be above 0 and at most 1 (100%)")
    return x
