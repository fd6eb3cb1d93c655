"""The training planner: an exact CP-SAT model over the candidate table.

Sets and data
  I            candidates (recommender.candidates.table): fitting, non-dominated plans
  cost_i, days_i (training + purchase lead time), count_i, power_i, and the attributes
  accelerator, vendor, provider, precision, acquisition of each i; all from the formulas.
Decision variables
  x_i in {0, 1}   plan i is chosen
  a_c in {0, 1}   user constraint c is enforced (passed as an assumption)
Objective
  minimize sum_i r_i x_i, where r_i is i's rank in the order (primary, then tie-breaks):
  primary = cost in cents (objective "cost"), days (objective "time") or -tokens ("compute");
  tie-breaks: days or cost, GPU count, ZeRO stage, recomputation, accelerator id. Ranks are
  integers with no scaling error and make the optimum unique, so the answer is deterministic.
Constraints
  (1) sum_i x_i = 1
  (2) for each user constraint c with violating set V_c:  a_c  =>  sum_{i in V_c} x_i = 0
      c in {budget, deadline, max GPUs, power, compute budget (the plan's model FLOPs in PF-days),
      allowed accelerators / vendors / providers / precisions / acquisitions, priced (cost matters)}.
Infeasibility: the assumptions a_c give a core (minimized by deletion), named to the user. The
fixes are minimal correction sets: maximize sum_c a_c (a_c now free), the dropped set M is an MCS;
block it (sum_{c in M} a_c >= 1) and repeat. For a one-limit MCS the least relaxation is one more
solve minimizing that limit's quantity (cost, days, GPUs, power) with the others enforced.
Ranked alternatives: re-solve with x_i = 0 for every row of an already-ranked plan's projection
(accelerator, acquisition, count, TP, PP, precision).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd
from ortools.sat.python import cp_model

OBJECTIVES = ("cost", "time", "compute")
STATUS = {cp_model.OPTIMAL: "optimal", cp_model.FEASIBLE: "feasible", cp_model.INFEASIBLE: "infeasible",
          cp_model.MODEL_INVALID: "invalid", cp_model.UNKNOWN: "unknown"}


@dataclass
class Limits:
    """The user's constraints; None = not given."""

    budget_usd: float | None = None
    deadline_days: float | None = None
    max_gpus: int | None = None
    power_kw: float | None = None
    compute_pf_days: float | None = None   # model FLOPs (6ND + attention) / 8.64e19, as shown per plan
    gpus: tuple[str, ...] | None = None
    vendors: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    precisions: tuple[str, ...] | None = None
    acquisitions: tuple[str, ...] | None = None

    def violations(self, df: pd.DataFrame, needs_price: bool) -> dict[str, np.ndarray]:
        """Constraint name -> boolean mask of the candidates that violate it."""
        out: dict[str, np.ndarray] = {}
        if needs_price:
            out["priced"] = df.cost.isna().values
        if self.budget_usd is not None:
            out["budget"] = ~(df.cost <= self.budget_usd).values
        if self.deadline_days is not None:
            out["deadline"] = (df.total_days > self.deadline_days).values
        if self.max_gpus is not None:
            out["max_gpus"] = (df["count"] > self.max_gpus).values
        if self.power_kw is not None:
            out["power"] = ~(df.power_kw <= self.power_kw).values
        if self.compute_pf_days is not None:  # df.pf_days: recommender.planner.with_pf_days
            out["compute_budget"] = ~(df.pf_days <= self.compute_pf_days * (1 + 1e-9)).values
        for name, col in (("gpus", "accelerator"), ("vendors", "vendor"), ("providers", "provider"),
                          ("precisions", "precision"), ("acquisitions", "acquisition")):
            allowed = getattr(self, name)
            if allowed is not None:
                ok = df[col].fillna("").str.lower().isin([v.lower() for v in allowed])
                if name == "providers":
                    ok |= df.acquisition.isin(["buy", "owned"]).values
                if name == "acquisitions":
                    ok |= df.acquisition.eq("owned").values
                out[name] = ~ok.values
        return out


@dataclass
class Outcome:
    status: str
    rows: list[int] = field(default_factory=list)
    core: list[str] = field(default_factory=list)


