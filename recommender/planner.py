"""`gpuplan train`: build the candidate table, solve, rank, explain, re-check every plan."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
from pydantic import BaseModel

from recommender import catalog, prices
from recommender.candidates import SearchSpace, nothing_to_plan, table
from recommender.errors import GpuplanError, Infeasible, check
from recommender.evaluate import HOURS_PER_MONTH, Evaluation, cheapest_offer, evaluate, pricing, pricing_options
from recommender.formulas import compute
from recommender.solver import OBJECTIVES, Limits, PlanModel, minimal_core, ordering
from recommender.spec import TrainJob, TrainLayout
from recommender.units import fmt_usd

DISTINCT = ["accelerator", "acquisition", "count", "tp", "pp", "precision"]
REL_TOL = 1e-9


class Plan(Evaluation):
    rank: int
    total_days: float
    owned_gpus: int
    vs_best: str


class Relaxation(BaseModel):
    constraint: str
    given: str
    needed: str
    plan: str


class TrainResult(BaseModel):
    status: str
    objective: str
    solve_seconds: float
    plans: list[Plan]
    relaxations: list[Relaxation]
    explanation: list[str]
    notes: list[str]
    candidates: int
    tuples: int


def _describe(row) -> str:
    return (f"{int(row['count'])} x {row.accelerator} {row.acquisition} (TP {row.tp} x PP {row.pp}, "
            f"{row.precision}): {row.total_days:,.1f} days" + ("" if pd.isna(row.cost) else f", {fmt_usd(row.cost)}"))


def _given(limits: Limits, c: str) -> str:
    v = {"budget": limits.budget_usd, "deadline": limits.deadline_days, "max_gpus": limits.max_gpus,
         "power": limits.power_kw, "compute_budget": limits.compute_pf_days}.get(c)
    if c == "budget":
        return fmt_usd(v)
    if c == "compute_budget":
        return f"{_pf(v)} PF-days"
    if c == "deadline":
        return f"{v:g} days"
    if c == "power":
        return f"{v:g} kW"
    if c == "priced":
        return "cost objective needs a price"
    return str(v if v is not None else ",".join(getattr(limits, c) or ()))


def _needed(c: str, row) -> str:
    if c == "compute_budget":  # row.pf_days: with_pf_days, only there under a compute budget
        return f"compute budget >= {_pf(row.pf_days, up=True)} PF-days"
    return {"budget": f"budget >= {fmt_usd(row.cost)}", "deadline": f"deadline >= {np.ceil(row.total_days):.0f} days",
            "max_gpus": f"max GPUs >= {int(row['count'])}", "power": (f"power >= {np.ceil(row.power_kw):,.0f} kW" if not pd.isna(row.power_kw)
                      else f"no power limit: {row.accelerator} has no published TDP"),
            "gpus": f"allow {row.accelerator}", "vendors": f"allow vendor {row.vendor}",
            "providers": f"allow provider {row.provider}", "precisions": f"allow {row.precision}",
            "acquisitions": f"allow {row.acquisition}", "priced": "an accelerator with a published price"}[c]


def _pf(x: float, up: bool = False) -> str:
    """PF-days as shown: whole numbers from 10 up, else 3 significant digits; `up` rounds up (a
    relaxation that is enough, never one rounded below what the plan needs)."""
    if x >= 10:
        return f"{(np.ceil(x) if up else round(x)):,.0f}"
    digits = 10 ** (np.floor(np.log10(x)) - 2) if x > 0 else 1.0
    return f"{(np.ceil(x / digits) * digits if up else x):.3g}"


def _priced_fix(df: pd.DataFrame) -> str:
    ids = sorted(set(df.accelerator))
    if prices.market() == "global" and ids and all(prices.china_only(a) for a in ids):
        return "prices from China's market: add --market china"
    return "accelerators with a published price (add --gpus or a price)"


QUANTITY = {"budget": "cost", "deadline": "total_days", "max_gpus": "count", "power": "power_kw",
            "compute_budget": "pf_days"}


def model_flops_per_token(job: TrainJob) -> float:
    """Model FLOPs per token of the job, as evaluate.training_terms counts them (PaLM App. B,
    6N + 12 L H Q T; adapters only get weight gradients under LoRA); the same for every layout."""
    m, adapters = job.model, job.adapter_params_active
    return compute.flops_per_token(m.matmul_params + adapters, m.layers, m.attention_width, job.seq_len, "none",
                                   weight_grad_params=None if job.method == "full" else adapters).model


def with_pf_days(df: pd.DataFrame, job: TrainJob) -> pd.DataFrame:
    """The table with each row's model FLOPs in PF-days (the compute budget's quantity): the job's
    tokens, or under the compute objective the tokens that row trains (max_tokens)."""
    tokens = df.max_tokens.values if "max_tokens" in df else np.full(len(df), float(job.tokens))
    return df.assign(pf_days=compute.pf_days(model_flops_per_token(job) * tokens))


def _recheck(job: TrainJob, row, limits: Limits, space: SearchSpace) -> Evaluation:
    """Re-evaluate a chosen row with the one-configuration evaluator and assert every limit."""
    layout = TrainLayout(accelerator=row.accelerator, tp=int(row.tp), pp=int(row.pp), vp=int(row.vp),
                         dp=int(row.dp), ep=int(row.ep), zero=int(row.zero), recompute=row.recompute,
                         micro_batch=int(row.micro_batch), precision=row.precision,
                         acquisition="on_demand" if row.acquisition == "owned" else row.acquisition,
                         provider=None if row.acquisition in ("buy", "owned") else row.provider)
    ev = evaluate(job, layout, headroom=space.headroom, amortize=space.amortize, owned=int(row.owned))
    total = ev.days + ev.lead_time_days
    check(ev.fits, f"plan does not fit: {layout}")
    check(abs(ev.days - row.days) <= 1e-6 * row.days, f"days {ev.days} re-evaluated, {row.days} in the table")
    if ev.cost_usd is not None and not pd.isna(row.cost):   # the table prices a row as the evaluator does
        check(abs(ev.cost_usd - row.cost) <= 1e-6 * max(abs(row.cost), 1e-9),
              f"cost {ev.cost_usd} re-evaluated, {row.cost} in the table")
    if limits.budget_usd is not None:
        check(ev.cost_usd is not None and ev.cost_usd <= limits.budget_usd * (1 + REL_TOL), "over the budget")
    if limits.deadline_days is not None:
        check(total <= limits.deadline_days * (1 + REL_TOL), "past the deadline")
    if limits.max_gpus is not None:
        check(ev.count <= limits.max_gpus, "over the GPU limit")
    if limits.power_kw is not None:
        check(ev.facility_power_kw is not None and ev.facility_power_kw <= limits.power_kw * (1 + REL_TOL),
              "over the power limit (or no TDP to check it)")
    if limits.compute_pf_days is not None:
        check(ev.pf_days <= limits.compute_pf_days * (1 + REL_TOL), "over the compute budget")
        check(abs(ev.pf_days - row.pf_days) <= 1e-6 * ev.pf_days,
              f"{ev.pf_days} PF-days re-evaluated, {row.pf_days} in the table")
    return ev


def as_plan(job: TrainJob, row, limits: Limits, space: SearchSpace, rank: int, best) -> Plan:
    """A chosen table row, re-checked by the one-configuration evaluator, as a ranked plan."""
    ev = _recheck(job, row, limits, space)
    return Plan(**(ev.model_dump() | {"acquisition": row.acquisition}), rank=rank, total_days=float(row.total_days),
                owned_gpus=int(row.owned), vs_best=_versus(row, best))


def plan_summary(p: Plan) -> str:
    """A ranked plan in one line: GPUs, accelerator, how they are had, layout, precision."""
    where = f" {p.provider}" if p.provider and p.acquisition not in ("buy", "owned") else ""
    return f"{p.count} x {p.accelerator} {p.acquisition}{where} (TP {p.tp} x PP {p.pp} x DP {p.dp}, {p.precision})"


def _cost_at(df: pd.DataFrame, space: SearchSpace):
    """Each row's cost as a function of its days (a callable on an array of days per row), as the
    evaluator prices a plan (evaluate.pricing: the cheapest of the row's provider's offers for
    that many days, a reserved term paid whole, a purchase paid whole unless amortized; owned GPUs
    their energy and colocation): cost is not proportional to days."""
    parts = []
    for (acc_id, acq, provider), rows in df.groupby(["accelerator", "acquisition", "provider"], dropna=False,
                                                    sort=False).indices.items():
        acc = catalog.accelerator(acc_id)
        options = ([None] if acq == "owned" else
                   pricing_options(acc, acq, None if acq == "buy" or pd.isna(provider) else (provider,)) or [None])
        parts.append((rows, acc, options, space.owned.get(acc.id, 0), df["count"].values[rows]))

    def cost(days: np.ndarray) -> np.ndarray:
        out = np.full(len(df), np.nan)
        for rows, acc, options, owned, count in parts:
            out[rows] = cheapest_offer(options, acc, count, days[rows], space.amortize, owned)[0]
        return out

    return cost


def _compute_scaling(df: pd.DataFrame, job: TrainJob, limits: Limits, space: SearchSpace) -> pd.DataFrame:
    """Objective 'compute': train as long as budget, deadline and compute budget allow; tokens
    scale with days, cost as the evaluator prices those days (_cost_at: a purchase or a reserved
    term is paid whole however short the run)."""
    if limits.budget_usd is None and limits.deadline_days is None and limits.compute_pf_days is None:
        raise GpuplanError("objective", "compute", "needs --budget, --deadline and/or --compute-budget to "
                           "bound the compute")
    df = df.copy()
    horizon = limits.deadline_days if limits.deadline_days is not None else catalog.assumption(
        "compute_horizon_days")  # without a deadline, a budget alone would buy a decade on one GPU
    avail = np.full(len(df), float(horizon)) - df.lead_days.values
    if limits.budget_usd is not None:
        # the most days the budget pays for. GPUs rented by the hour (and owned ones) cost in
        # proportion to their days; a purchase or a reserved term is paid whole, so its days come
        # from a bisection on the evaluator's own cost (to 2^-24 of the horizon: seconds of a
        # 270-day window; each step prices every such row, 10 ms here), rows whose whole
        # horizon fits the budget aside
        budget, top = limits.budget_usd, np.maximum(avail, 0.0)
        # (a hair short of the exact quotient, so that the cost recomputed at those days stays
        # within the budget's mask despite rounding)
        avail = np.minimum(top, budget / (df.cost.values / df.days.values) * (1.0 - 1e-12))
        whole = df.acquisition.isin(["buy", "reserved"]).values
        if whole.any():
            cost_whole, t = _cost_at(df[whole].reset_index(drop=True), space), top[whole]
            lo, hi = np.zeros(len(t)), t.copy()
            for _ in range(24):
                mid = 0.5 * (lo + hi)
                ok = cost_whole(mid) <= budget
                lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
            avail[whole] = np.where(cost_whole(t) <= budget, t, lo)
    tokens = job.tokens / df.days.values * avail
    if limits.compute_pf_days is not None:  # the days that train the budget's tokens
        cap_tokens = limits.compute_pf_days * compute.PETAFLOP_DAY / model_flops_per_token(job)
        cap_days = cap_tokens / job.tokens * df.days.values
        # the plans that reach the budget train exactly its tokens (ties, ranked by cost)
        tokens = np.where(cap_days <= avail, cap_tokens, tokens)
        avail = np.minimum(avail, cap_days)
    ok = np.isfinite(avail) & (avail > 0)
    avail = np.where(ok, avail, np.nan)
    df["max_tokens"] = np.where(ok, tokens, np.nan)
    df["cost"] = np.where(ok, _cost_at(df, space)(np.where(ok, avail, 0.0)), np.nan)
    df["days"] = avail
    df["total_days"] = avail + df.lead_days.values
    return df[df.max_tokens.notna()].reset_index(drop=True)


def plan(job: TrainJob, limits: Limits, space: SearchSpace, objective: str = "cost", top: int = 5,
         diverse: bool = False, time_limit_s: float = 10.0, notes: list[str] | None = None) -> TrainResult:
    if objective not in OBJECTIVES:
        raise GpuplanError("objective", objective, f"must be one of {', '.join(OBJECTIVES)}")
    t0 = time.perf_counter()
    notes = list(notes or [])
    df, stats = table(job, space)
    if df.empty:
        raise nothing_to_plan(job, space)
    if objective == "compute":
        scaled = _compute_scaling(df, job, limits, space)
        if scaled.empty and limits.budget_usd is not None:
            start = np.nanmin(_cost_at(df, space)(np.full(len(df), 1.0 / 24.0)))
            raise GpuplanError("budget", fmt_usd(limits.budget_usd), "pays for no training on any candidate: "
                               f"the cheapest hour costs {fmt_usd(start)} (a purchase or a reserved term is "
                               "paid whole)")
        if scaled.empty:
            days = limits.deadline_days if limits.deadline_days is not None else catalog.assumption(
                "compute_horizon_days")
            raise Infeasible("deadline", f"{days:g}d", "leaves no time to train on any candidate after its lead "
                             "time (delivery or provisioning)")
        df = scaled
    if limits.compute_pf_days is not None:
        df = with_pf_days(df, job)
    needs_price = objective in ("cost", "compute") or limits.budget_usd is not None
    unpriced = sorted(set(df.accelerator[df.cost.isna()]) - set(df.accelerator[df.cost.notna()]))
    if needs_price and unpriced:
        notes += prices.unpriced_note(unpriced)
    masks = Limits.violations(limits, df, needs_price)
    enforce = set(masks)
    pm = PlanModel(df, ordering(df, objective), masks, time_limit_s)
    first = pm.solve(enforce, want_core=True)
    relaxations: list[Relaxation] = []
    explanation: list[str] = []
    plans: list[Plan] = []
    status = first.status
    if status == "infeasible":
        core = minimal_core(pm, first.core)
        explanation.append("No plan meets all limits. Conflicting: " + ", ".join(core) + ".")
        relaxations = _relaxations(pm, df, enforce, limits) or [
            Relaxation(constraint=c, given=_given(limits, c), plan="",
                       needed=_priced_fix(df) if c == "priced" else f"drop or widen {c}") for c in core]
    else:
        excluded = np.zeros(len(df), dtype=bool)
        key = ["accelerator"] if diverse else DISTINCT
        outcome = first
        best = None
        while outcome.rows and len(plans) < top:
            i = outcome.rows[0]
            row = df.iloc[i]
            row_job = job if objective != "compute" else job.model_copy(update={"tokens": float(row.max_tokens)})
            if best is None:
                best = row
            plans.append(as_plan(row_job, row, limits, space, len(plans) + 1, best))
            same = np.ones(len(df), dtype=bool)
            for k in key:
                same &= (df[k] == row[k]).values
            excluded |= same
            outcome = pm.best(enforce, exclude=excluded)
        if best is None:  # the time limit ran out before any plan was found
            status = "unknown"
            explanation = ["The solver's time limit ran out before any plan was found; no plan is proven "
                           "to exist or not. Raise --time-limit."]
        else:
            explanation = _explain(pm, df, enforce, best, limits, objective, len(df))
            if status == "feasible":
                explanation.insert(1, "Time limit reached: #1 is the best plan found, not proven optimal.")
    if any(p.acquisition == "buy" for p in plans):
        notes.append(buying_note(space))
        for p in plans:
            if p.acquisition == "buy" and not p.lead_time_days:
                notes.append(f"{p.accelerator}: no published purchase lead time; 0 days assumed")
                break
    if any(p.acquisition == "spot" for p in plans):
        notes.append(f"spot capacity can be reclaimed mid-run: spot plans assume the same "
                     f"{catalog.assumption('goodput'):.0%} goodput as "
                     "on-demand (no published preemption rate); checkpoint often")
    assumed = sorted({p.accelerator for p in plans if not p.efficiency_calibrated})
    if assumed:
        notes.append("efficiency assumed, not calibrated on a published run, for: " + ", ".join(assumed)
                     + " (see docs/VALIDATION.md); restrict with --gpus to compare calibrated parts")
    limited = [catalog.accelerator(a) for a in space.accelerators]
    limited = sorted(f"{a.id} ({a.max_span})" for a in limited if a.max_span is not None)
    if limited:
        notes.append("no published inter-node bandwidth, so limited to the GPUs one scale-up domain holds: "
                     + ", ".join(limited))
    if "fp8" in space.precisions:
        notes.append(f"fp8 runs only the matmuls at the fp8 peak, at {catalog.assumption('fp8_training_efficiency_ratio'):.2f} "
                     "of bf16's share of its peak (fitted on published FP8 runs); attention and communication stay 16-bit")
    if plans:
        notes.append("days and cost in (brackets): the time model's error band, the 5th-95th percentile of its "
                     "leave-one-source-out errors on published runs of that accelerator family (docs/VALIDATION.md)")
        p = plans[0]
        high = p.total_days - p.days + p.days_high
        if limits.deadline_days is not None and high > limits.deadline_days:
            notes.append(f"#1 meets the {limits.deadline_days:g}-day deadline at the point estimate, not at the band's "
                         f"high end ({high:,.0f} days): a faster row below, or --deadline {limits.deadline_days / high * limits.deadline_days:,.0f}d, "
                         "keeps that margin")
    for p in plans:
        if p.acquisition == "reserved" and p.provider and not p.owned_gpus:
            pr = pricing(catalog.accelerator(p.accelerator), "reserved", (p.provider,), days=p.days)
            if pr is not None and pr.term_hours > p.days * 24:
                months = pr.term_hours / HOURS_PER_MONTH
                notes.append(f"{p.accelerator} reserved at {p.provider}: the {months:g}-month term is "
                             f"paid whole although the run takes {p.days:,.1f} days")
                break
    notes += prices.age_notes(plans) + catalog.assumption_notes()
    if objective == "compute" and plans:
        notes.append(f"compute objective: tokens trained = what budget, deadline and compute budget allow "
                     f"({plans[0].tokens:.3g} tokens)")
        if limits.deadline_days is None:
            notes.append(f"no --deadline: the compute objective trains for at most "
                         f"{catalog.assumption('compute_horizon_days'):g} days (catalog/assumptions.yaml)")
    return TrainResult(status=status, objective=objective, solve_seconds=time.perf_counter() - t0,
                       plans=plans, relaxations=relaxations, explanation=explanation, notes=notes,
                       candidates=stats.get("candidates", 0), tuples=stats["tuples"])


MAX_FIXES = 4


def _relaxations(pm: PlanModel, df: pd.DataFrame, enforce: set[str], limits: Limits) -> list[Relaxation]:
    """Each minimal correction set as a complete fix, with the least value of a single limit."""
    out: list[Relaxation] = []
    blocks: list[list[str]] = []
    for _ in range(MAX_FIXES):
        mcs = pm.correction_set(enforce, {"priced"}, blocks)
        if not mcs:
            break
        blocks.append(mcs)
        keep = enforce - set(mcs)
        targets = [c for c in mcs if c in QUANTITY] or [None]
        for target in targets:
            rank = None
            if target is not None:
                rank = np.empty(len(df), dtype=np.int64)
                # least quantity first, ties in the objective's order (a compute budget is one value
                # for every row under cost and time)
                order = np.lexsort((pm.rank, df[QUANTITY[target]].fillna(np.inf).values))
                rank[order] = np.arange(len(df))
            alt = pm.solve(keep, rank=rank)
            if not alt.rows:
                continue
            row = df.iloc[alt.rows[0]]
            lead = [target] + [c for c in mcs if c != target] if target else mcs
            if any(r.plan == _describe(row) and set(r.constraint.split(" + ")) == set(mcs) for r in out):
                continue
            out.append(Relaxation(constraint=" + ".join(lead), given="; ".join(_given(limits, c) for c in lead),
                                  needed="; ".join(_needed(c, row) for c in lead), plan=_describe(row)))
    return out


def _versus(row, best) -> str:
    if row is best or row.name == best.name:
        return "best"
    parts = []
    if "max_tokens" in row and not pd.isna(row.max_tokens) and best.max_tokens > 0:  # compute objective
        parts.append(f"{(row.max_tokens / best.max_tokens - 1):+.0%} tokens")
    if not (pd.isna(row.cost) or pd.isna(best.cost)) and best.cost > 0:
        parts.append(f"{(row.cost / best.cost - 1):+.0%} cost")
    parts.append(f"{row.total_days - best.total_days:+.1f} days")
    return ", ".join(parts)


def _explain(pm: PlanModel, df: pd.DataFrame, enforce: set[str], best, limits: Limits, objective: str,
             n: int) -> list[str]:
    what = {"cost": "cheapest", "time": "fastest", "compute": "most compute"}[objective]
    lines = [f"#1 is the {what} of {n:,} non-dominated candidates that fit in memory and meet every limit."]
    if objective == "compute":
        if limits.budget_usd is not None and best.cost >= limits.budget_usd * (1 - 1e-9):
            lines.append(f"budget binds ({_given(limits, 'budget')}): the run stops when the money does.")
        if limits.deadline_days is not None and best.total_days >= limits.deadline_days * (1 - 1e-9):
            lines.append(f"deadline binds ({_given(limits, 'deadline')}): the run stops at the deadline.")
        if limits.compute_pf_days is not None and best.pf_days >= limits.compute_pf_days * (1 - 1e-9):
            lines.append(f"compute budget binds ({_given(limits, 'compute_budget')}): the run stops when "
                         f"its model FLOPs reach it; the plans that reach it are ranked by cost.")
        return lines
    for c in sorted(enforce - {"priced"}):
        alt = pm.best(enforce - {c})
        if not alt.rows or alt.rows[0] == best.name:
            continue
        row = df.iloc[alt.rows[0]]
        lines.append(f"{c} binds ({_given(limits, c)}): without it, {_describe(row)}.")
    if len(lines) == 1:
        lines.append("No limit binds: #1 is the unconstrained optimum of the search space.")
    if limits.compute_pf_days is not None:  # the same model FLOPs on every layout: a check, not a choice
        lines.append(f"compute budget {_given(limits, 'compute_budget')}: the job needs {_pf(best.pf_days)} "
                     f"PF-days of model FLOPs on any layout ({best.pf_days / limits.compute_pf_days:.0%}).")
    return lines


def buying_note(space: SearchSpace) -> str:
    if space.amortize:
        return (f"buying is charged its capex share over a {catalog.assumption('useful_life_years'):g}-year "
                "life (--amortize), plus energy and colocation")
    return "buying is charged the whole purchase (use --amortize to charge only this job's share of its life)"
