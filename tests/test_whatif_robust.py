"""`gpuplan whatif` (a grid of scenario edits) and `solve --robust` (how far inputs move before #1
changes), checked against independent solves of the edited scenario."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recommender import catalog, robust, scenario, whatif
from recommender.errors import GpuplanError

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "constraints"
LORA = FILES / "lora-finetune.yaml"


def _best(file, sets):
    kind, result = scenario.load(file, sets).model_copy(update={"top": 1}).run()
    return result.plans[0] if result.plans else None


def test_whatif_grid_rows_match_solving_each_edit_alone():
    wi = whatif.run(str(LORA), ["deadline=2d,7d", "tokens=500M,1B,4B"])
    assert [r.scenario for r in wi.rows] == ["base", "1", "2", "3", "4", "5", "6"]
    assert wi.varied == ["constraints.deadline", "workload.tokens"]
    assert wi.rows[0].values == {"constraints.deadline": "3d", "workload.tokens": "1B"}
    assert wi.rows[6].values == {"constraints.deadline": "7d", "workload.tokens": "4B"}
    for row in wi.rows[1:]:
        p = _best(LORA, [f"{k}={v}" for k, v in row.values.items()])
        if p is None:
            assert row.status == "infeasible" and row.summary.startswith("no plan") and row.vs_base == "no plan"
        else:
            assert row.cost_usd == pytest.approx(p.cost_usd, rel=1e-12) and row.days == pytest.approx(p.total_days)
            assert row.plan.accelerator == p.accelerator and row.plan.count == p.count
    # the same edit as the base is "same plan"; 4x the tokens takes longer
    same = [r for r in wi.rows if r.values == {"constraints.deadline": "7d", "workload.tokens": "1B"}][0]
    assert wi.rows[0].cost_usd <= same.cost_usd
    four = [r for r in wi.rows if r.values["workload.tokens"] == "4B" and r.plan is not None]
    assert four and all(r.days > wi.rows[0].days or "GPUs" in r.vs_base or "->" in r.vs_base for r in four)


def test_whatif_same_values_as_the_base_give_the_same_plan():
    wi = whatif.run(str(LORA), ["deadline=3d"])
    assert wi.rows[1].vs_base == "same plan" and wi.rows[1].cost_usd == wi.rows[0].cost_usd


@pytest.mark.parametrize("spec, path, values", [
    ("deadline=30d,60d", "constraints.deadline", ["30d", "60d"]),
    ("tokens=1T", "workload.tokens", ["1T"]),
    ("power=2000", "constraints.power_kw", ["2000"]),
    ("gpus=h100-sxm+b200,mi300x", "constraints.gpus", ["[h100-sxm, b200]", "[mi300x]"]),
    ("constraints.max_gpus=64,128", "constraints.max_gpus", ["64", "128"]),
    ("price.h100-sxm.spot=1.80,2.20", "price.h100-sxm.spot", ["1.80", "2.20"]),
])
def test_vary_names_resolve_to_paths(spec, path, values):
    got_path, got = whatif.parse_vary(spec)
    assert got_path == path and [t for _, t in got] == values


@pytest.mark.parametrize("spec, message", [
    ("deadlin=30d", "vary=deadlin: unknown setting; did you mean 'deadline'"),
    ("seq_len=4096", "ambiguous: write the path, workload.seq_len or model.seq_len"),
    ("deadline", "write it as name=v1,v2"),
    ("deadline=30d,,60d", "an empty value"),
])
def test_vary_errors_name_the_setting(spec, message):
    with pytest.raises(GpuplanError) as e:
        whatif.parse_vary(spec)
    assert message in str(e.value)


def test_price_shorthand_sets_every_provider_of_a_tier():
    sc = scenario.load(LORA, ["price.a100-80g.spot=0.55"])
    listed = [p.provider for p in catalog.prices_for("a100-80g") if p.tier == "spot"]
    assert listed
    with sc.overrides():
        rows = [p for p in catalog.prices_for("a100-80g") if p.tier == "spot"]
        assert sorted(p.provider for p in rows) == sorted(listed)
        assert {p.price_usd_per_gpu_hour for p in rows} == {0.55}
        assert {p.price_usd_per_gpu_hour for p in catalog.prices_for("a100-80g") if p.tier == "on_demand"} != {0.55}
    assert all(p.price_usd_per_gpu_hour != 0.55 for p in catalog.prices_for("a100-80g"))
    with pytest.raises(GpuplanError, match="TIER one of on_demand, spot, reserved"):
        scenario.load(LORA, ["price.h100-sxm.cheap=1"])
    with pytest.raises(GpuplanError, match="no provider lists mi300x spot; name the provider"):
        scenario.load(LORA, ["price.mi300x.spot=1.80"])


def test_cli_whatif_json_csv_and_bad_vary(tmp_path):
    csv = tmp_path / "w.csv"
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "whatif", str(LORA), "--vary", "deadline=2d,7d",
                        "--json", "--csv", str(csv)], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert len(out["rows"]) == 3 and out["varied"] == ["constraints.deadline"]
    assert len(csv.read_text().splitlines()) == 4
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "whatif", str(LORA), "--vary", "deadline=2q"],
                       capture_output=True, text=True)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1
    assert "constraints.deadline=2q" in r.stderr, r.stderr


def _identity(kind, p):
    return robust._identity(kind, type("R", (), {"plans": [p] if p else []})())


def test_robustness_edges_are_where_one_more_solve_says():
    sc = scenario.load(LORA)
    kind, result = sc.run()
    rb = robust.analyse(sc, kind, result)
    assert {r.input for r in rb.rows} == {"efficiency", "price", "tokens"}
    base = _identity("train", result.plans[0])
    inputs = {i.name: i for i in robust._inputs(sc.model_copy(update={"top": 1}), "train", result)}
    broke = [r for r in rb.rows if r.breaks_at is not None]
    assert broke
    for r in rb.rows:
        inp = inputs[r.input]
        scen, extra = inp.build(r.holds_to)
        assert _identity("train", scen.run(extra)[1].plans[0]) == base
        if r.breaks_at is not None:
            assert max(r.holds_to, r.breaks_at) / min(r.holds_to, r.breaks_at) <= robust.TOLERANCE + 1e-12
            scen, extra = inp.build(r.breaks_at)
            res = scen.run(extra)[1]
            assert _identity("train", res.plans[0] if res.plans else None) != base


def test_price_edge_is_the_cost_ratio_to_the_runner_up():
    """#1's cloud cost is its price x GPU-hours, so it is displaced when price x s reaches the cost of
    the best plan not on that price: the edge brackets that ratio (hand-derivable, no bisection)."""
    sc = scenario.load(LORA)
    kind, result = sc.run()
    p1 = result.plans[0]
    rb = robust.analyse(sc, kind, result, only=("price",))
    up = [r for r in rb.rows if r.direction == "up"][0]
    assert up.breaks_at is not None
    # the best plan avoiding #1's accelerator at #1's provider and tier
    others = scenario.load(LORA, [f"price.{p1.accelerator}.{p1.acquisition}.{p1.provider}=1000"])
    runner = others.run()[1].plans[0]
    ratio = runner.cost_usd / p1.cost_usd
    assert up.holds_to <= ratio * (1 + 1e-9) and ratio <= up.breaks_at * (1 + 1e-9)


def test_cli_solve_robust_json():
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "solve", str(LORA), "--robust", "--json"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["result"]["plans"] and len(out["robustness"]["rows"]) >= 4


def test_whatif_csv_cells_are_plain_numbers_equal_to_the_json(tmp_path):
    """Money in cost_usd, days in days, the varied deadline as deadline_days; no '$3.55k' strings."""
    import csv as csvmod

    from typer.testing import CliRunner

    from cli import app

    out = tmp_path / "w.csv"
    r = CliRunner().invoke(app, ["whatif", str(LORA), "--vary", "deadline=2d,7d", "--vary", "budget=$50,$1k",
                                 "--json", "--csv", str(out)])
    assert r.exit_code == 0, r.output
    data, rows = json.loads(r.stdout), list(csvmod.DictReader(out.open()))
    assert list(rows[0]) == ["scenario", "deadline_days", "budget_usd", "status", "best_plan", "accelerator", "gpus",
                             "days", "cost_usd", "vs_base"]
    assert [row["scenario"] for row in rows] == ["base", "1", "2", "3", "4"]
    for row, js in zip(rows, data["rows"]):
        if js["plan"] is None:
            assert row["cost_usd"] == row["days"] == row["gpus"] == ""
            continue
        assert float(row["cost_usd"]) == pytest.approx(js["cost_usd"], rel=1e-12)
        assert float(row["days"]) == pytest.approx(js["days"], rel=1e-12)
        assert int(row["gpus"]) == js["plan"]["count"]
    assert [row["deadline_days"] for row in rows[1:]] == ["2.0", "2.0", "7.0", "7.0"]
    assert [row["budget_usd"] for row in rows[1:]] == ["50.0", "1000.0", "50.0", "1000.0"]
    assert not any("$" in v for row in rows for v in row.values() if v != row["best_plan"])


def test_whatif_varies_a_compute_budget_in_pf_days():
    wi = whatif.run(str(LORA), ["compute=1PFd,1e6"])
    assert wi.varied == ["constraints.compute_budget"]
    low, high = wi.rows[1], wi.rows[2]
    assert low.status == "infeasible" and low.summary.startswith("no plan; fix: compute budget >= ")
    assert high.status == "optimal" and high.vs_base == "same plan"


@pytest.mark.parametrize("spec", ["budget=$1,000,000", "max_gpus=1,000"])
def test_vary_values_with_thousands_separators_are_rejected_not_split(spec):
    """'--vary budget=$1,000,000' would be the values $1, 000 and 000: rejected, with the fix."""
    with pytest.raises(GpuplanError, match="no thousands separators: write 1M or 1000000"):
        whatif.parse_vary(spec)


def test_robustness_probes_stay_within_the_inputs_bounds(tmp_path):
    """A rate of 1.5 an hour was probed at x0.5, under the one-request-an-hour floor, and the whole
    analysis failed with that bound's error: the probes now stop at the bound."""
    from recommender.units import MIN_RATE

    f = tmp_path / "s.yaml"
    f.write_text("model: {preset: llama-3-8b}\nworkload: {kind: serve, rate: 1.5/h, ttft: 1s, tpot: 50ms}\n"
                 "constraints: {gpus: [l40s]}\ntop: 1\n")
    sc = scenario.load(f)
    kind, result = sc.run()
    (demand,) = [i for i in robust._inputs(sc, kind, result) if i.name == "demand"]
    assert demand.bottom * demand.base == pytest.approx(MIN_RATE) and demand.top == robust.RANGE
    rb = robust.analyse(sc, kind, result, only=("demand",))
    assert {r.direction for r in rb.rows} == {"down", "up"}
