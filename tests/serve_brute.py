"""Exhaustive search over integer replica counts for the serving planner's exactness tests
(test_serve_exact, test_disaggregated): independent of the planner's table, pruning and CP-SAT."""

from __future__ import annotations

import math


def cover(types, need, caps, owned_caps, best, done, start=(0.0, 0, 0.0, {}, ()), bound_rest=0.0):
    """Every vector of replicas of `types` (name, accelerator, capacity, $/h, GPUs, kW, owned),
    sorted by $/h over capacity, whose capacity covers `need`, depth-first from most replicas of the
    cheapest kind down; `done(cost, gpus, power, owned_used, chosen)` on each. A branch is cut when
    its cost so far plus the need left at the least $ per capacity left plus `bound_rest` (a lower
    bound on what must still be bought after it) cannot beat best[0]. caps: the fleet's cost ($/h),
    GPU and power limits; owned_caps: GPUs owned per accelerator (shared with `start`'s use)."""
    n = len(types)

    def dfs(i, need, cost, gpus, power, used, chosen):
        if need <= 1e-9:
            done(cost, gpus, power, used, list(chosen))
            return
        if i == n or cost + need * types[i][3] / types[i][2] + bound_rest >= best[0] - 1e-9:
            return
        name, acc, thr, c, g, p, own = types[i]
        for r in range(math.ceil(need / thr), -1, -1):
            if cost + r * c > caps["cost"] or gpus + r * g > caps["gpus"] or power + r * p > caps["power"] + 1e-9:
                continue
            if own and used.get(acc, 0) + r * g > owned_caps[acc]:
                continue
            u = dict(used)
            if own:
                u[acc] = u.get(acc, 0) + r * g
            dfs(i + 1, need - r * thr, cost + r * c, gpus + r * g, power + r * p, u,
                tuple(chosen) + ((name, r),) if r else tuple(chosen))

    cost, gpus, power, used, chosen = start
    dfs(0, need, cost, gpus, power, used, chosen)


def limit_caps(limits, hours: float) -> dict[str, float]:
    return dict(cost=math.inf if limits.budget_usd is None else limits.budget_usd / hours,
                gpus=math.inf if limits.max_gpus is None else limits.max_gpus,
                power=math.inf if limits.power_kw is None else limits.power_kw)
