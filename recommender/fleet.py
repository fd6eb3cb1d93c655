"""`gpuplan fleet FILE`: solve a portfolio, re-check the schedule, and say what it means.

Data flows portfolio -> Instance (portfolio.compile, the shared formulas) -> CP-SAT (fleet_solver)
-> schedule -> independent re-check (fleet_model.check) -> FleetResult (the --json contract).
Totals shown come from the re-check, not from the solver's objective.
"""

from __future__ import annotations

import time

from pydantic import BaseModel

from recommender.fleet_model import Instance, Schedule, Totals, check
from recommender.fleet_solver import FleetModel, Outcome, gap


class FleetJob(BaseModel):
    name: str
    kind: str
    accelerator: str
    count: int                    # GPUs (a service: the most it uses in any period)
    acquisition: str              # where its GPUs came from: owned / bought / reserved / on_demand / spot, joined by +
    start: str
    end: str
    start_period: int
    end_period: int
    cost_usd: float               # its share of its GPU type's net cost, by GPU-periods used
    layout: str
    days: float | None = None     # training: the time model's days, and its cross-validated band
    days_low: float | None = None
    days_high: float | None = None
    deadline: str | None = None
    replicas: list[int] | None = None  # a service: replicas per period


class FleetPeriod(BaseModel):
    period: int
    start: str
    spend_usd: float
    rental_usd: float
    reserved_usd: float
    capex_usd: float
    energy_usd: float
    colocation_usd: float
    power_kw: float
    owned: int                    # GPUs owned at the start
    bought: int                   # GPUs from purchases installed (arrived)
    ordered: int                  # GPUs ordered this period
    reserved: int                 # reserved cloud GPUs active
    rented: int                   # on-demand + spot GPUs
    in_use: int
    idle_onprem: int              # owned + bought GPUs not in use


class FleetPurchase(BaseModel):
    accelerator: str
    gpus: int
    ordered: str
    arrives: str
    capex_usd: float
    book_value_usd: float


class FleetReservation(BaseModel):
    accelerator: str
    gpus: int
    start: str
    periods: int
    usd_per_gpu_hour: float
    committed_usd: float


class FleetSkipped(BaseModel):
    name: str
    value_usd: float


class FleetRelaxation(BaseModel):
    constraint: str
    given: str
    needed: str


class FleetResult(BaseModel):
    status: str                   # optimal | feasible | infeasible | unknown
    objective: str
    objective_value: float | None
    gap: float | None             # proven relative gap (0 when optimal)
    total_cost_usd: float | None  # spend + reserved terms owed after the horizon - book value at the end
    spend_usd: float | None
    committed_after_usd: float | None
    book_value_usd: float | None
    budget_usd: float | None
    step: str
    horizon: int
    jobs: list[FleetJob]
    periods: list[FleetPeriod]
    purchases: list[FleetPurchase]
    reservations: list[FleetReservation]
    relaxations: list[FleetRelaxation]
    explanation: list[str]
    notes: list[str]
    solve_seconds: float
    skipped: list[FleetSkipped] = []     # optional jobs not run (their value forgone)
    forgone_value_usd: float = 0.0


def _sources(inst: Instance, tot: Totals, s: Schedule, gpu: str, periods) -> str:
    t = inst.type(gpu)
    out = []
    for p in periods:
        if s.onprem.get((gpu, p)):
            out.append("owned" if tot.installed[gpu, p] <= t.owned else "owned+bought" if t.owned else "bought")
        if tot.reserved_gpus[gpu, p]:
            out.append("reserved")
        if s.on_demand.get((gpu, p)):
            out.append("on_demand")
        if s.spot.get((gpu, p)):
            out.append("spot")
    seen = []
    for x in "+".join(out).split("+"):
        if x and x not in seen:
            seen.append(x)
    return "+".join(seen) or "none"


