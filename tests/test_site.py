"""A user's own site in place of the catalog's assumptions (--goodput, --pue, --electricity,
--colo, --depreciation-years, --buy-price, a scenario's site section), checked against the cost and
time formulas by hand."""

import pytest

from recommender import api, catalog, scenario
from recommender.errors import GpuplanError

KW = dict(model="llama-2-7b", tokens="10B", gpu="a100", count=8, acquisition="buy")


def ev(**site):
    with catalog.assuming(**api.site_values(**site)):
        return api.evaluate_config(**KW)


def test_goodput_scales_the_days_inversely():
    base, low = ev(), ev(goodput="30%")
    assert low.days == pytest.approx(base.days * catalog.assumptions()["goodput"].value / 0.3)
    assert any("goodput 0.3 (catalog 0.9)" in w for w in low.warnings)


def test_energy_is_tdp_times_pue_times_hours_times_price():
    e = ev(pue="1.2", electricity="0.15")
    acc = catalog.accelerator("a100")
    assert e.cost_breakdown_usd.energy == pytest.approx(8 * acc.tdp_w / 1000 * 1.2 * e.days * 24 * 0.15)


def test_colocation_is_per_kw_of_it_load_per_month():
    e = ev(colo="150")
    acc = catalog.accelerator("a100")
    assert e.cost_breakdown_usd.operations == pytest.approx(8 * acc.tdp_w / 1000 * 150 * e.days / (365 / 12))


def test_depreciation_years_set_the_amortized_share():
    with catalog.assuming(useful_life_years=3):
        three = api.evaluate_config(**KW, amortize=True)
    five = api.evaluate_config(**KW, amortize=True)
    assert three.cost_breakdown_usd.capex == pytest.approx(five.cost_breakdown_usd.capex * 5 / 3)


def test_own_purchase_price_replaces_the_catalogs():
    with catalog.overrides(purchase_prices=api.own_purchase_prices(["a100=15000"])):
        e = api.evaluate_config(**KW)
    assert e.cost_breakdown_usd.capex == pytest.approx(8 * 15000)  # server included: no share added


@pytest.mark.parametrize("site,match", [(dict(goodput="0"), "above 0"), (dict(pue="0.9"), "1 or more"),
                                         (dict(electricity="cheap"), "cannot parse as money"),
                                         (dict(depreciation_years="-1"), "zero or more|greater than zero")])
def test_bad_site_values_name_the_field(site, match):
    with pytest.raises(GpuplanError, match=match):
        api.site_values(**site)


def test_scenario_site_section():
    base = scenario.load("constraints/lora-finetune.yaml").run()[1].plans[0]
    half = scenario.load("constraints/lora-finetune.yaml", ["site.goodput=0.45"]).run()[1].plans[0]
    assert half.goodput == pytest.approx(0.45)
    assert any("goodput 0.45" in n for n in scenario.load("constraints/lora-finetune.yaml", ["site.goodput=0.45"]).run()[1].notes)
    assert base.goodput == pytest.approx(catalog.assumptions()["goodput"].value)
