"""The serving planner's exact CP-SAT model: integer replicas of each replica type covering demand.

Sets and data
  I            replica types (recommender.serve_planner.table): accelerator, acquisition, precision,
               TP, PP, batch; each with throughput thr_i (output tokens/s), GPUs n_i, cost c_i
               ($/hour), facility power w_i (kW), TTFT / TPOT / end-to-end latency; all from the
               formulas (recommender.serving.serving_terms).
  P            pools of owned GPUs: rows R_p of accelerator p bought already, cap O_p GPUs.
Decision variables
  r_i in {0, ..., u_i}  replicas of type i, u_i = ceil(D / thr_i) (more is never needed) or the
                        owned cap
  a_c in {0, 1}         user limit c is enforced (passed as an assumption)
  z_l in {0, 1}         disaggregated prefill/decode at split l of the TTFT target (at most one;
                        only where the table has such rows)
Constraints
  (1) cover:  sum_i floor(1000 thr_i) r_i >= ceil(1000 D)           (milli-tokens/s)
      with disaggregated rows (role prefill / decode, split l): the aggregated rows cover D when no
      z_l is set, and then the rows of the other roles are 0; with z_l set, the prefill rows of
      split l cover D and so do its decode rows, every other row 0
  (2) pools:  sum_{i in R_p} n_i r_i <= O_p
  (3) row limits (targets, allowed accelerators / vendors / providers / acquisitions):
              a_c  =>  r_i = 0 for every i violating c
  (4) fleet limits:  a_budget => sum ceil(1e4 c_i) r_i <= floor(1e4 B / hours)
                     a_max_gpus => sum n_i r_i <= G;  a_power => sum ceil(1000 w_i) r_i <= 1000 W
Objective (lexicographic, one solve per level, each level's optimum fixed before the next)
  minimize sum ceil(1e4 c_i) r_i  (cost in 1e-4 $/hour; rounding up keeps the budget check safe),
  then GPUs sum n_i r_i, then sum rank_i r_i (rank: a fixed order of the rows, lower latency first),
  which makes the answer deterministic.
Exactness: every quantity the solver compares is an integer computed from the formulas; the
fleet's true figures are re-evaluated by the formulas afterwards (serve_planner._recheck).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from ortools.sat.python import cp_model

from recommender.solver import STATUS

COST_SCALE = 1e4      # 1e-4 $ per hour
THR_SCALE = 1e3       # milli-tokens per second
POWER_SCALE = 1e3     # watts


@dataclass
class FleetOutcome:
    status: str
    rows: list[tuple[int, int]] = field(default_factory=list)   # (row, replicas)
    core: list[str] = field(default_factory=list)


class ServeModel:
    """The CP-SAT model of one serving query, reusable for ranks, explanations and relaxations."""

    def __init__(self, thr, gpus, cost_ph, power_kw, rank, demand_tokens_s, row_masks: dict[str, np.ndarray],
                 fleet_limits: dict[str, float], hours: float, pools: list[tuple[np.ndarray, int]],
                 time_limit_s: float = 10.0, role=None, level=None):
        self.n = len(thr)
        self.thr = np.floor(np.asarray(thr) * THR_SCALE).astype(np.int64)
        self.gpus = np.asarray(gpus, dtype=np.int64)
        self.cost = np.ceil(np.nan_to_num(np.asarray(cost_ph, dtype=float), nan=0.0) * COST_SCALE).astype(np.int64)
        self.power = np.ceil(np.nan_to_num(np.asarray(power_kw, dtype=float), nan=0.0) * POWER_SCALE).astype(np.int64)
        self.rank = np.asarray(rank, dtype=np.int64)
        self.demand = int(np.ceil(demand_tokens_s * THR_SCALE))
        self.masks = row_masks
        self.fleet = fleet_limits
        self.hours = hours
        self.pools = pools
        self.time_limit_s = time_limit_s
        # 0 aggregated, 1 prefill, 2 decode (serve_planner's role column) and the split of each
        self.role = np.zeros(self.n, dtype=np.int64) if role is None else np.asarray(role, dtype=np.int64)
        self.level = np.full(self.n, -1, dtype=np.int64) if level is None else np.asarray(level, dtype=np.int64)
        ub = np.ceil(self.demand / np.maximum(self.thr, 1)).astype(np.int64)
        self.ub = np.where(self.thr > 0, ub, 0)
        for idx, cap in pools:
            self.ub[idx] = np.minimum(self.ub[idx], cap // self.gpus[idx])

    @property
    def limits(self) -> list[str]:
        return sorted(set(self.masks) | set(self.fleet))

    def _model(self, extra_zero: np.ndarray | None = None):
        m = cp_model.CpModel()
        zero = np.zeros(self.n, dtype=bool) if extra_zero is None else extra_zero
        r = [m.new_int_var(0, 0 if zero[i] else int(self.ub[i]), f"r{i}") for i in range(self.n)]
        lits = {c: m.new_bool_var(f"a_{c}") for c in self.limits}
        # (1) cover the demand
        cover = lambda rows: sum(int(self.thr[i]) * r[i] for i in rows) >= self.demand  # noqa: E731
        splits = sorted(set(self.level[self.role > 0].tolist()))
        if not splits:
            m.add(cover(range(self.n)))
        else:
            z = {lv: m.new_bool_var(f"z{lv}") for lv in splits}
            m.add(sum(z.values()) <= 1)
            agg = np.flatnonzero(self.role == 0)
            if len(agg):
                m.add(cover(agg)).only_enforce_if([v.Not() for v in z.values()])
            else:
                m.add(sum(z.values()) == 1)
            for i in agg:
                for v in z.values():
                    m.add(r[i] == 0).only_enforce_if(v)
            for lv, v in z.items():
                for role in (1, 2):
                    rows = np.flatnonzero((self.role == role) & (self.level == lv))
                    if len(rows):
                        m.add(cover(rows)).only_enforce_if(v)
                    else:
                        m.add(v == 0)
                for i in np.flatnonzero((self.role > 0) & (self.level == lv)):
                    m.add(r[i] == 0).only_enforce_if(v.Not())
        # (2) owned pools
        for idx, cap in self.pools:
            m.add(sum(int(self.gpus[i]) * r[i] for i in idx) <= int(cap))
        # (3) row limits behind their literals
        for c, mask in self.masks.items():
            for i in np.flatnonzero(mask):
                m.add(r[i] == 0).only_enforce_if(lits[c])
        # (4) fleet limits behind their literals
        for c, bound in self.fleet.items():
            coef, lim = self._fleet_terms(c, bound)
            m.add(sum(int(coef[i]) * r[i] for i in range(self.n)) <= lim).only_enforce_if(lits[c])
        return m, r, lits

    def _fleet_terms(self, c: str, bound: float):
        if c == "budget":
            return self.cost, int(np.floor(bound / self.hours * COST_SCALE))
        if c == "max_gpus":
            return self.gpus, int(bound)
        if c == "power":
            return self.power, int(np.floor(bound * POWER_SCALE))
        raise KeyError(c)

    def _solver(self) -> cp_model.CpSolver:
        s = cp_model.CpSolver()
        s.parameters.max_time_in_seconds = self.time_limit_s
        s.parameters.num_workers = 1
        s.parameters.random_seed = 0
        # constraints behind enforcement literals reach the LP relaxation only at level 2; at the
        # default level a budget-vs-demand knapsack could not be proved infeasible in 10 s (0.002 s here)
        s.parameters.linearization_level = 2
        return s

    def _assume(self, m, lits, enforce: set[str]) -> None:
        m.add_assumptions([lits[c] for c in self.limits if c in enforce])
        m.add_assumptions([lits[c].Not() for c in self.limits if c not in enforce])

    def solve(self, enforce: set[str], exclude: np.ndarray | None = None, first: str = "cost",
              want_core: bool = False) -> FleetOutcome:
        """Lexicographic optimum: `first` (cost, gpus or power), then cost, GPUs, rank."""
        levels = [first] + [k for k in ("cost", "gpus", "rank") if k != first]
        fixed: list[tuple[np.ndarray, int]] = []
        status_word = "optimal"
        values = None
        for level in levels:
            m, r, lits = self._model(exclude)
            for coef, best in fixed:
                m.add(sum(int(coef[i]) * r[i] for i in range(self.n)) <= best)
            coef = {"cost": self.cost, "gpus": self.gpus, "power": self.power, "rank": self.rank}[level]
            m.minimize(sum(int(coef[i]) * r[i] for i in range(self.n)))
            self._assume(m, lits, enforce)
            s = self._solver()
            st = s.solve(m)
            if st == cp_model.INFEASIBLE:
                out = FleetOutcome("infeasible")
                if want_core and not fixed:
                    index = {lits[c].index: c for c in lits}
                    out.core = sorted(index[v] for v in s.sufficient_assumptions_for_infeasibility() if v in index)
                return out
            if st not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
                return FleetOutcome(STATUS.get(st, "unknown")) if values is None else self._outcome("feasible", values)
            if st == cp_model.FEASIBLE:
                status_word = "feasible"
            values = [int(s.value(v)) for v in r]
            fixed.append((coef, int(round(s.objective_value))))
            if st == cp_model.FEASIBLE:
                break  # a time limit: keep the best found, not proven optimal
        return self._outcome(status_word, values)

    def min_cost(self, enforce: set[str]) -> tuple[str, int | None]:
        """The least fleet cost (in 1e-4 $/hour) meeting `enforce`: (status, cost or None)."""
        m, r, lits = self._model()
        m.minimize(sum(int(self.cost[i]) * r[i] for i in range(self.n)))
        self._assume(m, lits, enforce)
        s = self._solver()
        st = s.solve(m)
        if st == cp_model.OPTIMAL:
            return "optimal", int(round(s.objective_value))
        return STATUS.get(st, "unknown"), None

    def feasible(self, enforce: set[str], zero: np.ndarray) -> bool:
        m, r, lits = self._model(zero)
        self._assume(m, lits, enforce)
        return self._solver().solve(m) in (cp_model.OPTIMAL, cp_model.FEASIBLE)

    @staticmethod
    def _outcome(status: str, values: list[int]) -> FleetOutcome:
        return FleetOutcome(status, [(i, v) for i, v in enumerate(values) if v > 0])