def result(inst: Instance, out: Outcome, model: FleetModel, seconds: float, notes: list[str]) -> FleetResult:
    labels, end_label = _labels(inst)
    relaxations, explanation = [], []
    base = dict(objective=inst.objective, budget_usd=inst.budget_usd, step=inst.step, horizon=inst.periods,
                solve_seconds=seconds, notes=notes)
    if out.schedule is None:
        if out.status == "infeasible":
            core = model.minimal_core(out.core or [])
            if core:
                explanation.append("No schedule meets every limit. Conflicting: " + ", ".join(core) + ".")
                relaxations = _relaxations(inst, model, core, end_label)
                for r in relaxations:
                    explanation.append(f"  {r.constraint}: given {r.given}; needs {r.needed}")
            else:
                explanation.append("No schedule exists even without the limits: some job cannot run inside its "
                                   "window on any priced accelerator, or a service's demand has no replica that "
                                   "meets its targets (widen the windows or the allowed GPUs and tiers).")
        else:
            explanation.append("The solver's time limit ran out before any schedule was found; none is proven to "
                               "exist or not. Raise --time-limit.")
        return FleetResult(status=out.status, objective_value=None, gap=None, total_cost_usd=None, spend_usd=None,
                           committed_after_usd=None, book_value_usd=None, jobs=[], periods=[], purchases=[],
                           reservations=[], relaxations=relaxations, explanation=explanation, **base)
    s = out.schedule
    tot = check(inst, s)
    type_cost = tot.by_type
    gpu_periods = {t.id: sum(tot.usage[t.id, p] for p in range(inst.periods)) for t in inst.types}
    per_gpu_period = {g: (type_cost[g] / gpu_periods[g] if gpu_periods[g] else 0.0) for g in type_cost}
    jobs, skipped = [], []
    for j in inst.jobs:
        if j.name not in s.runs:
            skipped.append(FleetSkipped(name=j.name, value_usd=j.value_usd))
            continue
        o, st = s.runs[j.name]
        opt = j.options[o]
        span = range(st, st + opt.periods)
        jobs.append(FleetJob(name=j.name, kind=j.kind, accelerator=opt.gpu, count=opt.count,
                             acquisition=_sources(inst, tot, s, opt.gpu, span), start=labels[st],
                             end=end_label(st + opt.periods), start_period=st, end_period=st + opt.periods,
                             cost_usd=opt.count * opt.periods * per_gpu_period[opt.gpu], layout=opt.layout,
                             days=opt.days, days_low=opt.days_low, days_high=opt.days_high,
                             deadline=None if j.due is None else end_label(j.due)))
        held = opt.periods * inst.hours / 24
        if opt.days_high is not None and opt.days_high > held:
            notes.append(f"{j.name}: {opt.days:.0f} days predicted, {held:.0f} held; at the time band's high end "
                         f"({opt.days_high:.0f} days) it would need another {inst.step}")
    for v in inst.services:
        active = [p for p in range(inst.periods) if v.demand[p] > 0]
        used = {}
        for (name, r, p), n in s.replicas.items():
            if name == v.name:
                used.setdefault(r, {})[p] = n
        for r, per in sorted(used.items()):
            rep = v.replicas[r]
            jobs.append(FleetJob(name=v.name, kind="serve", accelerator=rep.gpu,
                                 count=max(per.values()) * rep.gpus,
                                 acquisition=_sources(inst, tot, s, rep.gpu, sorted(per)),
                                 start=labels[min(per)], end=end_label(max(per) + 1), start_period=min(per),
                                 end_period=max(per) + 1,
                                 cost_usd=sum(n * rep.gpus * per_gpu_period[rep.gpu] for n in per.values()),
                                 layout=f"{rep.layout}, {rep.capacity:.3g} {v.unit} a replica",
                                 replicas=[per.get(p, 0) for p in range(inst.periods)]))
        if not active:
            notes.append(f"{v.name}: no demand inside the horizon")
    periods = []
    for p in range(inst.periods):
        owned = sum(t.owned for t in inst.types)
        inst_p = sum(tot.installed[t.id, p] for t in inst.types)
        periods.append(FleetPeriod(
            period=p, start=labels[p], spend_usd=tot.spend[p], rental_usd=tot.rental[p], reserved_usd=tot.reserved[p],
            capex_usd=tot.capex[p], energy_usd=tot.energy[p], colocation_usd=tot.colo[p], power_kw=tot.power_kw[p],
            owned=owned, bought=inst_p - owned,
            ordered=sum(n * inst.type(g).node for (g, q), n in s.buy.items() if q == p),
            reserved=sum(tot.reserved_gpus[t.id, p] for t in inst.types),
            rented=sum(n for (g, q), n in list(s.on_demand.items()) + list(s.spot.items()) if q == p),
            in_use=sum(tot.usage[t.id, p] for t in inst.types),
            idle_onprem=inst_p - sum(s.onprem.get((t.id, p), 0) for t in inst.types)))
    purchases = [FleetPurchase(accelerator=g, gpus=n * inst.type(g).node, ordered=labels[p],
                               arrives=labels[p + inst.type(g).lead_periods],
                               capex_usd=n * inst.type(g).node * inst.type(g).buy_usd_per_gpu,
                               book_value_usd=n * inst.type(g).node * inst.type(g).buy_usd_per_gpu
                               * inst.book_fraction(inst.type(g), p)) for (g, p), n in sorted(s.buy.items())]
    reservations = [FleetReservation(accelerator=g, gpus=n * inst.type(g).node, start=labels[p],
                                     periods=inst.type(g).reserved[k][0], usd_per_gpu_hour=inst.type(g).reserved[k][1],
                                     committed_usd=n * inst.type(g).node * inst.type(g).reserved[k][1] * inst.hours
                                     * inst.type(g).reserved[k][0])
                    for (g, k, p), n in sorted(s.reserve.items())]
    explanation = _explain(inst, tot, s, out)
    if skipped:
        from recommender import money

        explanation.insert(0, "Not run (optional, worth less than running it would cost under the limits): "
                           + ", ".join(f"{k.name} ({money.fmt(k.value_usd)})" for k in skipped) + ".")
    from recommender.fleet_model import objective_value

    return FleetResult(status=out.status, objective_value=objective_value(inst, tot), gap=gap(out),
                       total_cost_usd=tot.total, spend_usd=sum(tot.spend), committed_after_usd=tot.committed_after,
                       book_value_usd=tot.credit, jobs=jobs, periods=periods, purchases=purchases,
                       reservations=reservations, relaxations=[], explanation=explanation, skipped=skipped,
                       forgone_value_usd=tot.forgone, **base)


