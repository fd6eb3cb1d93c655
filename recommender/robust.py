"""Robustness of a recommendation: how far an input can move before #1 changes, and to what.

Inputs, each scaled by a factor s around the scenario as written (s = 1):
  efficiency   #1's accelerator's matmul efficiency (the least certain figure in the catalog),
               x0.5 .. x2 (at most 1.0)
  price        #1's price: its provider's cloud rate for that tier, or the purchase price,
               x0.5 .. x2
  tokens       training tokens (serving: the demand, rate or users), x0.5 .. x2
#1 "changes" when the best plan is another accelerator, acquisition, provider, precision or GPU
count (training), or another set of (accelerator, acquisition, provider, precision) in the fleet
(serving: more replicas, or another TP split of the same parts, is the same choice), or when
nothing is feasible.

For each input and direction: solve at the range's end; if #1 is still the same there, it holds
over the whole range. Otherwise bisect on s (geometric midpoints) until the last s that keeps #1
and the first that changes it are within 3% of each other, each probe a full solve of the scenario
with that one input moved. The bisection assumes #1, once displaced, does not come back further
out (true for its own price: its rows get dearer by the same factor and no other row changes);
it reports the edge it found.
"""

from __future__ import annotations

import math
import time

from pydantic import BaseModel

from recommender import catalog
from recommender.api import MAX_TOKENS
from recommender.errors import GpuplanError
from recommender.planner import plan_summary
from recommender.serve_planner import fleet_summary
from recommender.scenario import Scenario
from recommender.units import MAX_RATE, MIN_RATE, fmt_count, fmt_usd, parse_count, parse_rate_per_s

RANGE = 2.0        # each input from x1/2 to x2
TOLERANCE = 1.03   # bisection stops when the edge is bracketed this closely


class Sensitivity(BaseModel):
    input: str                       # efficiency, price, tokens or demand
    what: str                        # e.g. "matmul efficiency of b200"
    direction: str                   # down or up
    base: str                        # the value as written
    holds_to: float                  # #1 is unchanged for every probed scale up to this one
    holds_to_value: str
    breaks_at: float | None          # the first scale found that changes #1 (None: holds over the range)
    breaks_at_value: str | None
    becomes: str | None              # #1 at breaks_at ("no plan" when nothing is feasible)
    becomes_cost: str | None


class Robustness(BaseModel):
    best: str
    rows: list[Sensitivity]
    solves: int
    seconds: float


def _identity(kind: str, result):
    if not result.plans:
        return None
    p = result.plans[0]
    if kind == "serve":
        return tuple(sorted({(pt.accelerator, pt.acquisition, pt.provider or "", pt.precision) for pt in p.parts}))
    return (p.accelerator, p.acquisition, p.provider or "", p.precision, p.count)


def _summary(kind: str, result) -> tuple[str, str]:
    if not result.plans:
        return "no plan (infeasible)", ""
    p = result.plans[0]
    if kind == "serve":
        return fleet_summary(p), f"{fmt_usd(p.cost_per_hour_usd)}/h"
    return plan_summary(p), f"{fmt_usd(p.cost_usd)}, {p.total_days:,.1f} days"


class _Input:
    """One input of the scenario, scaled: the scenario and catalog layer to solve at a scale."""

    def __init__(self, name: str, what: str, fmt, base: float, build, top: float = RANGE, bottom: float = 1 / RANGE):
        self.name, self.what, self.fmt, self.base, self.build = name, what, fmt, base, build
        self.top, self.bottom = top, bottom   # the scales probed: within RANGE and the input's own bounds