class PlanModel:
    """The CP-SAT model of one query, reusable for top-K, explanations and relaxations."""

    def __init__(self, df: pd.DataFrame, order: np.ndarray, masks: dict[str, np.ndarray],
                 time_limit_s: float = 10.0):
        self.df, self.masks, self.time_limit_s = df, masks, time_limit_s
        self.rank = np.empty(len(df), dtype=np.int64)
        self.rank[order] = np.arange(len(df))

    def _model(self):
        """Variables x_i and a_c with constraints (1) and (2), built once and cloned per solve
        (top-K, explanations and relaxations re-solve the same model with other assumptions)."""
        if not hasattr(self, "_base"):
            model = cp_model.CpModel()
            x = [model.new_bool_var(f"x{i}") for i in range(len(self.df))]
            lits = {c: model.new_bool_var(f"a_{c}") for c in self.masks}
            # (1) exactly one plan
            model.add_exactly_one(x)
            # (2) each user constraint behind its literal
            for c, mask in self.masks.items():
                idx = np.flatnonzero(mask)
                if len(idx):
                    model.add(cp_model.LinearExpr.sum([x[i] for i in idx]) == 0).only_enforce_if(lits[c])
            self._base = model
            self._lit_index = {c: lits[c].index for c in lits}
        model = self._base.clone()
        x = [model.get_bool_var_from_proto_index(i) for i in range(len(self.df))]
        lits = {c: model.get_bool_var_from_proto_index(k) for c, k in self._lit_index.items()}
        return model, x, lits

    def _solver(self, workers: int) -> cp_model.CpSolver:
        solver = cp_model.CpSolver()
        solver.parameters.max_time_in_seconds = self.time_limit_s
        solver.parameters.num_workers = workers
        solver.parameters.random_seed = 0
        solver.parameters.cp_model_probing_level = 0
        solver.parameters.merge_at_most_one_work_limit = 0
        return solver

    def solve(self, enforce: set[str], exclude: np.ndarray | None = None, rank: np.ndarray | None = None,
              want_core: bool = False) -> Outcome:
        rank = self.rank if rank is None else rank
        model, x, lits = self._model()
        n = len(x)
        # already-ranked plans are excluded
        if exclude is not None and exclude.any():
            model.add(cp_model.LinearExpr.sum([x[i] for i in np.flatnonzero(exclude)]) == 0)
        # objective: rank in (primary, tie-break) order
        model.minimize(cp_model.LinearExpr.weighted_sum(x, [int(r) for r in rank[:n]]))
        model.add_assumptions([lits[c] for c in sorted(self.masks) if c in enforce])
        model.add_assumptions([lits[c].Not() for c in sorted(self.masks) if c not in enforce])
        solver = self._solver(1 if want_core else 2)
        status = solver.solve(model)
        out = Outcome(STATUS.get(status, "unknown"))
        if status in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            out.rows = [i for i in range(n) if solver.boolean_value(x[i])]
        elif status == cp_model.INFEASIBLE and want_core:
            index = {lits[c].index: c for c in lits}
            out.core = sorted(index[v] for v in solver.sufficient_assumptions_for_infeasibility() if v in index)
        return out


    def best(self, enforce: set[str], exclude: np.ndarray | None = None) -> Outcome:
        """The optimum of `solve(enforce, exclude)` read straight from the table: the model is one
        Boolean per row, exactly one chosen, every row that breaks an enforced limit (or is excluded)
        fixed to 0, and the objective a permutation of the rows, so its unique optimum is the
        lowest-ranked row left. Used for the ranked alternatives and the "what binds" lines, which
        re-solve the model chosen by CP-SAT many times; tests/test_solver_exact.py checks it
        equals CP-SAT's answer on random instances."""
        ok = np.ones(len(self.df), dtype=bool)
        for c in enforce:
            if c in self.masks:
                ok &= ~self.masks[c]
        if exclude is not None:
            ok &= ~exclude
        if not ok.any():
            return Outcome("infeasible")
        idx = np.flatnonzero(ok)
        return Outcome("optimal", [int(idx[np.argmin(self.rank[idx])])])

    def correction_set(self, enforce: set[str], hard: set[str], blocks: list[list[str]]) -> list[str] | None:
        """A minimal correction set: the fewest limits to drop (not in `hard`, not a blocked set)."""
        model, x, lits = self._model()
        for c in self.masks:
            if c not in enforce:
                model.add(lits[c] == 0)
            elif c in hard:
                model.add(lits[c] == 1)
        for block in blocks:
            model.add_bool_or([lits[c] for c in block])
        model.maximize(sum(lits[c] for c in sorted(enforce)))
        solver = self._solver(1)
        if solver.solve(model) not in (cp_model.OPTIMAL, cp_model.FEASIBLE):
            return None
        return sorted(c for c in enforce if not solver.boolean_value(lits[c]))


def ordering(df: pd.DataFrame, objective: str) -> np.ndarray:
    """Row indices sorted by the objective then the deterministic tie-breaks. Costs tie to the cent,
    or to four significant figures of the cheapest plan's cost where that is finer (under $10: a
    1-token job's plans all cost less than a cent; rounded to cents they all tied, and the fastest,
    largest fleet came first)."""
    low = df.cost[df.cost > 0].min() if (df.cost > 0).any() else 1.0
    digits = max(2, int(3 - np.floor(np.log10(low))))
    money = df.cost.round(digits).fillna(np.inf)
    primary = {"cost": money, "time": df.total_days,
               "compute": -df.get("max_tokens", pd.Series(0.0, index=df.index)).fillna(-np.inf)}[objective]
    secondary = df.total_days if objective == "cost" else money
    keys = pd.DataFrame({"p": primary.values, "s": secondary.values, "n": df["count"].values,
                         "z": df.zero.values, "r": df.recompute.map({"none": 0, "selective": 1, "full": 2}).values,
                         "a": df.accelerator.values, "q": df.acquisition.values, "t": df.tp.values,
                         "pp": df.pp.values, "pr": df.precision.values})
    return keys.sort_values(list(keys.columns), kind="mergesort").index.values


def deletion_filter(core: list[str], infeasible) -> list[str]:
    """Deletion-based minimization of an infeasible core: drop each member whose removal keeps the
    rest infeasible (`infeasible(set_of_limits)` re-solves). Shared by the training, serving and
    fleet planners."""
    kept = list(core)
    for c in list(core):
        trial = [k for k in kept if k != c]
        if infeasible(set(trial)):
            kept = trial
    return kept


def minimal_core(pm: PlanModel, core: list[str]) -> list[str]:
    return deletion_filter(core, lambda keep: pm.solve(keep).status == "infeasible")

