"""`gpuplan pareto`: the exact cost-versus-time (training) or cost-versus-latency (serving) frontier.

Training, over the planner's candidate table (recommender.candidates.table) and the CP-SAT model
of recommender.solver, by the epsilon-constraint method with the deadline as epsilon:

  point 1 = the cheapest plan meeting every limit (ties: fewer days, then the planner's order);
  point k+1 = the cheapest plan with strictly fewer days than point k (same ties);
  stop when none is left.

Each point is the single-objective optimum "least cost with days <= d_k" (a cheaper plan within
d_k would have been found first), costs rise strictly and days fall strictly along the list, so no
point dominates another and every non-dominated (cost, days) pair of the table is on it: one
CP-SAT solve per point, plus the last that proves the list complete.

Serving: the fleet cost is C(L) = the least cost with the chosen latency percentile (end-to-end,
TTFT or TPOT) at most L, every other target of the scenario kept. With queueing, a bound L sets
each replica type's capacity (recommender.formulas.queueing) and so the whole fleet; C never rises
as L grows, but its steps are not at latencies the table lists. The frontier is C on a geometric
grid of GRID_POINTS bounds from just above the least latency any replica reaches at light load to
the scenario's target for that latency (or FLOOR_SPAN times the least when it sets none): each
point is `serve` with that bound, exact for it and re-checked; points a faster one matches or
beats on cost are dropped. Between two grid bounds the frontier is not resolved.
"""

from __future__ import annotations

import dataclasses

import time
from typing import Literal

import numpy as np
from pydantic import BaseModel

from recommender.candidates import SearchSpace, nothing_to_plan, table
from recommender.errors import GpuplanError
from recommender.planner import Plan, as_plan, plan_summary, with_pf_days
from recommender.serve_planner import (ServeLimits, ServePlan, ServeSpace, fleet_summary, nothing_to_serve,
                                       plan_serving, replica_table, with_latencies)
from recommender.serving import ServeWorkload
from recommender.solver import Limits, PlanModel, ordering

METRICS = ("e2e", "ttft", "tpot")


class FrontierPoint(BaseModel):
    point: int
    cost_usd: float                      # training: the whole job; serving: over the horizon
    cost_per_hour_usd: float | None = None
    days: float | None = None            # training: to finish, lead time included
    latency_ms: float | None = None      # serving: the bound on the chosen latency (the fleet's worst
                                         # value, or above it when the promise sets the demand)
    summary: str
    plan: Plan | ServePlan


class Frontier(BaseModel):
    kind: Literal["train", "serve"]
    metric: str                          # days, or e2e / ttft / tpot
    status: str                          # optimal (the list is complete and exact) or infeasible
    points: list[FrontierPoint]
    solves: int
    solve_seconds: float
    candidates: int
    notes: list[str]


def _check(status: str) -> None:
    if status not in ("optimal", "infeasible"):
        raise GpuplanError("time-limit", status, "a frontier point was not proven optimal within the time limit; "
                           "raise --time-limit")


def train_frontier(job, limits: Limits, space: SearchSpace, time_limit_s: float = 10.0,
                   notes: list[str] | None = None) -> Frontier:
    t0 = time.perf_counter()
    df, stats = table(job, space)
    if df.empty:
        raise nothing_to_plan(job, space)
    if limits.compute_pf_days is not None:
        df = with_pf_days(df, job)
    masks = Limits.violations(limits, df, needs_price=True)
    if masks["priced"].all():
        raise GpuplanError("catalog.prices", ",".join(sorted(set(df.accelerator))),
                           "a cost frontier needs prices and none of these has one; add one under catalog.prices")
    enforce = set(masks)
    pm = PlanModel(df, ordering(df, "cost"), masks, time_limit_s)
    excluded = np.zeros(len(df), dtype=bool)
    points: list[FrontierPoint] = []
    solves, first = 0, None
    status = "optimal"
    while True:
        out = pm.solve(enforce, exclude=excluded)
        solves += 1
        _check(out.status)
        if not out.rows:
            status = "optimal" if points else "infeasible"
            break
        row = df.iloc[out.rows[0]]
        first = row if first is None else first
        plan = as_plan(job, row, limits, space, len(points) + 1, first)
        points.append(FrontierPoint(point=len(points) + 1, cost_usd=float(row.cost), days=float(row.total_days),
                                    summary=plan_summary(plan), plan=plan))
        # epsilon: strictly fewer days than this point
        excluded |= df.total_days.values >= row.total_days
    return Frontier(kind="train", metric="days", status=status, points=points, solves=solves,
                    solve_seconds=time.perf_counter() - t0, candidates=stats.get("candidates", len(df)),
                    notes=list(notes or []))


