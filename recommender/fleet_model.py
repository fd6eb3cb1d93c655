"""A portfolio as plain data: GPU types, training jobs, services, limits; a schedule; and the
independent re-check that costs a schedule and tests every limit in floating point.

Time is cut into periods (months of 730 hours, or weeks of 168). A training job runs whole
periods on one of its options (accelerator, GPU count, layout; its duration is the time model's
days rounded up to whole periods). A service needs, in every period, replicas whose summed
capacity covers that period's demand. GPUs of a type come from four places in each period:

  on-premises   owned GPUs, plus purchases (whole servers) from the period they arrive
                (ordered at t, usable from t + lead); capex paid when ordered; energy for the
                GPUs in use, colocation for every installed GPU;
  reserved      cloud commitments in whole instances (nodes) for a term of L periods, paid
                every period of the term whether used or not (the part of a term past the
                horizon is still owed: counted in the total as `committed_after`);
  on-demand     by the GPU-period;
  spot          by the GPU-period, where the portfolio allows it.

What remains of a purchase at the horizon's end is credited at straight-line book value over
the depreciation life, from its arrival. Power counts the on-premises GPUs in use (TDP x PUE);
cloud GPUs are outside the data centre's envelope. The money the solver sees is integer cents,
rounded against the plan (costs up, credits down, capacities down, demands and watts up):
`Coefficients`, the one scaling helper, which the brute-force test shares with the solver.
`check` re-derives everything from the float data and raises PlanCheckError on any violation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from recommender.errors import check as _ensure
from recommender.formulas import cost as costf

HOURS = {"month": 730.0, "week": 168.0}  # 8,760 h / 12, as clouds bill a month; 7 x 24
CENT = 100


@dataclass(frozen=True)
class GpuType:
    id: str
    node: int                      # GPUs per server / cloud instance: the unit of purchase and reservation
    tdp_w: float | None
    owned: int = 0
    buy_usd_per_gpu: float | None = None    # system price per GPU (GPU + its share of the server)
    lead_periods: int = 0
    on_demand: float | None = None           # $ per GPU-hour
    spot: float | None = None
    reserved: tuple[tuple[int, float], ...] = ()  # (term in periods, $ per GPU-hour)
    labels: dict = field(default_factory=dict, compare=False, hash=False)  # provider per tier, for the report


@dataclass(frozen=True)
class Option:
    """One way to run a training job: `count` GPUs of `gpu` for `periods` whole periods."""

    gpu: str
    count: int
    periods: int
    days: float
    layout: str = ""
    days_low: float | None = None
    days_high: float | None = None


@dataclass(frozen=True)
class Job:
    name: str
    kind: str                 # pretrain | finetune
    options: tuple[Option, ...]
    earliest: int = 0         # first period it may start in
    deadline: int | None = None  # the period boundary it must end by (None: the horizon's end)
    weight: float = 1.0       # for the lateness objective
    due: int | None = None    # lateness is counted past this boundary (the deadline given)
    value_usd: float | None = None  # optional job: the solver may skip it, forgoing this value


@dataclass(frozen=True)
class Replica:
    gpu: str
    gpus: int
    capacity: float           # demand units one replica serves within the latency targets
    layout: str = ""


@dataclass(frozen=True)
class Service:
    name: str
    demand: tuple[float, ...]  # per period, in the replicas' capacity units; 0 where not served
    replicas: tuple[Replica, ...]
    unit: str = "req/s"


@dataclass(frozen=True)
class Instance:
    periods: int
    step: str                  # month | week
    types: tuple[GpuType, ...]
    jobs: tuple[Job, ...] = ()
    services: tuple[Service, ...] = ()
    labels: tuple[str, ...] = ()          # period start dates
    budget_usd: float | None = None
    budget_per: tuple[int, float] | None = None  # (periods per budget period, $ each)
    power_kw: float | None = None
    space_gpus: int | None = None          # most GPUs installed on premises
    pue: float = 1.3
    usd_per_kwh: float = 0.1
    colo_usd_per_kw_month: float = 0.0
    depreciation_years: float = 5.0
    objective: str = "cost"                # cost | makespan | lateness
    credit_book_value: bool = True         # False: a purchase is worth nothing at the horizon's end

    @property
    def hours(self) -> float:
        return HOURS[self.step]

    @property
    def period_years(self) -> float:
        return self.hours / 8760.0

    def type(self, gpu: str) -> GpuType:
        return next(t for t in self.types if t.id == gpu)

    def deadline(self, j: Job) -> int:
        return self.periods if j.deadline is None else min(j.deadline, self.periods)

    def starts(self, j: Job, o: Option) -> range:
        """Every start period of option `o` inside the job's window."""
        return range(j.earliest, self.deadline(j) - o.periods + 1)

    def groups(self) -> list[range]:
        """The budget periods (a quarter = 3 months, ...)."""
        if self.budget_per is None:
            return []
        n = self.budget_per[0]
        return [range(s, min(s + n, self.periods)) for s in range(0, self.periods, n)]

    def buy_periods(self, t: GpuType) -> range:
        """Order periods whose servers arrive inside the horizon."""
        if t.buy_usd_per_gpu is None or t.tdp_w is None:
            return range(0)
        return range(0, max(0, self.periods - t.lead_periods))

    def book_fraction(self, t: GpuType, order: int) -> float:
        """What remains of a purchase's value at the horizon's end (straight line from arrival)."""
        if not self.credit_book_value:
            return 0.0
        used = (self.periods - (order + t.lead_periods)) * self.period_years
        return max(0.0, 1.0 - used / self.depreciation_years)

    def peak_usage(self, gpu: str) -> int:
        """The most GPUs of one type any choice of options can use in one period (a bound)."""
        train = sum(max((o.count for o in j.options if o.gpu == gpu), default=0) for j in self.jobs)
        serve = sum(max((math.ceil(max(s.demand, default=0) / r.capacity) * r.gpus
                         for r in s.replicas if r.gpu == gpu and r.capacity > 0), default=0) for s in self.services)
        return train + serve


