"""Exactness: on random instances the CP-SAT optimum equals a brute-force loop that calls the
one-configuration evaluator on every tuple of the same space, and every returned plan,
re-evaluated, meets every limit."""

import itertools
import math
import random

import numpy as np
import pytest

from recommender import catalog
from recommender.candidates import BATCH_ROUNDING, SearchSpace
from recommender.errors import GpuplanError
from recommender.evaluate import evaluate
from recommender.planner import plan
from recommender.solver import Limits
from recommender.spec import ModelSpec, TrainJob, TrainLayout

POOL = ["a100-80g", "a100-40g", "h100-sxm", "h200", "b200", "gaudi3", "tpu-v5p", "l40s", "v100-32g"]
N_INSTANCES = 200


def small_moe(rng) -> ModelSpec:
    """A mixture-of-experts shape small enough for the brute force, with odd layer counts."""
    return ModelSpec(id="toy-moe", name="toy MoE", layers=rng.choice([6, 7, 12]), hidden=2048, ffn=5632, heads=16,
                     kv_heads=rng.choice([4, 16]), vocab=32000, seq_len=rng.choice([1024, 2048]), experts=8,
                     experts_per_token=2, shared_experts=rng.choice([0, 1]), moe_ffn=1408, dense_layers=1)


def make_instance(seed: int):
    rng = random.Random(seed)
    if rng.random() < 0.3:
        model = small_moe(rng)
    else:
        model = catalog.dense_shape(rng.choice([0.5e9, 1e9, 3e9, 7e9, 13e9]), seq_len=rng.choice([1024, 2048]))
    method = rng.choice(["full", "full", "lora", "qlora"])
    job = TrainJob(model=model, tokens=rng.choice([2e10, 1e11, 5e11]), global_batch_tokens=rng.choice([64, 256]) * model.seq_len,
                   seq_len=model.seq_len, method=method, lora_rank=rng.choice([8, 64]))
    accs = tuple(rng.sample(POOL, rng.choice([1, 2, 2, 3])))
    owned = {accs[0]: rng.choice([4, 8])} if rng.random() < 0.2 else {}
    space = SearchSpace(
        accelerators=accs, precisions=rng.choice([("bf16",), ("bf16",), ("fp16", "fp8")]),
        acquisitions=tuple(rng.sample(["on_demand", "spot", "reserved", "buy"], rng.choice([1, 2]))),
        tp=(1, 2, 4), pp=(1, 2), vp=(1, 2), ep=(1, 2, 4), zero=tuple(sorted(rng.sample(range(4), 2))),
        recompute=tuple(rng.sample(["none", "selective", "full"], 2)), micro_batch=(1, 2),
        counts=tuple(sorted(rng.sample([1, 2, 4, 8, 16, 32], 3))), owned=owned, amortize=rng.random() < 0.5)
    objective = rng.choice(["cost", "time"])
    return rng, job, space, objective


def brute_force(job: TrainJob, space: SearchSpace):
    """Every tuple of the space through `evaluate`, with the space's validity rules written out."""
    rows = []
    m = job.model
    for acc_id, prec, acq, count, tp, pp, vp, ep, zero, rc, mb in itertools.product(
            space.accelerators, space.precisions, space.acquisitions, space.counts, space.tp, space.pp, space.vp,
            space.ep, space.zero, space.recompute, space.micro_batch):
        acc = catalog.accelerator(acc_id)
        node = acc.gpus_per_node or 1
        if count % (tp * pp) or tp > node or pp > m.layers or (vp > 1 and (pp == 1 or m.layers % (pp * vp))):
            continue
        if acc.inter_node_bw_gb_s is None and count > node:
            continue
        dp = count // (tp * pp)
        if ep > 1 and (not m.is_moe or dp % ep or m.experts % ep):
            continue
        if dp * mb > job.global_batch_seqs:
            continue
        owned = min(count, space.owned.get(acc_id, 0))
        try:
            ev = evaluate(job, TrainLayout(accelerator=acc_id, tp=tp, pp=pp, vp=vp, dp=dp, ep=ep, zero=zero, recompute=rc,
                                           micro_batch=mb, precision=prec, acquisition=acq),
                          amortize=space.amortize, owned=owned)
        except GpuplanError:
            continue  # e.g. no published peak for this precision, heads not divisible by tp
        if not ev.fits or ev.global_batch_seqs > BATCH_ROUNDING * job.global_batch_seqs:
            continue
        rows.append(ev)
    return rows


