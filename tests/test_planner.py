"""Planner behaviour: relaxations are the true minima, owned inventory, compute objective, CLI."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from recommender import api, catalog
from recommender.candidates import SearchSpace
from recommender.planner import plan
from recommender.solver import Limits
from recommender.spec import TrainJob
from recommender.units import fmt_usd

ROOT = Path(__file__).resolve().parent.parent
JOB = TrainJob(model=catalog.dense_shape(7e9, layers=31, hidden=4224), tokens=2e11, global_batch_tokens=1024 * 4096, seq_len=4096)
SPACE = SearchSpace(accelerators=("a100-80g", "h100-sxm"), counts=(8, 16, 32, 64, 128), acquisitions=("on_demand",))


def test_infeasible_budget_relaxation_is_the_least_cost_at_this_deadline():
    cheapest = plan(JOB, Limits(deadline_days=10), SPACE, objective="cost", top=1).plans[0]
    r = plan(JOB, Limits(deadline_days=10, budget_usd=cheapest.cost_usd * 0.5), SPACE, objective="cost")
    assert r.status == "infeasible" and not r.plans
    budget = [x for x in r.relaxations if x.constraint == "budget"]
    assert budget and budget[0].needed == f"budget >= {fmt_usd(cheapest.cost_usd)}"


def test_infeasible_deadline_relaxation_is_the_least_time_at_this_budget():
    fastest = plan(JOB, Limits(budget_usd=1e9), SPACE, objective="time", top=1).plans[0]
    r = plan(JOB, Limits(deadline_days=fastest.total_days / 2, budget_usd=1e9), SPACE, objective="cost")
    assert r.status == "infeasible"
    assert [x.constraint for x in r.relaxations] == ["deadline"]
    assert r.relaxations[0].needed == f"deadline >= {int(-(-fastest.total_days // 1))} days"


def test_core_names_only_conflicting_limits():
    r = plan(JOB, Limits(deadline_days=0.01, max_gpus=8, power_kw=1e6), SPACE, objective="cost")
    assert r.status == "infeasible"
    assert "power" not in {x.constraint for x in r.relaxations}


def test_owned_gpus_cost_only_energy_and_colocation():
    space = SearchSpace(accelerators=("h100-sxm",), counts=(64, 256, 1024), acquisitions=("on_demand",),
                        owned={"h100-sxm": 256})
    job = TrainJob(model=catalog.dense_shape(30e9, layers=53, hidden=6784), tokens=1e12, global_batch_tokens=4096 * 1024, seq_len=4096)
    fast = plan(job, Limits(deadline_days=15), space, objective="cost", top=1).plans[0]
    assert fast.count == 1024 and fast.owned_gpus == 256
    rented = plan(job, Limits(deadline_days=15), SearchSpace(accelerators=("h100-sxm",), counts=(64, 256, 1024),
                                                           acquisitions=("on_demand",)), top=1).plans[0]
    assert fast.cost_usd < rented.cost_usd
    assert fast.cost_breakdown_usd.energy > 0


def test_compute_objective_fills_budget():
    r = plan(JOB, Limits(budget_usd=100_000, deadline_days=30), SPACE, objective="compute", top=1)
    p = r.plans[0]
    assert p.cost_usd == pytest.approx(100_000, rel=1e-6) or p.total_days == pytest.approx(30, rel=1e-6)
    assert p.tokens > JOB.tokens / 100


def test_train_json_contract():
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--params", "7B", "--tokens", "200B",
                          "--deadline", "30d", "--gpus", "h100,a100", "--top", "3", "--json"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 0, out.stderr
    data = json.loads(out.stdout)
    assert data["status"] == "optimal" and data["objective"] == "cost" and data["solve_seconds"] > 0
    assert [p["rank"] for p in data["plans"]] == [1, 2, 3]
    for key in ("accelerator", "count", "tp", "pp", "dp", "zero", "recompute", "micro_batch", "precision",
                "acquisition", "fits", "memory_gib_per_gpu", "memory_breakdown_gib", "days", "cost_usd", "mfu"):
        assert key in data["plans"][0]
    assert "relaxations" in data


def test_train_bad_input():
    out = subprocess.run([sys.executable, str(ROOT / "cli.py"), "train", "--params", "7B", "--deadline", "60 dayz"],
                         capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert out.returncode == 2 and "deadline=60 dayz" in out.stderr and len(out.stderr.strip().splitlines()) == 1


def test_default_tokens_said():
    r = api.train(params="1B", deadline="30d", gpus="h100", top=1)
    assert any("Hoffmann" in n for n in r.notes)


def test_compute_objective_without_a_model_sizes_one():
    r = api.train(objective="compute", budget="200k", deadline="30d", gpus="h100", top=1)
    p = r.plans[0]
    assert p.cost_usd == pytest.approx(200_000, rel=1e-6) or p.total_days == pytest.approx(30, rel=1e-6)
    assert any("no model given" in n for n in r.notes)
    assert 5 <= p.tokens / p.params <= 80  # near the 20 tokens per parameter it was sized for


def test_diverse_gives_one_plan_per_accelerator():
    r = plan(JOB, Limits(deadline_days=30), SPACE, objective="cost", top=5, diverse=True)
    assert sorted(p.accelerator for p in r.plans) == ["a100-80g", "h100-sxm"]


# -- compute budgets in PF-days (issue 16) -------------------------------------------------------
# JOB by hand (PaLM App. B, 6N + 12 L H Q T per token): N = 6,853,824,384 matmul parameters, L = 31,
# H = 4,224, T = 4,096: 41,122,946,304 + 6,436,159,488 = 47,559,105,792 FLOPs a token; x 2e11 tokens
# = 9.5118e21 FLOPs = 110.09 PF-days (1 PF-day = 8.64e19 FLOPs).
JOB_FLOPS_PER_TOKEN = 47_559_105_792
JOB_PF_DAYS = 110.0905


def test_compute_budget_above_the_jobs_flops_is_met_and_stated():
    r = plan(JOB, Limits(compute_pf_days=200), SPACE, objective="cost", top=2)
    assert r.status == "optimal" and r.plans
    assert all(p.pf_days == pytest.approx(JOB_PF_DAYS, rel=1e-5) for p in r.plans)
    assert "compute budget 200 PF-days: the job needs 110 PF-days of model FLOPs on any layout (55%)." in r.explanation
    assert r.plans[0] == plan(JOB, Limits(), SPACE, objective="cost", top=1).plans[0]


def test_compute_budget_below_the_jobs_flops_is_infeasible_with_the_least_budget():
    r = plan(JOB, Limits(compute_pf_days=100), SPACE, objective="cost")
    assert r.status == "infeasible" and not r.plans
    assert r.explanation == ["No plan meets all limits. Conflicting: compute_budget."]
    fix = [x for x in r.relaxations if x.constraint == "compute_budget"]
    assert fix and fix[0].given == "100 PF-days" and fix[0].needed == "compute budget >= 111 PF-days"
    # the plan the fix names is the cheapest one (ties on PF-days go in the objective's order)
    best = plan(JOB, Limits(), SPACE, objective="cost", top=1).plans[0]
    assert fix[0].plan.startswith(f"{best.count} x {best.accelerator} ")


def test_compute_budget_caps_the_tokens_under_the_compute_objective():
    """1,000 PF-days = 8.64e22 FLOPs = 8.64e22 / 47,559,105,792 = 1.8167e12 tokens, on every plan that
    reaches it within the horizon; those tie on tokens and are ranked by cost."""
    r = plan(JOB, Limits(compute_pf_days=1000), SPACE, objective="compute", top=3)
    assert r.status == "optimal" and len(r.plans) == 3
    for p in r.plans:
        assert p.total_flops == pytest.approx(8.64e22, rel=1e-9)
        assert p.tokens == pytest.approx(8.64e22 / JOB_FLOPS_PER_TOKEN, rel=1e-9)
    costs = [p.cost_usd for p in r.plans]
    assert costs == sorted(costs)
    assert any(line.startswith("compute budget binds (1,000 PF-days)") for line in r.explanation)


def test_compute_objective_with_a_budget_that_binds_first_ignores_a_large_compute_budget():
    money = plan(JOB, Limits(budget_usd=20_000), SPACE, objective="compute", top=1).plans[0]
    both = plan(JOB, Limits(budget_usd=20_000, compute_pf_days=1e6), SPACE, objective="compute", top=1)
    assert both.plans[0].tokens == pytest.approx(money.tokens)
    assert not any("compute budget binds" in line for line in both.explanation)


def test_cli_compute_budget_infeasible_exit_3_and_bad_value_exit_2():
    base = [sys.executable, str(ROOT / "cli.py"), "train", "--params", "7B", "--tokens", "200B",
            "--gpus", "h100-sxm", "--seq-len", "4096", "--compute-budget"]
    r = subprocess.run(base + ["50PFd", "--json"], capture_output=True, text=True)
    assert r.returncode == 3, r.stderr
    assert json.loads(r.stdout)["relaxations"][0]["needed"].startswith("compute budget >= ")
    r = subprocess.run(base + ["lots"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        "gpuplan: error: compute-budget=lots: cannot parse as compute; use PF-days, e.g. 5000PFd, 5k PF-days, "
        "or FLOPs, e.g. 3.14e23FLOPs"]