@dataclass
class Schedule:
    """A solution: what runs when, and where each period's GPUs come from."""

    runs: dict[str, tuple[int, int]] = field(default_factory=dict)          # job -> (option, start)
    replicas: dict[tuple[str, int, int], int] = field(default_factory=dict)  # (service, replica, t) -> count
    buy: dict[tuple[str, int], int] = field(default_factory=dict)            # (gpu, t) -> servers ordered
    reserve: dict[tuple[str, int, int], int] = field(default_factory=dict)   # (gpu, term index, t) -> nodes
    on_demand: dict[tuple[str, int], int] = field(default_factory=dict)      # (gpu, t) -> GPUs
    spot: dict[tuple[str, int], int] = field(default_factory=dict)
    onprem: dict[tuple[str, int], int] = field(default_factory=dict)         # (gpu, t) -> on-prem GPUs in use


# -- the one scaling helper: integer cents and units, rounded against the plan --------------
@dataclass(frozen=True)
class Coefficients:
    rent: dict      # (gpu, tier) -> cents per GPU-period, tier in on_demand | spot
    reserve: dict   # (gpu, term index) -> cents per node-period
    capex: dict     # gpu -> cents per server
    credit: dict    # (gpu, order period) -> cents credited per server
    energy: dict    # gpu -> cents per on-prem GPU-period in use
    colo: dict      # gpu -> cents per installed GPU-period
    watts: dict     # gpu -> facility watts per GPU in use (TDP x PUE, up)
    value: dict     # job -> cents forgone if an optional job is skipped
    cap: dict       # (service, replica) -> capacity in milli-units (down)
    demand: dict    # (service, t) -> demand in milli-units (up)
    power_w: int | None
    budget: int | None
    budget_per: int | None


