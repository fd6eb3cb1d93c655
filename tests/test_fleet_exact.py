"""The portfolio planner's CP-SAT optimum equals brute-force enumeration (tests/fleet_brute.py) on
small random portfolios, and every schedule it returns passes the independent re-check
(fleet_model.check: capacity, demand, deadlines, budgets, power, space, in floating point)."""

from __future__ import annotations

import random
from dataclasses import replace

import pytest

from recommender.fleet_model import GpuType, Instance, Job, Option, Replica, Service, check, objective_value
from recommender.fleet_solver import FleetModel
import fleet_brute

INSTANCES = 100
MOST_COMBOS = 20000


def _type(rng: random.Random, name: str, T: int) -> GpuType:
    node = rng.choice([2, 4])
    od = round(rng.uniform(1.0, 4.0), 2)
    reserved = ((rng.choice([2, 3]), round(od * rng.uniform(0.5, 0.8), 2)),) if rng.random() < 0.4 else ()
    buy = round(od * 730 * rng.uniform(2.0, 6.0), 0) if rng.random() < 0.7 else None
    return GpuType(id=name, node=node, tdp_w=rng.choice([300.0, 700.0, None]) if buy is None else rng.choice([300.0, 700.0]),
                   owned=rng.choice([0, 0, node]), buy_usd_per_gpu=buy, lead_periods=rng.choice([0, 1]),
                   on_demand=od if rng.random() < 0.9 else None,
                   spot=round(od * 0.6, 2) if rng.random() < 0.3 else None, reserved=reserved)


def random_instance(seed: int) -> Instance:
    rng = random.Random(seed)
    T = rng.choice([3, 4, 5])
    types = tuple(_type(rng, f"g{i}", T) for i in range(rng.choice([1, 1, 2])))
    jobs = []
    for j in range(rng.choice([1, 2, 2])):
        opts = []
        for _ in range(rng.choice([1, 2])):
            g = rng.choice(types)
            periods = rng.randint(1, 2)
            opts.append(Option(gpu=g.id, count=g.node * rng.choice([1, 2]), periods=periods, days=periods * 30.0 - 3))
        earliest = rng.choice([0, 0, 1])
        deadline = rng.choice([None, earliest + max(o.periods for o in opts) + rng.choice([0, 1])])
        jobs.append(Job(name=f"j{j}", kind="pretrain", options=tuple(opts), earliest=earliest,
                        deadline=deadline, due=deadline, weight=rng.choice([1.0, 2.0])))
    services = []
    if rng.random() < 0.5:
        reps = tuple(Replica(gpu=g.id, gpus=rng.choice([1, 2]), capacity=round(rng.uniform(2, 6), 2))
                     for g in rng.sample(types, len(types)))
        demand = tuple(round(rng.uniform(0, 9), 2) if rng.random() < 0.8 else 0.0 for _ in range(T))
        services.append(Service(name="s0", demand=demand, replicas=reps))
    objective = rng.choice(["cost", "cost", "cost", "makespan", "lateness"])
    if objective == "cost":  # some jobs optional: worth a value the optimum may forgo
        jobs = [replace(j, value_usd=round(rng.uniform(500, 20000), 2)) if rng.random() < 0.3 else j for j in jobs]
    if objective == "lateness":  # deadlines are due dates there, the horizon the only hard end
        jobs = [Job(name=j.name, kind=j.kind, options=j.options, earliest=j.earliest, deadline=None, due=j.due,
                    weight=j.weight) for j in jobs]
    inst = Instance(periods=T, step="month", types=types, jobs=tuple(jobs), services=tuple(services),
                    pue=1.3, usd_per_kwh=round(rng.uniform(0.05, 0.2), 3),
                    colo_usd_per_kw_month=rng.choice([0.0, 150.0]), depreciation_years=rng.choice([1.0, 3.0]),
                    objective=objective)
    if fleet_brute.combos(inst) > MOST_COMBOS:
        return inst
    free = fleet_brute.solve(inst)
    limits = {}
    if free is not None and rng.random() < 0.5:  # a budget near the unconstrained optimum: binds or breaks
        limits["budget_usd"] = max(1.0, free[1] / 100 * rng.uniform(0.8, 1.6))
    if rng.random() < 0.3:
        limits["power_kw"] = rng.choice([0.5, 1.5, 3.0])
    if rng.random() < 0.25 and free is not None:
        limits["budget_per"] = (2, max(1.0, free[1] / 100 * rng.uniform(0.3, 1.0)))
    if rng.random() < 0.2:
        limits["space_gpus"] = rng.choice([2, 4, 8])
    return Instance(**{**inst.__dict__, **limits})


def _cases():
    out, seed = [], 0
    while len(out) < INSTANCES:
        inst = random_instance(seed)
        if fleet_brute.combos(inst) <= MOST_COMBOS:
            out.append((seed, inst))
        seed += 1
    return out


CASES = _cases()


@pytest.mark.parametrize("seed,inst", CASES, ids=[f"seed{s}" for s, _ in CASES])
def test_cpsat_equals_brute_force(seed, inst):
    truth = fleet_brute.solve(inst)
    out = FleetModel(inst, time_limit_s=30).solve()
    if truth is None:
        assert out.status == "infeasible", (seed, out.status)
        # the core names the limits that conflict; an empty one means no limit is to blame
        model = FleetModel(inst)
        core = model.minimal_core(out.core)
        assert model.solve(set(core)).status == "infeasible"
        for c in core:  # minimal: without any one member the rest can be met
            assert model.solve(set(core) - {c}).status == "optimal"
        return
    assert out.status == "optimal", (seed, out.status)
    goal = 0 if inst.objective == "cost" else truth[0]
    assert out.cost_cents == truth[1], (seed, out.cost_cents, truth)
    totals = check(inst, out.schedule)  # the independent re-check: raises on any violation
    assert abs((totals.total + totals.forgone) * 100 - out.cost_cents) <= 2 + 1e-6 * abs(out.cost_cents) + 2 * inst.periods * 8
    if inst.objective != "cost":
        got = objective_value(inst, totals)
        assert (got if inst.objective == "makespan" else round(got * 1000)) == goal


def test_the_cases_cover_what_matters():
    """The random cases reach every branch worth testing: infeasible, budgets that bind, power, purchases
    that pay off, reservations, services, each objective."""
    kinds = set()
    for _, inst in CASES:
        kinds.add(inst.objective)
        if inst.budget_usd is not None:
            kinds.add("budget")
        if inst.power_kw is not None:
            kinds.add("power")
        if inst.services:
            kinds.add("service")
        if any(t.reserved for t in inst.types):
            kinds.add("reserved")
        if inst.budget_per is not None:
            kinds.add("budget_per")
        if any(j.value_usd is not None for j in inst.jobs):
            kinds.add("optional")
    infeasible = sum(fleet_brute.solve(inst) is None for _, inst in CASES)
    bought = sum(bool(FleetModel(inst).solve().schedule and FleetModel(inst).solve().schedule.buy) for _, inst in CASES)
    assert {"cost", "makespan", "lateness", "budget", "power", "service", "reserved", "budget_per", "optional"} <= kinds
    skipped = sum(bool(FleetModel(inst).solve().schedule) and len(FleetModel(inst).solve().schedule.runs) < len(inst.jobs)
                  for _, inst in CASES)
    assert skipped >= 2, skipped  # some optional jobs are worth skipping, so the case is exercised
    assert infeasible >= 3 and bought >= 5, (infeasible, bought)
