"""Money in the currency a person works in: dated exchange rates (catalog/fx.yaml), the display
currency of one command (`--currency CNY|USD|EUR`), and parsing budgets typed in any of them.

Every figure is computed in USD (the catalog's common unit); a price published in CNY or EUR is
converted once, at the dated rate, when the catalog is loaded, and a total shown in CNY is the
USD total times the same rate. The rate and its date are part of every answer that converts.
"""

from __future__ import annotations

import contextlib
import functools
import math

from catalog import DATA_DIR
from recommender.errors import GpuplanError

CURRENCIES = ("USD", "CNY", "EUR")
SYMBOL = {"USD": "$", "CNY": "¥", "EUR": "€"}
_SIGNS = {"$": "USD", "usd": "USD", "¥": "CNY", "￥": "CNY", "cny": "CNY", "rmb": "CNY", "yuan": "CNY",
          "元": "CNY", "€": "EUR", "eur": "EUR"}
_DISPLAY: list[str] = ["USD"]


@functools.cache
def rates() -> dict[str, dict]:
    """{code: {per_usd, source, as_of}} from catalog/fx.yaml; USD is 1 by definition."""
    from recommender.catalog import read_yaml

    raw = read_yaml(DATA_DIR / "fx.yaml")
    out = {"USD": {"per_usd": 1.0, "source": "definition", "as_of": None}}
    for code, row in raw.items():
        if not (isinstance(row, dict) and float(row.get("per_usd", 0)) > 0 and row.get("source") and row.get("as_of")):
            raise GpuplanError("catalog/fx.yaml", code, "needs per_usd > 0, source and as_of")
        out[code.upper()] = {"per_usd": float(row["per_usd"]), "source": row["source"], "as_of": row["as_of"],
                             "short": row.get("short", row["source"])}
    return out


def check(code: str, field: str = "currency") -> str:
    c = str(code).strip().upper()
    if c not in CURRENCIES or c not in rates():
        raise GpuplanError(field, code, f"must be one of {', '.join(CURRENCIES)}")
    return c


def per_usd(code: str) -> float:
    return rates()[check(code)]["per_usd"]


def to_usd(amount: float, code: str) -> float:
    return amount / per_usd(code)


def display() -> str:
    """The currency this command shows money in."""
    return _DISPLAY[-1]


@contextlib.contextmanager
def shown_in(code: str | None):
    """Within the block, money is shown (and plain budgets are read) in `code`."""
    _DISPLAY.append(check(code or "USD"))
    try:
        yield
    finally:
        _DISPLAY.pop()


def symbol() -> str:
    return SYMBOL[display()]


def fmt(usd: float) -> str:
    """A USD amount in the display currency: 2.5e6 -> '$2.50M' (or '¥17.9M' under CNY)."""
    x = usd * per_usd(display())
    sign = SYMBOL[display()]
    for suffix, scale in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        # the unit by the value as shown (999,999.999 is $1.00M, not $1,000.00k)
        if math.isfinite(x) and abs(round(x / scale * 100.0)) >= 100:
            return f"{sign}{x / scale:,.2f}{suffix}"
    return f"{sign}{x:,.2f}"


def in_display(usd: float | None) -> float | None:
    """A USD amount as a plain number in the display currency (tables' numeric cells)."""
    return None if usd is None else usd * per_usd(display())


def rate_note() -> str | None:
    """The rate behind converted figures, for the answer's notes (None when showing USD)."""
    code = display()
    if code == "USD":
        return None
    r = rates()[code]
    return (f"money shown in {code} at {r['per_usd']:g} {code} per USD ({r['short']} of {r['as_of']}, "
            f"catalog/fx.yaml); prices published in USD converted at that rate")


def split_currency(field: str, value: object) -> tuple[str, str]:
    """'¥10M' -> ('10M', 'CNY'); '2.5M' -> ('2.5M', display currency)."""
    text = str(value).strip()
    low = text.lower()
    for sign, code in sorted(_SIGNS.items(), key=lambda kv: -len(kv[0])):
        if low.startswith(sign):
            return low[len(sign):].strip(), code
        if low.endswith(sign):
            return low[: -len(sign)].strip(), code
    return text, display()