def coefficients(inst: Instance) -> Coefficients:
    up = lambda usd: int(math.ceil(round(usd * CENT, 6)))  # noqa: E731
    down = lambda usd: int(math.floor(round(usd * CENT, 6)))  # noqa: E731
    h = inst.hours
    rent, res, capex, credit, energy, colo, watts = {}, {}, {}, {}, {}, {}, {}
    for t in inst.types:
        for tier in ("on_demand", "spot"):
            price = getattr(t, tier)
            if price is not None:
                rent[t.id, tier] = up(price * h)
        for k, (_, price) in enumerate(t.reserved):
            res[t.id, k] = up(price * h * t.node)
        if t.tdp_w is not None:  # per GPU-period, by the formulas every plan is costed with
            energy[t.id] = up(costf.energy_cost(1, h / 24, t.tdp_w, inst.pue, inst.usd_per_kwh))
            colo[t.id] = up(costf.colocation_cost(1, h / 24, t.tdp_w, inst.colo_usd_per_kw_month))
            watts[t.id] = int(math.ceil(costf.facility_power_kw(1, t.tdp_w, inst.pue) * 1000 - 1e-9))
        if t.buy_usd_per_gpu is not None:
            capex[t.id] = up(t.buy_usd_per_gpu * t.node)
            for o in inst.buy_periods(t):
                credit[t.id, o] = down(t.buy_usd_per_gpu * t.node * inst.book_fraction(t, o))
    value = {j.name: up(j.value_usd) for j in inst.jobs if j.value_usd is not None}
    cap = {(s.name, r): int(math.floor(rep.capacity * 1000 + 1e-9)) for s in inst.services
           for r, rep in enumerate(s.replicas)}
    demand = {(s.name, t): int(math.ceil(d * 1000 - 1e-9)) for s in inst.services for t, d in enumerate(s.demand)}
    return Coefficients(rent, res, capex, credit, energy, colo, watts, value, cap, demand,
                        None if inst.power_kw is None else int(math.floor(inst.power_kw * 1000 + 1e-9)),
                        None if inst.budget_usd is None else down(inst.budget_usd),
                        None if inst.budget_per is None else down(inst.budget_per[1]))


# -- the independent re-check --------------------------------------------------------------
@dataclass
class Totals:
    """A schedule's money, power and capacity per period, from the float data."""

    spend: list[float]            # per period: rental + reserved + capex + energy + colocation
    rental: list[float]
    reserved: list[float]
    capex: list[float]
    energy: list[float]
    colo: list[float]
    power_kw: list[float]
    usage: dict                   # (gpu, t) -> GPUs in use
    installed: dict               # (gpu, t) -> on-prem GPUs installed
    reserved_gpus: dict           # (gpu, t) -> reserved GPUs active
    committed_after: float        # reserved terms running past the horizon
    credit: float                 # book value of purchases at the horizon's end
    ends: dict                    # job -> end period boundary (jobs run)
    forgone: float = 0.0          # the value of optional jobs not run
    by_type: dict = field(default_factory=dict)  # gpu -> its net cost: all its terms, credit taken off

    @property
    def total(self) -> float:
        """Money: spend + reserved terms owed after the horizon - book value at the end."""
        return sum(self.spend) + self.committed_after - self.credit


def usage(inst: Instance, s: Schedule) -> dict:
    out = {(t.id, p): 0 for t in inst.types for p in range(inst.periods)}
    for j in inst.jobs:
        if j.name not in s.runs:
            continue
        o, start = s.runs[j.name]
        opt = j.options[o]
        for p in range(start, start + opt.periods):
            out[opt.gpu, p] += opt.count
    for v in inst.services:
        for (name, r, p), n in s.replicas.items():
            if name == v.name:
                out[v.replicas[r].gpu, p] += n * v.replicas[r].gpus
    return out


