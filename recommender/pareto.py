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

Serving: the fleet cost is C(L) = the least cost with the chosen latency (end-to-end, TTFT or
TPOT) at most L, every other target of the scenario kept. For a bound L the best batch of each
replica type is the largest meeting L (throughput grows with the batch, cost and GPUs do not),
so C(L) is the fleet solver's optimum over one row per replica type and acquisition: the type at
that batch. C never rises as L grows and changes only at a latency some (type, batch) has, so on
the sorted distinct latencies of every batch of every type:

  start at the largest; C = C(it); the point's latency is the least value with C(value) <= C
  (bisection: C is monotone); the next point starts just below it; stop when C is infeasible.

A demand given as users and think time rises as the promised latency falls (response-time law):
C(L) uses the demand at L, as `serve --e2e L` does. Each point is re-checked by the evaluator.
"""

from __future__ import annotations

import time
from typing import Literal

import numpy as np
import pandas as pd
from pydantic import BaseModel

from recommender import catalog
from recommender.candidates import SearchSpace, table
from recommender.errors import GpuplanError
from recommender.planner import Plan, as_plan, plan_summary, with_pf_days
from recommender.serve_planner import (ServeLimits, ServePlan, ServeSpace, _fleet_plan, _Query, _recheck,
                                       fleet_summary, replica_table, serve_efficiency)
from recommender.serving import HOURS_PER_DAY, ServeWorkload, meets, serving_terms
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
        raise GpuplanError("model", job.model.id, "no accelerator in the search space can hold this model")
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
TYPE_KEY = ["accelerator", "vendor", "precision", "kv_precision", "tp", "pp"]


class _Curves:
    """Every batch 1..B of every replica type (B: the largest meeting the scenario's targets), with
    its latencies and throughput, and the priced acquisitions of each type."""

    def __init__(self, w: ServeWorkload, space: ServeSpace, priced: pd.DataFrame, metric: str):
        a = catalog.assumption
        headroom = a("memory_headroom") if space.headroom is None else space.headroom
        self.metric = metric
        types = (priced.groupby(TYPE_KEY, sort=True).batch.max().reset_index())
        self.types = types
        self.curves: list[dict[str, np.ndarray]] = []
        for (acc_id, prec, kv), grp in types.groupby(["accelerator", "precision", "kv_precision"], sort=True):
            acc = catalog.accelerator(acc_id)
            b = [np.arange(1, int(bmax) + 1) for bmax in grp.batch.values]
            tp = np.concatenate([np.full(len(x), t) for x, t in zip(b, grp.tp.values)])
            pp = np.concatenate([np.full(len(x), p) for x, p in zip(b, grp.pp.values)])
            lat = serving_terms(w, acc, prec, kv, tp, pp, np.concatenate(b), serve_efficiency(acc_id),
                                headroom).latency
            cut = np.cumsum([0] + [len(x) for x in b])
            for k, i in enumerate(grp.index):
                sl = slice(cut[k], cut[k + 1])
                c = {"batch": b[k], "ttft": np.atleast_1d(lat.ttft)[sl], "tpot": np.atleast_1d(lat.tpot)[sl],
                     "e2e": np.atleast_1d(lat.e2e)[sl], "thr": np.atleast_1d(lat.tokens_per_s)[sl]}
                ok = np.ones(len(b[k]), dtype=bool)
                for name in METRICS:
                    ok &= np.broadcast_to(meets(c[name], getattr(w, f"{name}_s")), ok.shape)
                # every latency grows with the batch (tests/test_serving.py), so `ok` is a prefix
                n = int(np.argmin(ok)) if not ok.all() else len(ok)
                self.curves.append((i, {k2: v[:n] for k2, v in c.items()}))
        self.curves.sort(key=lambda x: x[0])
        self.acq = priced.drop_duplicates(TYPE_KEY + ["acquisition", "provider"])[
            TYPE_KEY + ["gpus", "acquisition", "provider", "cost_ph", "power_kw", "calibrated"]]
        values = np.unique(np.concatenate([c[metric] for _, c in self.curves] + [np.empty(0)]))
        # a target admits values up to 1e-12 above it (serving.meets): values that close are one bound,
        # the cluster's largest
        last = np.append(values[1:] > values[:-1] * (1 + 1e-12), True) if len(values) else values.astype(bool)
        self.values = values[last]

    def rows_at(self, bound: float) -> pd.DataFrame:
        """One row per replica type and acquisition at its largest batch with `metric` <= bound."""
        picks = []
        for i, c in self.curves:
            n = int(np.searchsorted(c[self.metric], bound * (1 + 1e-12), side="right"))
            if n:
                picks.append((i, *(c[k][n - 1] for k in ("batch", "ttft", "tpot", "e2e", "thr"))))
        if not picks:
            return pd.DataFrame()
        best = pd.DataFrame(picks, columns=["i", "batch", "ttft", "tpot", "e2e", "thr"])
        best = pd.concat([self.types.loc[best.i.values, TYPE_KEY].reset_index(drop=True),
                          best.drop(columns="i")], axis=1)
        return best.merge(self.acq, on=TYPE_KEY, how="inner", sort=False).reset_index(drop=True)


def serve_frontier(w: ServeWorkload, limits: ServeLimits, space: ServeSpace, metric: str = "e2e",
                   time_limit_s: float = 10.0) -> Frontier:
    if metric not in METRICS:
        raise GpuplanError("latency", metric, f"must be one of {', '.join(METRICS)}")
    if w.requests_per_s is None:
        raise GpuplanError("rate", None, "give the demand: rate, or users with think_time")
    t0 = time.perf_counter()
    full = replica_table(w, space)
    priced = full[full.cost_ph.notna()].reset_index(drop=True) if not full.empty else full
    if priced.empty:
        raise GpuplanError("model", w.model.id, "no priced accelerator in the search space can hold one replica")
    curves = _Curves(w, space, priced, metric)
    field = f"{metric}_s"
    solves = 0
    memo: dict[int, int | None] = {}

    def query(j: int):
        bound = float(curves.values[j])
        wl = w.model_copy(update={field: bound})
        df = curves.rows_at(bound)
        if df.empty:
            return None
        return _Query(df, wl, limits, wl.output_tokens_per_s, space, time_limit_s)

    def cost(j: int) -> int | None:
        nonlocal solves
        if j not in memo:
            q = query(j)
            if q is None:
                memo[j] = None
            else:
                status, c = q.pm.min_cost(q.enforce)
                solves += 1
                _check(status)
                memo[j] = c
        return memo[j]

    points: list[FrontierPoint] = []
    hours = w.horizon_days * HOURS_PER_DAY
    hi = len(curves.values) - 1
    c = cost(hi) if hi >= 0 else None
    while c is not None:
        # the least index whose optimum is no dearer than c (C is monotone): gallop down from hi,
        # points lie close together, then bisect the last step
        ok = lambda j: cost(j) is not None and cost(j) <= c  # noqa: E731
        top, step = hi, 1
        while top - step >= 0 and ok(top - step):
            top -= step
            step *= 2
        lo = max(0, top - step + 1)
        while lo < top:
            mid = (lo + top) // 2
            if ok(mid):
                top = mid
            else:
                lo = mid + 1
        q = query(lo)
        out = q.pm.solve(q.enforce)
        solves += 3
        _check(out.status)
        parts = _recheck(q.w, q.df, out.rows, space, limits, q.demand)
        plan = _fleet_plan(len(points) + 1, parts, q.demand, hours, "best" if not points else
                           f"{sum(p.cost_per_hour_usd for p in parts) / points[0].cost_per_hour_usd - 1:+.0%} $")
        # the bound, not the fleet's worst value: with demand from users and think time the bound is
        # also the promise that sets the demand (with a given rate the two are equal)
        points.append(FrontierPoint(point=len(points) + 1, cost_usd=plan.horizon_cost_usd,
                                    cost_per_hour_usd=plan.cost_per_hour_usd,
                                    latency_ms=float(curves.values[lo]) * 1e3,
                                    summary=fleet_summary(plan), plan=plan))
        if lo == 0:
            break
        hi = lo - 1
        c = cost(hi)
    # the solver compares costs rounded up to 1e-4 $/hour per replica: two fleets of equal cost
    # (one TP8 replica, two TP4) can differ there by a unit; keep only points a later (faster) one
    # does not match or beat on the true cost
    kept = [p for k, p in enumerate(points)
            if all(q.cost_per_hour_usd > p.cost_per_hour_usd * (1 + 1e-9) for q in points[k + 1:])]
    points = [p.model_copy(update={"point": k + 1, "plan": p.plan.model_copy(update={"rank": k + 1})})
              for k, p in enumerate(kept)]
    notes = []
    if w.users is not None:
        notes.append(f"demand from {w.users:,} users and {w.think_time_s:g} s think time rises as the promised "
                     "latency falls (response-time law): each point is priced at its own demand")
    return Frontier(kind="serve", metric=metric, status="optimal" if points else "infeasible", points=points,
                    solves=solves, solve_seconds=time.perf_counter() - t0, candidates=len(priced), notes=notes)
