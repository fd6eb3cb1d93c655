"""The portfolio planner's CP-SAT model: every job, service and GPU source over the horizon at once.

Sets and data (recommender.fleet_model; money in integer cents from `coefficients`)
  P = {0..T-1} periods; G GPU types; J training jobs, each with options o (type g_o, count c_o,
  duration d_o periods) and a window [e_j, D_j]; V services with demand q_vt and replica kinds r
  (type g_r, GPUs n_r, capacity k_r); for a type g: owned O_g, server size N_g, lead time l_g,
  reserved terms m of L_m periods.
Decision variables
  x[j,o,s] in {0,1}  job j runs option o from period s (s >= e_j, s + d_o <= T): an optional
                     interval [s, s + d_o) per alternative, written time-indexed because the
                     capacity it is checked against varies by period
  y[v,r,t] >= 0      replicas of kind r for service v in period t
  b[g,t]   >= 0      servers of g ordered in period t (arrive at t + l_g < T)
  z[g,m,t] >= 0      instances of g reserved at t for term m
  u[g,t], w[g,t] >= 0  on-demand and spot GPUs;  h[g,t] >= 0  on-premises GPUs in use
  a_c in {0,1}       limit c is enforced (an assumption, for the infeasibility core)
Constraints
  (1) sum_{o,s} x[j,o,s] = 1                                        every job runs once (an optional
      job: sum + skip_j = 1, and the objective pays its value on skip_j)
  (2) a_deadline_j => x[j,o,s] = 0 where s + d_o > D_j              deadlines
  (3) use[g,t] = sum_{j,o: g_o = g, s <= t < s + d_o} c_o x[j,o,s] + sum_{v,r: g_r = g} n_r y[v,r,t]
      use[g,t] <= h[g,t] + u[g,t] + w[g,t] + N_g sum_{m, t - L_m < t' <= t} z[g,m,t']
  (4) h[g,t] <= O_g + N_g sum_{t' + l_g <= t} b[g,t']               on-premises capacity
  (5) sum_r k_r y[v,r,t] >= q_vt                                    demand, every period
  (6) a_budget => spend + committed <= B; a_budget_period => spend over each budget period <= B_p
  (7) a_power => sum_g W_g h[g,t] <= P_kW, every t;  a_space => installed[t] <= S
Objective
  cost: minimize spend + reserved terms owed past the horizon - book value of purchases at the end;
  makespan / lateness: minimize max_j end_j / sum_j weight_j max(0, end_j - due_j), then cost with
  that fixed (lexicographic). One worker, seed 0: the same input gives the same schedule.
Bounds: at most ceil(peak use / N_g) servers of g are bought in all (a server beyond the peak is
never used and its book value is below its price); rented and reserved GPUs at most the peak.
"""

from __future__ import annotations

from dataclasses import dataclass

from ortools.sat.python import cp_model

from recommender.fleet_model import Instance, Schedule, coefficients
from recommender.solver import deletion_filter

STATUS = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible", cp_model.INFEASIBLE: "infeasible",
          cp_model.MODEL_INVALID: "invalid", cp_model.UNKNOWN: "unknown"}


@dataclass
class Outcome:
    status: str
    schedule: Schedule | None = None
    objective: int | None = None       # cents (cost) or periods (makespan, lateness)
    bound: float | None = None
    core: list[str] | None = None
    cost_cents: int | None = None
    seconds: float = 0.0


