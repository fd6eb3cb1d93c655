"""Prices you can refresh: SkyPilot-layout import (hand-computed per-GPU figures), the user's
price file winning over the shipped rows, the snapshot reproducible from catalog/skypilot/,
staleness warnings, serverless as its own tier, and money shown in CNY/EUR at the dated rate."""

import json
from datetime import date
from pathlib import Path

import pytest
from typer.testing import CliRunner

from cli import app
from recommender import catalog, money, prices
from recommender.errors import GpuplanError
from recommender.units import parse_usd

FIXTURE = Path(__file__).parent / "data" / "skypilot"
runner = CliRunner()


def _by_key(rows):
    return {(r["accelerator"], r["provider"], r["tier"]): r for r in rows}


def test_import_divides_by_gpu_count_and_keeps_the_cheapest_region():
    rows = _by_key(prices.import_catalog(FIXTURE, as_of=date(2026, 11, 30)))
    # p5.48xlarge: $55.04 (us-east-1) and $60.00 (us-west-2) for 8 H100 -> 6.88 in us-east-1
    assert rows["h100-sxm", "aws", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(6.88)
    assert rows["h100-sxm", "aws", "on_demand"]["region"] == "us-east-1"
    assert rows["h100-sxm", "aws", "spot"]["price_usd_per_gpu_hour"] == pytest.approx(22.0 / 8)
    assert rows["a100-40g", "aws", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(32.77 / 8)
    assert rows["a100-80g", "aws", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(40.96 / 8)
    assert rows["l40s", "aws", "spot"]["price_usd_per_gpu_hour"] == pytest.approx(0.9)
    assert all(r["as_of"] == "2026-11-30" for r in rows.values())
    # a CPU instance and an accelerator the catalog lacks (Gaudi 1) are skipped
    assert not any(r["notes"].startswith(("m5.", "dl1.")) for r in rows.values())


def test_lambda_h100_form_factor_comes_from_the_instance_type():
    rows = _by_key(prices.import_catalog(FIXTURE / "lambda" / "vms.csv", as_of=date(2026, 11, 30)))
    assert rows["h100-pcie", "lambda", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(2.49)
    assert rows["h100-sxm", "lambda", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(23.92 / 8)
    assert rows["a100-80g", "lambda", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(14.32 / 8)


def test_gcp_tpu_slices_are_priced_per_chip():
    """tpu-v5p-8 is 8 TensorCores = 4 chips; tpu-v5litepod-8 is 8 chips. Per chip that is GCP's
    published $4.20 (v5p) and $1.20 (v5e) on-demand chip-hour."""
    rows = _by_key(prices.import_catalog(FIXTURE / "gcp", as_of=date(2026, 11, 30)))
    assert rows["tpu-v5p", "gcp", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(4.20)
    assert rows["tpu-v5e", "gcp", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(1.20)
    assert rows["tpu-v5p", "gcp", "spot"]["price_usd_per_gpu_hour"] == pytest.approx(7.56 / 4)
    assert rows["tpu-v5p", "gcp", "on_demand"]["region"] == "us-east5"  # 700.0 = "not offered", skipped


def test_gcp_gpu_rows_add_the_machine_type():
    """GCP lists 8 H100 at $33.60609 and the a3-highgpu-8g VM at $9.46006 apart: a GPU-hour is
    (33.60609 + 9.46006) / 8. A T4 row whose N1 host is not in the file cannot be priced whole."""
    rows = _by_key(prices.import_catalog(FIXTURE / "gcp", as_of=date(2026, 11, 30)))
    assert rows["h100-sxm", "gcp", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx((33.60609 + 9.46006) / 8)
    assert rows["h100-sxm", "gcp", "spot"]["price_usd_per_gpu_hour"] == pytest.approx((22.8008 + 2.75246) / 8)
    assert ("t4", "gcp", "on_demand") not in rows


def test_region_filter():
    rows = _by_key(prices.import_catalog(FIXTURE / "aws", as_of=date(2026, 11, 30), regions=("us-west-*",)))
    assert rows["h100-sxm", "aws", "on_demand"]["price_usd_per_gpu_hour"] == pytest.approx(7.5)
    assert ("h100-sxm", "aws", "spot") not in rows  # us-west-2 lists no spot price


def test_not_a_skypilot_file(tmp_path):
    bad = tmp_path / "aws" / "vms.csv"
    bad.parent.mkdir()
    bad.write_text("a,b\n1,2\n")
    with pytest.raises(GpuplanError, match="not a SkyPilot vms.csv"):
        prices.import_catalog(bad)
    with pytest.raises(GpuplanError, match="no such file"):
        prices.import_catalog(tmp_path / "missing")
    (tmp_path / "empty").mkdir()
    with pytest.raises(GpuplanError, match="no vms.csv"):
        prices.import_catalog(tmp_path / "empty")


@pytest.fixture
def user_home(tmp_path, monkeypatch):
    monkeypatch.setenv("GPUPLAN_HOME", str(tmp_path / "home"))
    catalog.reload()
    yield tmp_path / "home"
    monkeypatch.undo()
    catalog.reload()


def test_imported_prices_override_the_shipped_ones_and_are_used_by_train(user_home):
    before = catalog.prices_for("h100-sxm")
    r = runner.invoke(app, ["prices", "import", str(FIXTURE / "lambda"), "--as-of", "2026-11-30"])
    assert r.exit_code == 0, r.output
    assert (user_home / "prices.csv").is_file()
    catalog.reload()
    lam = [p for p in catalog.prices_for("h100-sxm") if p.provider == "lambda" and p.tier == "on_demand"]
    assert [(p.price_usd_per_gpu_hour, p.region, p.as_of) for p in lam] == [(pytest.approx(2.99), "us-east-1",
                                                                              date(2026, 11, 30))]
    assert before != catalog.prices_for("h100-sxm")  # the user's row replaced the shipped one
    # `prices --json` lists it with its origin and age
    r = runner.invoke(app, ["prices", "--gpu", "h100-sxm", "--provider", "lambda", "--json"])
    rows = json.loads(r.stdout)
    assert rows[0]["origin"] == "your file" and rows[0]["as_of"] == "2026-11-30"
    assert set(rows[0]) >= {"accelerator", "provider", "tier", "region", "price_usd_per_gpu_hour", "as_of", "source"}
    # importing the same provider again replaces its rows instead of piling them up
    runner.invoke(app, ["prices", "import", str(FIXTURE / "lambda"), "--as-of", "2026-12-01"])
    written = prices.read_rows(user_home / "prices.csv")
    assert len(written) == 3 and {r["as_of"] for r in written} == {"2026-12-01"}


def test_dry_run_writes_nothing(user_home):
    r = runner.invoke(app, ["prices", "import", str(FIXTURE), "--dry-run"])
    assert r.exit_code == 0 and "nothing written" in r.output
    assert not (user_home / "prices.csv").exists()


def test_shipped_snapshot_is_the_importer_run_over_catalog_skypilot():
    """catalog/prices_snapshot.csv must be exactly what the importer makes of catalog/skypilot/."""
    shipped = prices.read_rows(prices.SNAPSHOT)
    assert shipped, "the snapshot ships"
    again = prices.snapshot_rows()
    assert [{k: str(v) for k, v in r.items() if v not in ("", None)} for r in again] == shipped


def test_snapshot_covers_major_clouds_with_spot_rows():
    rows = prices.read_rows(prices.SNAPSHOT)
    providers = {r["provider"] for r in rows}
    assert {"aws", "gcp", "azure", "lambda"} <= providers
    assert {r["provider"] for r in rows if r["tier"] == "spot"} >= {"aws", "gcp", "azure"}


def test_stale_prices_are_named_in_the_answer():
    class Item:
        accelerator, acquisition, provider = "h100-sxm", "on_demand", "lambda"
        price_as_of = "2020-01-01"
    notes = prices.age_notes([Item()])
    assert notes[0] == "prices used: h100-sxm on_demand lambda as of 2020-01-01"
    assert "older than 90 days" in notes[1] and "h100-sxm on_demand lambda" in notes[1]
    Item.price_as_of = date.today().isoformat()
    assert len(prices.age_notes([Item()])) == 1


def test_train_answer_names_its_price_dates():
    r = runner.invoke(app, ["train", "--model", "llama-2-7b", "--tokens", "100B", "--gpus", "h100-sxm", "--top", "1"])
    assert r.exit_code == 0, r.output
    assert "prices used: h100-sxm" in r.output


def test_serverless_is_chosen_only_when_asked():
    base = ["serve", "--model", "llama-3-8b", "--rate", "2rps", "--ttft", "2s", "--tpot", "100ms",
            "--gpus", "h100-sxm", "--top", "1", "--json"]
    plain = json.loads(runner.invoke(app, base).stdout)
    assert all(pt["acquisition"] != "serverless" for p in plain["plans"] for pt in p["parts"])
    asked = json.loads(runner.invoke(app, base + ["--acquisition", "serverless"]).stdout)
    assert asked["plans"] and all(pt["acquisition"] == "serverless" for p in asked["plans"] for pt in p["parts"])


def test_serverless_rows_are_not_on_demand():
    for p in catalog.cloud_prices():
        if p.provider in ("modal", "replicate"):
            assert p.tier == "serverless", p


# -- currency ------------------------------------------------------------------------------------

def test_rates_are_sourced_and_dated():
    for code in ("CNY", "EUR"):
        r = money.rates()[code]
        assert r["per_usd"] > 0 and r["source"] and r["as_of"] and "PENDING" not in r["source"]


def test_money_in_cny_is_usd_times_the_rate():
    rate = money.per_usd("CNY")
    with money.shown_in("CNY"):
        assert money.fmt(1e6) == f"¥{rate:,.2f}M"
        assert parse_usd("budget", "7.1M") == pytest.approx(7.1e6 / rate)  # plain numbers are CNY here
        assert parse_usd("budget", "$1M") == pytest.approx(1e6)
    assert parse_usd("budget", "¥7.1M") == pytest.approx(7.1e6 / rate)
    assert parse_usd("budget", "10M CNY") == pytest.approx(10e6 / rate)
    assert parse_usd("budget", "€1M") == pytest.approx(1e6 / money.per_usd("EUR"))


def test_cny_published_price_converts_at_the_dated_rate():
    from recommender.spec import CloudPrice

    p = CloudPrice(accelerator="ascend-910b", provider="x", tier="on_demand", price=71.0, currency="CNY",
                   source="test", as_of=date(2026, 1, 1))
    assert p.price_usd_per_gpu_hour == pytest.approx(71.0 / money.per_usd("CNY"))


@pytest.mark.parametrize("cmd", [
    ["train", "--model", "llama-2-7b", "--tokens", "100B", "--gpus", "h100-sxm", "--top", "1"],
    ["evaluate", "--model", "llama-2-7b", "--tokens", "100B", "--gpu", "h100-sxm", "--count", "8"],
    ["serve", "--model", "llama-3-8b", "--rate", "2rps", "--ttft", "2s", "--tpot", "100ms", "--gpus", "h100-sxm",
     "--top", "1"],
    ["whatif", "constraints/lora-finetune.yaml", "--vary", "deadline=30d,60d"],
])
def test_currency_option_shows_yuan_and_the_rate(cmd):
    r = runner.invoke(app, cmd + ["--currency", "CNY"])
    assert r.exit_code == 0, r.output
    assert "¥" in r.output and "$" not in r.output.split("note:")[0]
    assert "CNY per USD" in r.output or cmd[0] == "whatif"


def test_bad_currency_is_one_line():
    r = runner.invoke(app, ["evaluate", "--model", "llama-2-7b", "--gpu", "h100", "--currency", "GBP"])
    assert r.exit_code == 2 and "currency=GBP: must be one of USD, CNY, EUR" in r.output


# -- markets, reserved terms, purchase-price choice -------------------------------------------------

def test_reserved_term_is_paid_whole_and_the_cheapest_term_is_taken():
    """TPU v5p at GCP: $4.20 on demand, $2.94 for 12 months, $1.89 for 36 months (catalog rows).
    For 10 days the 36-month term costs 36 x 730 h x $1.89 = $49,669 per chip, more than 240 h on
    demand ($1,008) or 12 months ($25,754): reserved alone then picks the 12-month term."""
    from recommender.evaluate import job_cost, pricing

    acc = catalog.accelerator("tpu-v5p")
    p = pricing(acc, "reserved", ("gcp",), days=10)
    assert p.term_hours == 12 * 730
    assert float(job_cost(p, acc, 1, 10).total) == pytest.approx(12 * 730 * p.usd_per_gpu_hour)
    long = pricing(acc, "reserved", ("gcp",), days=3 * 365)
    assert long.term_hours == 36 * 730
    assert float(job_cost(long, acc, 1, 3 * 365).total) == pytest.approx(3 * 365 * 24 * long.usd_per_gpu_hour)


def test_global_market_leaves_china_only_parts_unpriced_unless_named():
    from recommender.evaluate import pricing

    h800 = catalog.accelerator("h800")
    assert pricing(h800, "on_demand") is None
    with prices.naming(["h800"]):
        assert pricing(h800, "on_demand").row.market == "china"
    with prices.shopping_in("china"):
        assert pricing(h800, "on_demand").row.currency == "CNY"
        # a part China's market does not price keeps its global rows there
        assert pricing(catalog.accelerator("gaudi3"), "buy").row.market == "global"


def test_china_market_prices_an_h100_from_chinas_rows():
    with prices.shopping_in("china"):
        rows = catalog.prices_for("h100-sxm")
    assert rows and all(r.market == "china" for r in rows)
    assert all(r.market == "global" for r in catalog.prices_for("h100-sxm"))


def test_purchase_price_is_the_newest_dates_median_and_never_second_hand():
    """A100 80GB: the newest global rows (2026-03-20) are a $8,000-$15,000 new range and a $4,000
    used low end; the price used is the new range's midpoint, $11,500."""
    p = catalog.purchase_for("a100-80g")
    assert p.price_usd_per_gpu == pytest.approx(11500) and p.as_of == date(2026, 3, 20)
    assert p.market == "global"


def test_a100_buy_has_a_cost():
    from recommender import api

    e = api.evaluate_config(model="llama-2-7b", tokens="10B", gpu="a100", count=8, acquisition="buy")
    share = catalog.assumption("server_share_of_gpu_price")
    assert e.cost_breakdown_usd.capex == pytest.approx(8 * 11500 * (1 + share))


def test_fx_hf_defaults_and_name_maps_are_sourced():
    import yaml

    for code, r in money.rates().items():
        assert code == "USD" or (r["source"] and r["as_of"])
    for kind, row in yaml.safe_load((catalog.DATA_DIR / "hf_defaults.yaml").read_text()).items():
        assert row.get("source"), kind
    assert all(r["source"] and r["as_of"] for r in prices.name_map())


@pytest.mark.parametrize("gpu", ["h800", "h20", "ascend-910b", "mlu370-x8"])
def test_china_market_parts_have_a_price_in_cny(gpu):
    with prices.shopping_in("china"):
        rows = [*catalog.prices_for(gpu), *([catalog.purchase_for(gpu)] if catalog.purchase_for(gpu) else [])]
    assert rows and any(r.currency == "CNY" or "CNY" in (r.notes or "") or r.market == "china" for r in rows)
