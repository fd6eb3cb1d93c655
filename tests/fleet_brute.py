"""Brute-force enumeration of a small portfolio, independent of the CP-SAT model.

Every strategic choice is enumerated: each job's (option, start), each service's replica counts
in every period, every purchase vector and every reservation vector. Given those, the rest is
per period and separable: GPUs needed beyond the reserved ones come from on-premises GPUs in
use (at most those installed, under the power limit) or are rented at the cheapest tier listed;
every on-premises vector is tried. Minimizing each period's spend on its own is optimal for
every budget too (budgets bound sums of period spends from above). It uses the same integer
cents as the solver (fleet_model.coefficients), so the two optima must be equal exactly.
"""

from __future__ import annotations

import itertools
from functools import lru_cache

from recommender.fleet_model import Instance, coefficients


def _levels(n_slots: int, most: int):
    """Every vector of `n_slots` non-negative integers summing to at most `most`."""
    for v in itertools.product(range(most + 1), repeat=n_slots):
        if sum(v) <= most:
            yield v


def combos(inst: Instance) -> int:
    """How many strategic combinations `solve` enumerates (to keep random instances small)."""
    n = 1
    for j in inst.jobs:
        n *= (sum(len(inst.starts(j, o)) for o in j.options) + (j.value_usd is not None)) or 1
    k = coefficients(inst)
    for v in inst.services:
        for t in range(inst.periods):
            n *= len(_cover(k, v, t))
    for g in inst.types:
        nodes = -(-inst.peak_usage(g.id) // g.node)
        n *= sum(1 for _ in _levels(len(inst.buy_periods(g)), nodes))
        n *= (nodes + 1) ** (len(g.reserved) * inst.periods)
    return n


def _cover(k, v, t):
    need = k.demand[v.name, t]
    if need <= 0:
        return [tuple(0 for _ in v.replicas)]
    tops = [(-(-need // k.cap[v.name, r]) if k.cap[v.name, r] > 0 else 0) for r in range(len(v.replicas))]
    return [n for n in itertools.product(*(range(x + 1) for x in tops))
            if sum(k.cap[v.name, r] * c for r, c in enumerate(n)) >= need]


def solve(inst: Instance):
    """(goal, cost in cents) of the optimum, or None when infeasible. goal: 0 (cost), makespan or
    weighted lateness x 1000, as the solver counts it."""
    k = coefficients(inst)
    T, types = inst.periods, inst.types
    G = range(len(types))
    gi = {t.id: i for i, t in enumerate(types)}
    job_choices = [[(o, s) for o in range(len(j.options)) for s in inst.starts(j, j.options[o])]
                   + ([None] if j.value_usd is not None else []) for j in inst.jobs]
    serve_choices = [[_cover(k, v, t) for t in range(T)] for v in inst.services]

    def rent_price(i):
        prices = [k.rent[types[i].id, tier] for tier in ("on_demand", "spot") if (types[i].id, tier) in k.rent]
        return min(prices) if prices else None

    @lru_cache(maxsize=None)
    def period_cost(need: tuple, installed: tuple):
        """Least rent + energy for the GPUs needed beyond the reserved ones in one period."""
        best = None
        ranges = [range(min(installed[i], need[i]) + 1) if types[i].id in k.energy else range(1) for i in G]
        for on in itertools.product(*ranges):
            if k.power_w is not None and sum(k.watts.get(types[i].id, 0) * on[i] for i in G) > k.power_w:
                continue
            c = 0
            for i in G:
                rest = need[i] - on[i]
                if rest > 0:
                    p = rent_price(i)
                    if p is None:
                        break
                    c += rest * p
                c += on[i] * k.energy.get(types[i].id, 0)
            else:
                best = c if best is None or c < best else best
        return best

    # usage per (type, period) for every job / service combination
    usages = []
    for jc in itertools.product(*job_choices):
        base = [[0] * T for _ in G]
        ends = []
        forgone = 0
        for j, choice in zip(inst.jobs, jc):
            if choice is None:
                forgone += k.value[j.name]
                ends.append(None)
                continue
            o, s = choice
            opt = j.options[o]
            for t in range(s, s + opt.periods):
                base[gi[opt.gpu]][t] += opt.count
            ends.append(s + opt.periods)
        if inst.objective == "makespan":
            goal = max([e for e in ends if e is not None], default=0)
        elif inst.objective == "lateness":
            goal = sum(int(round(j.weight * 1000)) * max(0, e - (j.due if j.due is not None else T))
                       for j, e in zip(inst.jobs, ends) if e is not None)
        else:
            goal = 0
        for sc in itertools.product(*(itertools.product(*per) for per in serve_choices)):
            use = [row[:] for row in base]
            for v, per_t in zip(inst.services, sc):
                for t, n in enumerate(per_t):
                    for r, c in enumerate(n):
                        use[gi[v.replicas[r].gpu]][t] += c * v.replicas[r].gpus
            usages.append((goal, use, forgone))
    # purchases and reservations
    supplies = []
    per_type = []
    for g in types:
        nodes = -(-inst.peak_usage(g.id) // g.node)
        buys = list(_levels(len(inst.buy_periods(g)), nodes)) if nodes else [tuple(0 for _ in inst.buy_periods(g))]
        res = list(itertools.product(range(nodes + 1), repeat=len(g.reserved) * T))
        per_type.append([(bv, rv) for bv in buys for rv in res])
    for choice in itertools.product(*per_type):
        installed = [[0] * T for _ in G]
        reserved = [[0] * T for _ in G]
        fixed = [0] * T
        after = credit = 0
        for i, (bv, rv) in zip(G, choice):
            g = types[i]
            for t in range(T):
                installed[i][t] = g.owned
            for o, n in zip(inst.buy_periods(g), bv):
                fixed[o] += n * k.capex.get(g.id, 0)
                credit += n * k.credit.get((g.id, o), 0)
                for t in range(o + g.lead_periods, T):
                    installed[i][t] += n * g.node
            for q, (term, _) in enumerate(g.reserved):
                for s in range(T):
                    n = rv[q * T + s]
                    for t in range(s, s + term):
                        if t < T:
                            reserved[i][t] += n * g.node
                            fixed[t] += n * k.reserve[g.id, q]
                        else:
                            after += n * k.reserve[g.id, q]
            for t in range(T):
                fixed[t] += installed[i][t] * k.colo.get(g.id, 0)
        if inst.space_gpus is not None and any(sum(installed[i][t] for i in G) > inst.space_gpus for t in range(T)):
            continue
        supplies.append((installed, reserved, fixed, after, credit))
    best = None
    for goal, use, forgone in usages:
        if best is not None and goal > best[0]:
            continue
        for installed, reserved, fixed, after, credit in supplies:
            spend = []
            for t in range(T):
                need = tuple(max(0, use[i][t] - reserved[i][t]) for i in G)
                c = period_cost(need, tuple(installed[i][t] for i in G))
                if c is None:
                    break
                spend.append(fixed[t] + c)
            else:
                if k.budget is not None and sum(spend) + after > k.budget:
                    continue
                if k.budget_per is not None and any(sum(spend[t] for t in grp) > k.budget_per
                                                    for grp in inst.groups()):
                    continue
                key = (goal, sum(spend) + after - credit + forgone)
                if best is None or key < best:
                    best = key
    return best