class FleetModel:
    """Build once; `solve` with a set of enforced limits and an objective."""

    def __init__(self, inst: Instance, time_limit_s: float = 30.0, workers: int = 1):
        self.inst, self.k = inst, coefficients(inst)
        self.time_limit_s, self.workers = time_limit_s, workers
        self.limits = self._limit_names()

    def _limit_names(self) -> list[str]:
        i = self.inst
        out = [f"deadline:{j.name}" for j in i.jobs if i.deadline(j) < i.periods]
        out += [n for n, v in (("budget", i.budget_usd), ("budget_per_period", i.budget_per), ("power", i.power_kw),
                               ("space", i.space_gpus)) if v is not None]
        return out

    # -- the model --------------------------------------------------------------------------
    def _build(self, enforce: set[str], objective: str, fix: dict | None = None, minimize: str | None = None):
        inst, k = self.inst, self.k
        T = inst.periods
        m = cp_model.CpModel()
        lits = {c: m.new_bool_var(c) for c in self.limits}
        # data -> variables
        x = {}
        for j in inst.jobs:
            for o, opt in enumerate(j.options):
                for s in range(j.earliest, T - opt.periods + 1):
                    x[j.name, o, s] = m.new_bool_var(f"x[{j.name},{o},{s}]")
        peak = {t.id: inst.peak_usage(t.id) for t in inst.types}
        y = {}
        for v in inst.services:
            for r, rep in enumerate(v.replicas):
                kc = k.cap[v.name, r]
                if kc <= 0:
                    continue
                for t in range(T):
                    top = -(-k.demand[v.name, t] // kc)
                    if top > 0:
                        y[v.name, r, t] = m.new_int_var(0, top, f"y[{v.name},{r},{t}]")
        b, z, u, w, h, installed = {}, {}, {}, {}, {}, {}
        for g in inst.types:
            pk = peak[g.id]
            nodes = -(-pk // g.node)
            mine = []
            for t in inst.buy_periods(g):
                if nodes:
                    b[g.id, t] = m.new_int_var(0, nodes, f"b[{g.id},{t}]")
                    mine.append(b[g.id, t])
            if len(mine) > 1:
                m.add(sum(mine) <= nodes)
            for q, (term, _) in enumerate(g.reserved):
                for t in range(T):
                    if nodes:
                        z[g.id, q, t] = m.new_int_var(0, nodes, f"z[{g.id},{q},{t}]")
            for t in range(T):
                if (g.id, "on_demand") in k.rent and pk:
                    u[g.id, t] = m.new_int_var(0, pk, f"u[{g.id},{t}]")
                if (g.id, "spot") in k.rent and pk:
                    w[g.id, t] = m.new_int_var(0, pk, f"w[{g.id},{t}]")
                arrived = [b[g.id, o] for o in inst.buy_periods(g) if o + g.lead_periods <= t and (g.id, o) in b]
                installed[g.id, t] = g.owned + g.node * sum(arrived)
                if g.tdp_w is not None and (g.owned or arrived) and pk:
                    h[g.id, t] = m.new_int_var(0, min(pk, g.owned + g.node * nodes), f"h[{g.id},{t}]")
                    m.add(h[g.id, t] <= installed[g.id, t])                                           # (4)
        # (1) every job runs once; (2) deadlines
        skipped = {}
        for j in inst.jobs:
            mine = [v for (name, _, _), v in x.items() if name == j.name]
            if j.value_usd is None:
                m.add_exactly_one(mine)
            else:  # optional: run at most once, or forgo its value
                skipped[j.name] = m.new_bool_var(f"skip[{j.name}]")
                m.add_exactly_one(mine + [skipped[j.name]])
            c = f"deadline:{j.name}"
            late = [v for (name, o, s), v in x.items() if name == j.name and s + j.options[o].periods > inst.deadline(j)]
            if late:
                if c in lits:
                    for v in late:
                        m.add_implication(lits[c], v.Not())
                else:
                    for v in late:
                        m.add(v == 0)
        # (3) capacity per type and period
        jobs, svcs = {j.name: j for j in inst.jobs}, {v.name: v for v in inst.services}
        used: dict = {}
        for (name, o, s), v in x.items():
            opt = jobs[name].options[o]
            for t in range(s, s + opt.periods):
                used.setdefault((opt.gpu, t), []).append((opt.count, v))
        for (name, r, t), v in y.items():
            rep = svcs[name].replicas[r]
            used.setdefault((rep.gpu, t), []).append((rep.gpus, v))
        for g in inst.types:
            for t in range(T):
                if (g.id, t) not in used:
                    continue
                cs, vs = zip(*used[g.id, t])
                terms = [cp_model.LinearExpr.weighted_sum(vs, cs)]
                supply = [h.get((g.id, t), 0), u.get((g.id, t), 0), w.get((g.id, t), 0)]
                supply += [g.node * v for (gg, q, s), v in z.items()
                           if gg == g.id and s <= t < s + g.reserved[q][0]]
                m.add(sum(terms) <= sum(supply))
        # (5) demand
        for v in inst.services:
            for t in range(T):
                need = k.demand[v.name, t]
                if need > 0:
                    m.add(sum(k.cap[v.name, r] * y[v.name, r, t] for r in range(len(v.replicas))
                              if (v.name, r, t) in y) >= need)
        # money per period, cents
        spend = []
        for t in range(T):
            e = []
            e += [k.rent[g, "on_demand"] * v for (g, tt), v in u.items() if tt == t]
            e += [k.rent[g, "spot"] * v for (g, tt), v in w.items() if tt == t]
            e += [k.reserve[g, q] * v for (g, q, s), v in z.items()
                  if s <= t < s + self.inst.type(g).reserved[q][0]]
            e += [k.capex[g] * v for (g, tt), v in b.items() if tt == t]
            e += [k.energy[g] * v for (g, tt), v in h.items() if tt == t]
            e += [k.colo[g.id] * installed[g.id, t] for g in inst.types if g.id in k.colo]
            spend.append(sum(e))
        after = sum(k.reserve[g, q] * v * max(0, s + self.inst.type(g).reserved[q][0] - T)
                    for (g, q, s), v in z.items())
        credit = sum(k.credit[g, t] * v for (g, t), v in b.items())
        cost = sum(spend) + after - credit + sum(k.value[name] * v for name, v in skipped.items())
        # (6) budgets
        if "budget" in lits:
            m.add(sum(spend) + after <= k.budget).only_enforce_if(lits["budget"])
        if "budget_per_period" in lits:
            for grp in inst.groups():
                m.add(sum(spend[t] for t in grp) <= k.budget_per).only_enforce_if(lits["budget_per_period"])
        # (7) power and space
        for t in range(T):
            if "power" in lits:
                m.add(sum(k.watts[g] * v for (g, tt), v in h.items() if tt == t) <= k.power_w) \
                    .only_enforce_if(lits["power"])
            if "space" in lits:
                m.add(sum(installed[g.id, t] for g in inst.types) <= inst.space_gpus).only_enforce_if(lits["space"])
        ends = {j.name: sum((s + j.options[o].periods) * v for (name, o, s), v in x.items() if name == j.name)
                for j in inst.jobs}
        goal = self._goal(m, objective, ends)
        if fix is not None:
            for name, val in fix.items():
                m.add({"goal": goal, "cost": cost}[name] <= val)
        target = {"goal": goal, "cost": cost}[minimize] if minimize in ("goal", "cost") else None
        if minimize == "budget":
            target = sum(spend) + after
        elif minimize == "budget_per_period":
            target = m.new_int_var(0, 2**50, "most_per_period")
            for grp in inst.groups():
                m.add(target >= sum(spend[t] for t in grp))
        elif minimize == "power":
            target = m.new_int_var(0, 2**40, "most_power")
            for t in range(T):
                m.add(target >= sum(k.watts[g] * v for (g, tt), v in h.items() if tt == t))
        elif minimize == "space":
            target = m.new_int_var(0, 2**40, "most_installed")
            for t in range(T):
                m.add(target >= sum(installed[g.id, t] for g in inst.types))
        elif minimize is not None and minimize.startswith("deadline:"):
            target = ends[minimize.split(":", 1)[1]]
        m.minimize(target)
        assumed = [lits[c] for c in self.limits if c in enforce]
        m.add_assumptions(assumed)
        return m, dict(x=x, y=y, b=b, z=z, u=u, w=w, h=h, cost=cost, goal=goal, lits=lits, target=target)

    def _goal(self, m, objective: str, ends: dict):
        inst = self.inst
        if objective == "makespan":
            mk = m.new_int_var(0, inst.periods, "makespan")
            for e in ends.values():
                m.add(mk >= e)
            return mk
        if objective == "lateness":
            terms = []
            for j in inst.jobs:
                due = j.due if j.due is not None else inst.periods
                late = m.new_int_var(0, inst.periods, f"late[{j.name}]")
                m.add(late >= ends[j.name] - due)
                terms.append(int(round(j.weight * 1000)) * late)
            return sum(terms)
        return 0

    def _solver(self) -> cp_model.CpSolver:
        s = cp_model.CpSolver()
        s.parameters.max_time_in_seconds = self.time_limit_s
        s.parameters.num_workers = self.workers
        s.parameters.random_seed = 0
        s.parameters.linearization_level = 2  # the LP of every linear constraint: 3.8 s -> 0.06 s on the startup example
        return s

    # -- solving ----------------------------------------------------------------------------
    def solve(self, enforce: set[str] | None = None, minimize: str | None = None) -> Outcome:
        """The optimum under the enforced limits (all by default): the objective first (makespan
        or lateness), then cost with it fixed; or, with `minimize`, the least value of one limit's
        quantity (for relaxations)."""
        enforce = set(self.limits) if enforce is None else enforce
        objective = self.inst.objective
        fix = None
        elapsed = 0.0
        if minimize is None and objective != "cost":
            m, v = self._build(enforce, objective, minimize="goal")
            s = self._solver()
            st = STATUS[s.solve(m)]
            elapsed += s.wall_time
            if st not in ("optimal", "feasible"):
                return self._failed(s, m, v, st, elapsed)
            fix = {"goal": int(round(s.objective_value))}
        m, v = self._build(enforce, objective, fix=fix, minimize=minimize or "cost")
        s = self._solver()
        st = STATUS[s.solve(m)]
        elapsed += s.wall_time
        if st not in ("optimal", "feasible"):
            return self._failed(s, m, v, st, elapsed)
        sched = self._extract(s, v)
        return Outcome(st, sched, int(round(s.objective_value)), s.best_objective_bound,
                       cost_cents=int(round(s.value(v["cost"]))), seconds=elapsed)

    def _failed(self, s, m, v, st, elapsed) -> Outcome:
        core = None
        if st == "infeasible":
            core = [c for c, lit in v["lits"].items() if lit.index in set(s.sufficient_assumptions_for_infeasibility())]
        return Outcome(st, core=core, seconds=elapsed)

    def minimal_core(self, core: list[str]) -> list[str]:
        return deletion_filter(core, lambda keep: self.solve(keep).status == "infeasible")

    def _extract(self, s: cp_model.CpSolver, v: dict) -> Schedule:
        sched = Schedule()
        for (name, o, st), var in v["x"].items():
            if s.value(var):
                sched.runs[name] = (o, st)
        for key, var in v["y"].items():
            n = int(s.value(var))
            if n:
                sched.replicas[key] = n
        for name, store in (("b", sched.buy), ("z", sched.reserve), ("u", sched.on_demand), ("w", sched.spot),
                            ("h", sched.onprem)):
            for key, var in v[name].items():
                n = int(s.value(var))
                if n:
                    store[key] = n
        return sched


def gap(outcome: Outcome) -> float | None:
    """The proven relative gap of a time-limited solve (0 when optimal)."""
    if outcome.objective is None or outcome.bound is None:
        return None
    if outcome.status == "optimal":
        return 0.0
    return abs(outcome.objective - outcome.bound) / max(1.0, abs(outcome.objective))