def _inputs(sc: Scenario, kind: str, result) -> list[_Input]:
    p = result.plans[0]
    main = max(p.parts, key=lambda x: x.tokens_per_s) if kind == "serve" else p
    acc_id = main.accelerator
    out: list[_Input] = []
    with sc.overrides():
        eff = catalog.efficiency(acc_id)
        if eff is not None:
            e = eff.matmul_efficiency
            out.append(_Input("efficiency", f"matmul efficiency of {acc_id}", lambda v: f"{v:.3f}", e,
                              lambda s: (sc, {"efficiencies": [eff.model_copy(update={"matmul_efficiency": e * s})]}),
                              top=min(RANGE, 1.0 / e)))
        acq = main.acquisition
        if acq == "buy":
            buy = catalog.purchase_for(acc_id)
            if buy is not None:
                x = buy.price_usd_per_gpu
                out.append(_Input("price", f"purchase price of {acc_id}", lambda v: f"{fmt_usd(v)}/GPU", x,
                                  lambda s: (sc, {"purchase_prices": [buy.model_copy(
                                      update={"price_usd_per_gpu": x * s})]})))
        elif acq in ("on_demand", "spot", "reserved"):
            rows = [r for r in catalog.prices_for(acc_id) if r.tier == acq and r.provider == main.provider]
            if rows:
                x = min(r.price_usd_per_gpu_hour for r in rows)
                out.append(_Input("price", f"{acc_id} {acq} price at {main.provider}",
                                  lambda v: f"{fmt_usd(v)}/GPU-h", x,
                                  lambda s: (sc, {"cloud_prices": [r.model_copy(update={
                                      "price_usd_per_gpu_hour": r.price_usd_per_gpu_hour * s}) for r in rows]})))
    w = sc.workload
    if kind == "serve":
        if w.rate is not None:
            r0 = parse_rate_per_s("rate", w.rate)
            out.append(_Input("demand", "request rate", lambda v: f"{v:,.3g} req/s", r0,
                              lambda s: (_edit(sc, rate=f"{r0 * s!r}rps"), {}),
                              top=min(RANGE, MAX_RATE / r0), bottom=max(1 / RANGE, MIN_RATE / r0)))
        elif w.users is not None:
            u0 = w.users
            out.append(_Input("demand", "concurrent users", lambda v: f"{round(v):,} users", float(u0),
                              lambda s: (_edit(sc, users=max(1, round(u0 * s))), {})))
    else:
        t0 = parse_count("tokens", w.tokens) if w.tokens is not None else p.tokens
        out.append(_Input("tokens", "training tokens" + (" per epoch" if w.epochs else ""), fmt_count, t0,
                          lambda s: (_edit(sc, tokens=repr(t0 * s)), {}),
                          top=min(RANGE, MAX_TOKENS / (t0 * (parse_count("epochs", w.epochs) if w.epochs else 1.0)))))
    return out


def _edit(sc: Scenario, **fields) -> Scenario:
    return sc.model_copy(update={"workload": sc.workload.model_copy(update=fields)})


def analyse(sc: Scenario, kind: str, result, progress=None, only: tuple[str, ...] | None = None) -> Robustness:
    """Each input's edges around #1 of `result` (the scenario's solve); `only` some inputs."""
    if not result.plans:
        raise GpuplanError("robust", None, "the scenario has no plan to test; relax it first")
    t0 = time.perf_counter()
    kind = "serve" if kind == "serve" else "train"
    base_id = _identity(kind, result)
    one = sc.model_copy(update={"top": 1})
    solves = 0
    inputs = [i for i in _inputs(one, kind, result) if only is None or i.name in only]
    rows: list[Sensitivity] = []

    def solve(inp: _Input, s: float):
        nonlocal solves
        scen, extra = inp.build(s)
        _, res = scen.run(extra)
        solves += 1
        return res

    for n, inp in enumerate(inputs):
        for direction, end in (("down", inp.bottom), ("up", inp.top)):
            if (direction == "up" and end <= 1.0) or (direction == "down" and end >= 1.0):
                continue
            at_end = solve(inp, end)
            if _identity(kind, at_end) == base_id:
                rows.append(Sensitivity(input=inp.name, what=inp.what, direction=direction, base=inp.fmt(inp.base),
                                        holds_to=end, holds_to_value=inp.fmt(inp.base * end), breaks_at=None,
                                        breaks_at_value=None, becomes=None, becomes_cost=None))
                continue
            same, changed, changed_res = 1.0, end, at_end
            while max(same, changed) / min(same, changed) > TOLERANCE:
                mid = math.sqrt(same * changed)
                res = solve(inp, mid)
                if _identity(kind, res) == base_id:
                    same = mid
                else:
                    changed, changed_res = mid, res
            becomes, cost = _summary(kind, changed_res)
            rows.append(Sensitivity(input=inp.name, what=inp.what, direction=direction, base=inp.fmt(inp.base),
                                    holds_to=same, holds_to_value=inp.fmt(inp.base * same), breaks_at=changed,
                                    breaks_at_value=inp.fmt(inp.base * changed), becomes=becomes,
                                    becomes_cost=cost))
        if progress:
            progress(n + 1, len(inputs))
    best, _ = _summary(kind, result)
    return Robustness(best=best, rows=rows, solves=solves, seconds=time.perf_counter() - t0)