def _labels(inst: Instance):
    """Period start dates, and a boundary's label as the last day before it (a job ending at
    boundary 4 of monthly periods from January ends on April 30)."""
    from datetime import date, timedelta

    b = list(inst.labels)
    if len(b) != inst.periods + 1:
        return [str(p) for p in range(inst.periods)], lambda p: f"end of period {p - 1}"
    return b[:-1], lambda p: (date.fromisoformat(b[p]) - timedelta(days=1)).isoformat()


def _explain(inst: Instance, tot: Totals, s: Schedule, out: Outcome) -> list[str]:
    from recommender import money

    lines = []
    if out.status == "feasible":
        g = gap(out)
        lines.append("Time limit reached: the best schedule found, not proven optimal"
                     + (f" (proven within {g:.1%})" if g is not None else "") + ".")
    binds = []
    if inst.budget_usd is not None:
        paid = sum(tot.spend) + tot.committed_after
        if paid >= inst.budget_usd * 0.99:
            binds.append(f"budget ({money.fmt(paid)} of {money.fmt(inst.budget_usd)})")
    for grp in inst.groups():
        paid = sum(tot.spend[p] for p in grp)
        if paid >= inst.budget_per[1] * 0.99:
            binds.append(f"budget per period from {_labels(inst)[0][grp.start]} "
                         f"({money.fmt(paid)} of {money.fmt(inst.budget_per[1])})")
    if inst.power_kw is not None:
        most = max(tot.power_kw, default=0)
        step = max((t.tdp_w or 0) / 1000 * inst.pue * t.node for t in inst.types)
        if most >= inst.power_kw - step:
            binds.append(f"power ({most:,.0f} of {inst.power_kw:,.0f} kW at the peak)")
    if inst.space_gpus is not None:
        most = max(sum(tot.installed[t.id, p] for t in inst.types) for p in range(inst.periods))
        if most > inst.space_gpus - max(t.node for t in inst.types):
            binds.append(f"space ({most} of {inst.space_gpus} GPUs installed)")
    for j in inst.jobs:
        if j.deadline is not None and tot.ends[j.name] == inst.deadline(j) and inst.deadline(j) < inst.periods:
            binds.append(f"deadline of {j.name}")
    lines.append("At their limit: " + ", ".join(binds) + "." if binds else "No limit is at its bound: the schedule "
                 "is the cheapest without them too.")
    idle = sum(max(0, tot.installed[t.id, p] - s.onprem.get((t.id, p), 0)) for t in inst.types
               for p in range(inst.periods))
    installed = sum(tot.installed[t.id, p] for t in inst.types for p in range(inst.periods))
    if installed:
        lines.append(f"On-premises GPUs idle {idle / installed:.0%} of their GPU-periods ({idle:,} of {installed:,}).")
    return lines