def pick_limits(rng, rows, objective):
    priced = [r for r in rows if r.cost_usd is not None]
    limits = Limits()
    if priced and rng.random() < 0.7:
        limits.budget_usd = rng.choice(priced).cost_usd * rng.choice([0.5, 1.0, 1.5])
    if rows and rng.random() < 0.7:
        r = rng.choice(rows)
        limits.deadline_days = (r.days + r.lead_time_days) * rng.choice([0.7, 1.0, 2.0])
    if rng.random() < 0.3:
        limits.max_gpus = rng.choice([2, 8, 16])
    if rng.random() < 0.2:
        limits.power_kw = rng.choice([5.0, 20.0])
    return limits


def feasible(r, limits, needs_price):
    total = r.days + r.lead_time_days
    return ((not needs_price or r.cost_usd is not None)
            and (limits.budget_usd is None or (r.cost_usd is not None and r.cost_usd <= limits.budget_usd))
            and (limits.deadline_days is None or total <= limits.deadline_days)
            and (limits.max_gpus is None or r.count <= limits.max_gpus)
            and (limits.power_kw is None or (r.facility_power_kw is not None and r.facility_power_kw <= limits.power_kw)))


@pytest.mark.parametrize("seed", range(N_INSTANCES))
def test_cp_sat_optimum_equals_brute_force(seed):
    rng, job, space, objective = make_instance(seed)
    rows = brute_force(job, space)
    limits = pick_limits(rng, rows, objective)
    needs_price = objective == "cost" or limits.budget_usd is not None
    ok = [r for r in rows if feasible(r, limits, needs_price)]
    try:
        result = plan(job, limits, space, objective=objective, top=3)
    except GpuplanError:
        assert not rows, "planner found no candidate but brute force did"
        return
    if not ok:
        assert result.status == "infeasible" and not result.plans
        assert result.relaxations, "an infeasible answer must name relaxations"
        return
    assert result.status == "optimal"
    best = result.plans[0]
    if objective == "cost":
        assert round(best.cost_usd, 2) == round(min(r.cost_usd for r in ok), 2)
    else:
        assert math.isclose(best.total_days, min(r.days + r.lead_time_days for r in ok), rel_tol=1e-9)
    for p in result.plans:  # every returned plan re-checked by the evaluator meets every limit
        assert p.fits and feasible(p, limits, needs_price)


def test_ranked_alternatives_are_distinct_and_sorted():
    _, job, space, _ = make_instance(7)
    space = SearchSpace(accelerators=("a100-80g", "h100-sxm"), counts=(8, 16, 32), acquisitions=("on_demand",))
    result = plan(job, Limits(), space, objective="cost", top=6)
    keys = [(p.accelerator, p.acquisition, p.count, p.tp, p.pp, p.precision) for p in result.plans]
    assert len(keys) == len(set(keys))
    costs = [round(p.cost_usd, 2) for p in result.plans]
    assert costs == sorted(costs)


def test_deterministic():
    _, job, _, _ = make_instance(11)
    space = SearchSpace(accelerators=("a100-80g", "h100-sxm", "h200"), counts=(8, 16, 32, 64))
    a = plan(job, Limits(deadline_days=30), space, objective="cost", top=5)
    b = plan(job, Limits(deadline_days=30), space, objective="cost", top=5)
    assert a.plans
    assert [p.model_dump(exclude={"warnings"}) for p in a.plans] == [p.model_dump(exclude={"warnings"}) for p in b.plans]


@pytest.mark.parametrize("seed", range(25))
def test_reading_the_optimum_from_the_table_equals_cp_sat(seed):
    """PlanModel.best (used for ranked alternatives and "what binds") gives CP-SAT's own answer for
    every subset of limits and random exclusions."""
    from recommender.candidates import table
    from recommender.solver import PlanModel, ordering

    rng, job, space, objective = make_instance(seed)
    df, _ = table(job, space)
    if df.empty:
        pytest.skip("nothing fits")
    limits = Limits(
        budget_usd=float(df.cost.dropna().median()) if df.cost.notna().any() else None,
        deadline_days=float(df.total_days.median()), max_gpus=int(df["count"].median()))
    masks = Limits.violations(limits, df, objective == "cost")
    pm = PlanModel(df, ordering(df, objective), masks)
    names = sorted(masks)
    for trial in range(6):
        enforce = {c for c in names if rng.random() < 0.6}
        exclude = np.array([rng.random() < 0.3 for _ in range(len(df))]) if trial % 2 else None
        a, b = pm.best(enforce, exclude), pm.solve(enforce, exclude=exclude)
        assert (a.status == "infeasible") == (b.status == "infeasible"), (enforce, a, b)
        assert a.rows == b.rows, (enforce, a.rows, b.rows)
