import pytest
from hypothesis import given, strategies as st

from recommender.errors import GpuplanError
from recommender.units import (parse_count, parse_days, parse_duration_s, parse_fraction, parse_int, parse_pf_days,
                               parse_rate_per_s, parse_usd)


@pytest.mark.parametrize("text,expected", [
    ("100B", 100e9), ("2T", 2e12), ("1.5M", 1.5e6), ("3e9", 3e9), ("70b", 70e9), ("800k", 8e5),
    ("1,000", 1000), ("4M tokens", 4e6), (7, 7.0),
])
def test_parse_count(text, expected):
    assert parse_count("tokens", text) == pytest.approx(expected)


@pytest.mark.parametrize("text,days", [("60d", 60), ("8w", 56), ("36h", 1.5), ("2mo", 60), ("1y", 365),
                                       ("90 days", 90)])
def test_parse_days(text, days):
    assert parse_days("deadline", text) == pytest.approx(days)


@pytest.mark.parametrize("text,seconds", [("50ms", 0.05), ("1s", 1.0), ("1.5 s", 1.5), ("3s", 3.0)])
def test_parse_latency(text, seconds):
    assert parse_duration_s("tpot", text) == pytest.approx(seconds)


@pytest.mark.parametrize("text,usd", [("$2.5M", 2.5e6), ("800k", 8e5), ("$1,200", 1200), ("3M", 3e6),
                                      ("2.5M USD", 2.5e6)])
def test_parse_usd(text, usd):
    assert parse_usd("budget", text) == pytest.approx(usd)


def test_parse_rate():
    assert parse_rate_per_s("rate", "20rps") == 20
    assert parse_rate_per_s("rate", "1200/min") == pytest.approx(20)


@pytest.mark.parametrize("parser,field,text,match", [
    (parse_days, "deadline", "60 dayz", "cannot parse as a duration"),
    (parse_days, "deadline", "60", "give a unit"),
    (parse_count, "tokens", "-2T", "greater than zero"),
    (parse_count, "tokens", "lots", "cannot parse as a count"),
    (parse_count, "tokens", "0", "greater than zero"),
    (parse_usd, "budget", "-5M", "zero or more"),
    (parse_usd, "budget", "five dollars", "cannot parse as money"),
    (parse_int, "tp", "2.5", "whole number"),
    (parse_int, "tp", "0", "greater than zero"),
])
def test_bad_quantities_name_field_and_value(parser, field, text, match):
    with pytest.raises(GpuplanError, match=match) as info:
        parser(field, text)
    assert info.value.field == field
    assert str(info.value).startswith(f"{field}={text}")


@given(st.floats(min_value=1e-3, max_value=1e6, allow_nan=False), st.sampled_from(["", "k", "M", "B", "T"]))
def test_count_roundtrip(x, suffix):
    scale = {"": 1, "k": 1e3, "M": 1e6, "B": 1e9, "T": 1e12}[suffix]
    assert parse_count("n", f"{x!r}{suffix}") == pytest.approx(x * scale)


@pytest.mark.parametrize("text,pf_days", [
    ("5000", 5000), ("5000PFd", 5000), ("5k PF-days", 5000), ("5000 pf-days", 5000), ("2 petaflop/s-days", 2),
    ("1,000 PFd", 1000), (7, 7.0),
    # Brown et al. 2020, Table D.1: GPT-3 175B, 3.14e23 FLOPs = 3.14e23 / 8.64e19 = 3,634 PF-days
    ("3.14e23 FLOPs", 3.14e23 / 8.64e19), ("8.64e19flop", 1.0),
])
def test_parse_pf_days(text, pf_days):
    assert parse_pf_days("compute-budget", text) == pytest.approx(pf_days)


@pytest.mark.parametrize("text,match", [("abc", "cannot parse as compute"), ("5 pf-dayz", "cannot parse as compute"),
                                        ("-5", "greater than zero"), ("0", "greater than zero"),
                                        ("1e400", "finite number"), ("1,5", "a comma only separates thousands")])
def test_bad_compute_budget_names_field_and_value(text, match):
    with pytest.raises(GpuplanError, match=match) as info:
        parse_pf_days("compute-budget", text)
    assert str(info.value).startswith(f"compute-budget={text}:")


@pytest.mark.parametrize("parser,text,expected", [
    (parse_count, "1,000", 1000), (parse_count, "2,000,000 tokens", 2e6), (parse_usd, "$1,200.50", 1200.5),
    (parse_usd, "¥10,000,000", None), (parse_int, "16,384", 16384), (parse_rate_per_s, "1,200/min", 20),
    (parse_fraction, "1,5%", "a comma"), (parse_count, "1,5", "a comma"), (parse_int, "1,0000", "a comma"),
    (parse_usd, "$2,5M", "a comma"), (parse_days, "1,5d", "a comma"), (parse_count, "15,", "a comma"),
])
def test_thousands_separators_are_read_the_same_everywhere(parser, text, expected):
    """A comma is a thousands separator wherever a number is typed ('16,384' = 16384) and nothing
    else: '1,5' is rejected, never read as 15 (issue 16)."""
    if isinstance(expected, str):
        with pytest.raises(GpuplanError, match=expected):
            parser("x", text)
    elif expected is not None:
        assert parser("x", text) == pytest.approx(expected)
    else:
        assert parser("x", text) > 0