def _relaxations(inst: Instance, model: FleetModel, core: list[str], end_label) -> list[FleetRelaxation]:
    """The least value of each conflicting limit that, alone relaxed, makes the portfolio feasible."""
    from recommender import money

    out = []
    for c in core:
        o = model.solve(set(model.limits) - {c}, minimize=c)
        if o.schedule is None:
            out.append(FleetRelaxation(constraint=c, given=_given(inst, c, end_label), needed="not enough alone"))
            continue
        tot = check(without(inst, c), o.schedule)
        if c == "budget":
            needed = money.fmt(sum(tot.spend) + tot.committed_after)
        elif c == "budget_per_period":
            needed = money.fmt(max(sum(tot.spend[p] for p in g) for g in inst.groups())) + " a period"
        elif c == "power":
            needed = f"{max(tot.power_kw):,.0f} kW"
        elif c == "space":
            needed = f"{max(sum(tot.installed[t.id, p] for t in inst.types) for p in range(inst.periods))} GPUs"
        else:
            name = c.split(":", 1)[1]
            end = tot.ends[name]
            needed = end_label(end)
        out.append(FleetRelaxation(constraint=c, given=_given(inst, c, end_label), needed=needed))
    return out


def without(inst: Instance, c: str) -> Instance:
    """The instance with limit `c` lifted (to re-check a relaxation's schedule)."""
    from dataclasses import replace

    if c.startswith("deadline:"):
        name = c.split(":", 1)[1]
        return replace(inst, jobs=tuple(replace(j, deadline=None) if j.name == name else j for j in inst.jobs))
    field = {"budget": "budget_usd", "budget_per_period": "budget_per", "power": "power_kw", "space": "space_gpus"}[c]
    return replace(inst, **{field: None})


def _given(inst: Instance, c: str, end_label) -> str:
    from recommender import money

    if c == "budget":
        return money.fmt(inst.budget_usd)
    if c == "budget_per_period":
        return money.fmt(inst.budget_per[1]) + " a period"
    if c == "power":
        return f"{inst.power_kw:,.0f} kW"
    if c == "space":
        return f"{inst.space_gpus} GPUs"
    j = next(j for j in inst.jobs if j.name == c.split(":", 1)[1])
    return end_label(inst.deadline(j))


def plan_fleet(inst: Instance, time_limit_s: float = 30.0, notes: list[str] | None = None) -> FleetResult:
    t0 = time.perf_counter()
    model = FleetModel(inst, time_limit_s=time_limit_s)
    out = model.solve()
    return result(inst, out, model, time.perf_counter() - t0, list(notes or []))


def standard_notes(inst: Instance) -> list[str]:
    """How the money is counted, in the answer's own words."""
    from recommender import money

    kwh = f"{money.symbol()}{money.in_display(inst.usd_per_kwh):.3g}/kWh"
    colo = f"{money.symbol()}{money.in_display(inst.colo_usd_per_kw_month):,.0f}/kW-month"
    per = "month (730 h)" if inst.step == "month" else "week (168 h)"
    notes = [f"periods of one {per}; a training run holds its GPUs for whole periods (the time model's days "
             "rounded up); a service's replicas are set per period",
             "purchases are whole servers, paid when ordered, usable after the lead time; "
             + (f"what remains at the horizon's end is credited at straight-line book value over "
                f"{inst.depreciation_years:g} years from arrival (book_value: false credits nothing)"
                if inst.credit_book_value else "nothing is credited for what remains at the horizon's end "
                "(book_value: false)")
             + f"; on-premises GPUs pay energy when in use (PUE {inst.pue:g}, {kwh}) and "
             f"colocation while installed ({colo})",
             "reserved terms are whole cloud instances paid every period of the term; the part of a term past the "
             "horizon is owed and counted in the total",
             "power counts on-premises GPUs in use (TDP x PUE); cloud GPUs are outside the data centre's envelope",
             "a job's cost is its share of its GPU type's net cost, by GPU-periods used (idle capacity included)"]
    if any(not t.reserved for t in inst.types):
        none = sorted(t.id for t in inst.types if not t.reserved)
        if len(none) < len(inst.types):
            notes.append("no published reserved price (so no reservation) for: " + ", ".join(none))
    return notes