def check(inst: Instance, s: Schedule, tol: float = 1e-6) -> Totals:
    """Cost `s` and test every limit from the float data: raise PlanCheckError on a violation."""
    T, h = inst.periods, inst.hours
    use = usage(inst, s)
    ends, forgone = {}, 0.0
    for j in inst.jobs:
        if j.name not in s.runs:
            _ensure(j.value_usd is not None, f"job {j.name} has no run and is not optional")
            forgone += j.value_usd
            continue
        o, start = s.runs[j.name]
        opt = j.options[o]
        _ensure(start >= j.earliest, f"{j.name} starts in period {start}, before its earliest {j.earliest}")
        _ensure(start + opt.periods <= inst.deadline(j), f"{j.name} ends at {start + opt.periods}, "
                f"after its deadline {inst.deadline(j)}")
        ends[j.name] = start + opt.periods
    for v in inst.services:
        for p in range(T):
            got = sum(n * v.replicas[r].capacity for (name, r, q), n in s.replicas.items() if name == v.name and q == p)
            _ensure(got >= v.demand[p] * (1 - 1e-9), f"{v.name} serves {got:g} of {v.demand[p]:g} in period {p}")
    spend, rental, reserved, capex, energy, colo, power = ([0.0] * T for _ in range(7))
    installed, res_gpus = {}, {}
    committed_after, credit = 0.0, 0.0
    by_type = {}
    for t in inst.types:
        before = sum(rental) + sum(reserved) + sum(capex) + sum(energy) + sum(colo) + committed_after - credit
        for (g, p), n in s.buy.items():
            if g != t.id or not n:
                continue
            _ensure(p in inst.buy_periods(t), f"{g} bought in period {p}: no price, or arrives after the horizon")
            capex[p] += n * t.node * t.buy_usd_per_gpu
            credit += n * t.node * t.buy_usd_per_gpu * inst.book_fraction(t, p)
        for (g, k, p), n in s.reserve.items():
            if g != t.id or not n:
                continue
            term, price = t.reserved[k]
            for q in range(p, p + term):
                if q < T:
                    reserved[q] += n * t.node * price * h
                else:
                    committed_after += n * t.node * price * h
        for p in range(T):
            inst_p = t.owned + sum(n * t.node for (g, q), n in s.buy.items() if g == t.id and q + t.lead_periods <= p)
            res_p = sum(n * t.node for (g, k, q), n in s.reserve.items()
                        if g == t.id and q <= p < q + t.reserved[k][0])
            installed[t.id, p], res_gpus[t.id, p] = inst_p, res_p
            on = s.onprem.get((t.id, p), 0)
            od, sp = s.on_demand.get((t.id, p), 0), s.spot.get((t.id, p), 0)
            _ensure(on <= inst_p, f"{t.id} period {p}: {on} GPUs in use on premises, {inst_p} installed")
            _ensure(od == 0 or t.on_demand is not None, f"{t.id}: on-demand rented without a price")
            _ensure(sp == 0 or t.spot is not None, f"{t.id}: spot rented without a price (or not allowed)")
            _ensure(use[t.id, p] <= on + od + sp + res_p, f"{t.id} period {p}: {use[t.id, p]} GPUs used, "
                    f"{on + od + sp + res_p} available")
            rental[p] += od * h * (t.on_demand or 0.0) + sp * h * (t.spot or 0.0)
            if t.tdp_w is not None:
                energy[p] += costf.energy_cost(on, h / 24, t.tdp_w, inst.pue, inst.usd_per_kwh)
                colo[p] += costf.colocation_cost(inst_p, h / 24, t.tdp_w, inst.colo_usd_per_kw_month)
                power[p] += costf.facility_power_kw(on, t.tdp_w, inst.pue)
            else:
                _ensure(on == 0, f"{t.id}: on-premises use without a TDP")
        by_type[t.id] = sum(rental) + sum(reserved) + sum(capex) + sum(energy) + sum(colo) + committed_after \
            - credit - before
    for p in range(T):
        spend[p] = rental[p] + reserved[p] + capex[p] + energy[p] + colo[p]
        if inst.power_kw is not None:
            _ensure(power[p] <= inst.power_kw * (1 + tol), f"period {p}: {power[p]:.1f} kW > {inst.power_kw:g} kW")
    if inst.space_gpus is not None:
        for p in range(T):
            n = sum(installed[t.id, p] for t in inst.types)
            _ensure(n <= inst.space_gpus, f"period {p}: {n} GPUs installed, space for {inst.space_gpus}")
    if inst.budget_usd is not None:
        paid = sum(spend) + committed_after
        _ensure(paid <= inst.budget_usd * (1 + tol), f"spend {paid:,.0f} > budget {inst.budget_usd:,.0f}")
    for g in inst.groups():
        paid = sum(spend[p] for p in g)
        _ensure(paid <= inst.budget_per[1] * (1 + tol), f"periods {g.start}-{g.stop - 1}: spend {paid:,.0f} > "
                f"{inst.budget_per[1]:,.0f}")
    return Totals(spend, rental, reserved, capex, energy, colo, power, use, installed, res_gpus,
                  committed_after, credit, ends, forgone, by_type)


def objective_value(inst: Instance, totals: Totals) -> float:
    """The primary objective of a checked schedule: cost ($), makespan (periods) or weighted
    lateness (weight x periods late)."""
    if inst.objective == "makespan":
        return float(max(totals.ends.values(), default=0))
    if inst.objective == "lateness":
        return float(sum(j.weight * max(0, totals.ends[j.name] - (j.due if j.due is not None else inst.periods))
                         for j in inst.jobs if j.name in totals.ends))
    return totals.total + totals.forgone