# -- serving ------------------------------------------------------------------------------------
GRID_POINTS = 12
FLOOR_SPAN = 20.0


def serve_frontier(w: ServeWorkload, limits: ServeLimits, space: ServeSpace, metric: str = "e2e",
                   time_limit_s: float = 10.0) -> Frontier:
    if metric not in METRICS:
        raise GpuplanError("latency", metric, f"must be one of {', '.join(METRICS)}")
    if w.demand is None:
        raise GpuplanError("rate", None, "give the demand: rate, or users with think_time")
    t0 = time.perf_counter()
    field = f"{metric}_s"
    if metric == "e2e":   # an end-to-end bound rules disaggregated pools out (serve_planner.disaggregates)
        space = dataclasses.replace(space, disaggregate="off")
    full = replica_table(w, space)
    priced = full[full.cost_ph.notna()].reset_index(drop=True) if not full.empty else full
    if full.empty:
        raise nothing_to_serve(w, space)
    if priced.empty:   # as plan_serving says it
        raise GpuplanError("gpus", ",".join(space.accelerators), "none of these accelerators has a published "
                           "price (cloud or purchase); serving plans are priced per hour")
    # the floor from aggregated replicas (a disaggregated fleet's latencies are sums over its pools)
    agg = priced[priced.role == "both"] if "role" in priced and (priced.role == "both").any() else priced
    floor = float(with_latencies(agg, w, light_only=True)[f"{metric}0"].min())
    top = getattr(w, field) or floor * FLOOR_SPAN
    bounds = np.geomspace(floor * 1.02, max(top, floor * 1.05), GRID_POINTS)[::-1]
    found = []
    for b in bounds:
        r = plan_serving(w.model_copy(update={field: float(b)}), limits, space, top=1, time_limit_s=time_limit_s)
        _check(r.status if r.status != "infeasible" else "optimal")
        if r.plans:
            found.append((float(b), r.plans[0]))
    # cost never rises with the bound: keep the fastest bound of each cost level
    points: list[FrontierPoint] = []
    for k, (b, plan) in enumerate(found):
        if any(p.cost_per_hour_usd <= plan.cost_per_hour_usd * (1 + 1e-9) for _, p in found[k + 1:]):
            continue
        first = points[0].cost_per_hour_usd if points else None
        plan = plan.model_copy(update={"rank": len(points) + 1, "vs_best": "best" if first is None else
                                       f"{plan.cost_per_hour_usd / first - 1:+.0%} $"})
        points.append(FrontierPoint(point=len(points) + 1, cost_usd=plan.horizon_cost_usd,
                                    cost_per_hour_usd=plan.cost_per_hour_usd, latency_ms=b * 1e3,
                                    summary=fleet_summary(plan), plan=plan))
    notes = [f"C(L) on a grid of {GRID_POINTS} bounds from {floor * 1.02 * 1e3:,.1f} ms to "
             f"{max(top, floor * 1.05) * 1e3:,.1f} ms (p{w.percentile * 100:g}); steps between grid bounds are "
             "not resolved"]
    return Frontier(kind="serve", metric=metric, status="optimal" if points else "infeasible", points=points,
                    solves=len(bounds), solve_seconds=time.perf_counter() - t0, candidates=len(priced), notes=notes)
