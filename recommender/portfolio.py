"""Portfolio files (`gpuplan fleet FILE`): a year of training runs and services on one budget.

    name: startup year
    start: 2027-01-01
    step: month            # month (730 h) | week (168 h)
    horizon: 12            # periods
    own: {h100-sxm: 64}
    budget: {total: 6M, per: quarter, amount: 2M}
    jobs:
      - {name: base-7b, kind: pretrain, model: {preset: llama-3-8b}, tokens: 1T, deadline: 2027-04-30}
      - {name: chat, kind: serve, model: {preset: llama-3-8b}, rate: {start: 20rps, growth: 10%},
         ttft: 1s, tpot: 50ms}

`compile` turns it into a fleet_model.Instance with the same formulas as `train` and `serve`:
each training job's options are the candidate table's fastest layout per (accelerator, GPU
count), kept where no option of the same accelerator has fewer GPUs and no more periods (an
exact reduction: it can take the other's place in any schedule); each service's replica kinds
are the serving planner's replica table (capacity within the latency targets at the
percentile), kept where no kind of the same accelerator has fewer GPUs and more capacity.
"""

from __future__ import annotations

import contextlib
import math
from datetime import date, timedelta
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recommender import catalog, units
from recommender import prices as prices_mod
from recommender.errors import GpuplanError
from recommender.fleet_model import HOURS, GpuType, Instance, Job, Option, Replica, Service

Quantity = str | int | float
When = date | str | int | float


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class ModelRef(Section):
    preset: str | None = None
    params: Quantity | None = None
    hf_config: str | None = None


class Growth(Section):
    """A demand that starts at `start` and grows by `growth` a month (compounded; with weekly
    periods, by the same monthly rate spread over the weeks)."""

    start: Quantity
    growth: Quantity = 0


class PortfolioJob(Section):
    name: str = Field(min_length=1)
    kind: Literal["pretrain", "finetune", "serve"]
    model: ModelRef
    # training
    tokens: Quantity | None = None
    global_batch: Quantity | None = None
    seq_len: int | None = Field(None, gt=0)
    method: Literal["full", "lora", "qlora"] | None = None
    lora_rank: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    precision: list[str] | None = None
    earliest: When | None = None
    deadline: When | None = None
    weight: float = Field(1.0, gt=0)
    value: Quantity | None = None   # optional job: worth this much; the planner may skip it (objective cost)
    # serving
    rate: list[Quantity] | Growth | Quantity | None = None
    users: list[int] | Growth | int | None = None
    think_time: Quantity | None = None
    prompt: Quantity = 512
    output: Quantity = 256
    ttft: Quantity | None = None
    tpot: Quantity | None = None
    e2e: Quantity | None = None
    percentile: str = "p99"
    prefix_tokens: Quantity | None = None
    prefix_hit: Quantity | None = None
    until: When | None = None


class Budget(Section):
    total: Quantity | None = None
    per: Literal["month", "quarter", "half", "year"] | None = None
    amount: Quantity | None = None


class Purchase(Section):
    """Your own purchase terms for a part: price per GPU (with its server share) and lead time."""

    price: Quantity | None = None
    lead_time: Quantity | None = None


class Site(Section):
    pue: float | None = Field(None, ge=1)
    electricity_usd_per_kwh: float | None = Field(None, ge=0)
    colocation_usd_per_kw_month: float | None = Field(None, ge=0)
    depreciation_years: float | None = Field(None, gt=0)


class Portfolio(Section):
    name: str = ""
    description: str = ""
    start: date
    step: Literal["month", "week"] = "month"
    horizon: int = Field(12, gt=0, le=104)
    market: Literal["global", "china", "all"] = "global"
    objective: Literal["cost", "makespan", "lateness"] = "cost"
    gpus: list[str] | None = None
    tiers: list[Literal["on_demand", "spot", "reserved"]] = ["on_demand", "reserved"]
    providers: list[str] | None = None
    buy: bool = True
    book_value: bool = True   # credit what remains of a purchase at the horizon's end (False: worth nothing)
    purchase: dict[str, Purchase] = {}
    own: dict[str, int] = {}
    budget: Budget = Budget()
    power_kw: float | None = Field(None, gt=0)
    space_gpus: int | None = Field(None, gt=0)
    max_gpus: int = Field(4096, gt=0)
    site: Site = Site()
    jobs: list[PortfolioJob] = Field(min_length=1)

    @field_validator("own")
    @classmethod
    def _own(cls, v):
        for k, n in v.items():
            if n < 0:
                raise ValueError(f"{k}: a count of GPUs owned cannot be negative")
        return v

    # -- periods ----------------------------------------------------------------------------
    def boundaries(self) -> list[date]:
        """Period start dates, and the horizon's end: calendar months or weeks."""
        if self.step == "week":
            return [self.start + timedelta(weeks=i) for i in range(self.horizon + 1)]
        out = []
        for i in range(self.horizon + 1):
            m = self.start.month - 1 + i
            y, m = self.start.year + m // 12, m % 12 + 1
            out.append(self.start.replace(year=y, month=m, day=min(self.start.day, 28)))
        return out

    @property
    def period_days(self) -> float:
        return HOURS[self.step] / 24.0

    def when(self, field: str, value) -> date:
        """A date, or a duration from the start ('10w', '90d')."""
        if isinstance(value, date):
            return value
        try:
            return date.fromisoformat(str(value))
        except ValueError:
            pass
        return self.start + timedelta(days=units.parse_days(field, value))


# -- loading -----------------------------------------------------------------------------------
def load(path: str | Path, sets: list[str] | tuple[str, ...] = ()) -> Portfolio:
    """Read and validate a portfolio; errors say FILE:LINE: path=value: reason."""
    from recommender import scenario

    p = Path(path)
    root, doc = scenario.read_yaml(path, "portfolio", "constraints/portfolios/")
    for s in sets:
        scenario._set(doc, s)
    try:
        return Portfolio.model_validate(doc)
    except ValidationError as exc:
        err = exc.errors()[0]
        loc, reason = scenario._explain(err, Portfolio)
        value = err.get("input")
        field = ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in loc).replace(".[", "[")
        line = scenario._line(root, loc)
        shown = value if not isinstance(value, dict) else "{...}"
        raise GpuplanError(f"{p}:{line}: {field}" if line else f"{p}: {field}", shown, reason) from None


# -- compiling into an Instance ------------------------------------------------------------------
def context(pf: Portfolio):
    """The market and site the portfolio's prices and costs are read in."""
    stack = contextlib.ExitStack()
    stack.enter_context(prices_mod.shopping_in(prices_mod.market() if prices_mod.explicit() else pf.market))
    site = {k: v for k, v in dict(pue=pf.site.pue, electricity_usd_per_kwh=pf.site.electricity_usd_per_kwh,
                                  colocation_usd_per_kw_month=pf.site.colocation_usd_per_kw_month,
                                  useful_life_years=pf.site.depreciation_years).items() if v is not None}
    stack.enter_context(catalog.assuming(**site))
    return stack


def _types(pf: Portfolio) -> list[GpuType]:
    from recommender.evaluate import pricing, pricing_options

    ids = [catalog.accelerator(g, field="gpus").id for g in pf.gpus] if pf.gpus else list(catalog.accelerators())
    owned = {catalog.accelerator(g, field="own").id: n for g, n in pf.own.items()}
    own_terms = {catalog.accelerator(g, field="purchase").id: t for g, t in pf.purchase.items()}
    ids += [g for g in owned if g not in ids]
    providers = tuple(pf.providers) if pf.providers else None
    per = HOURS[pf.step]
    out = []
    for gid in ids:
        acc = catalog.accelerator(gid)
        labels = {}
        od = sp = None
        if "on_demand" in pf.tiers:
            p = pricing(acc, "on_demand", providers)
            od = p.usd_per_gpu_hour if p else None
            labels["on_demand"] = p.provider if p else None
        if "spot" in pf.tiers:
            p = pricing(acc, "spot", providers)
            sp = p.usd_per_gpu_hour if p else None
            labels["spot"] = p.provider if p else None
        reserved = []
        if "reserved" in pf.tiers:
            for p in pricing_options(acc, "reserved", providers):
                term = max(1, math.ceil(round(p.term_hours / per, 6)))
                reserved.append((term, p.usd_per_gpu_hour))
                labels[f"reserved:{term}"] = f"{p.provider} {p.term_hours / 730:g}-month term"
        buy, lead = None, 0
        if pf.buy:
            opts = pricing_options(acc, "buy")
            terms = own_terms.get(gid)
            if terms is not None and terms.price is not None:
                buy = units.parse_usd(f"purchase.{gid}.price", terms.price)
                labels["buy"] = "your price"
            elif opts:
                buy = opts[0].system_usd_per_gpu
                labels["buy"] = opts[0].row.source if opts[0].row is not None else "catalog"
            lead_days = (units.parse_days(f"purchase.{gid}.lead_time", terms.lead_time)
                         if terms is not None and terms.lead_time is not None else
                         (opts[0].lead_time_days if opts else 0.0))
            lead = math.ceil(round(lead_days / pf.period_days, 6))
        if od is None and sp is None and not reserved and buy is None and not owned.get(gid):
            continue
        out.append(GpuType(id=gid, node=acc.node, tdp_w=acc.tdp_w, owned=owned.get(gid, 0), buy_usd_per_gpu=buy,
                           lead_periods=lead, on_demand=od, spot=sp, reserved=tuple(reserved), labels=labels))
    return out


def _window(pf: Portfolio, j: PortfolioJob, bounds: list[date], i: int) -> tuple[int, int | None]:
    """(first period it may start in, the period boundary it must end by): periods start on the
    boundaries, so a job starts on the first boundary on or after `earliest` and ends on the last
    one before the end of its deadline day. A window without one whole period is an input error."""
    earliest = 0
    if j.earliest is not None:
        d = pf.when(f"jobs[{i}].earliest", j.earliest)
        earliest = next((k for k, b in enumerate(bounds) if b >= d), len(bounds) - 1)
        if earliest >= pf.horizon:
            raise GpuplanError(f"jobs[{i}].earliest", j.earliest, f"is after the last period's start "
                               f"({bounds[-2].isoformat()}): lengthen the horizon")
    deadline = None
    if j.deadline is not None:
        d = pf.when(f"jobs[{i}].deadline", j.deadline) + timedelta(days=1)  # the deadline day is inside
        deadline = max((k for k, b in enumerate(bounds) if b <= d), default=0)
        if deadline <= earliest:
            raise GpuplanError(f"jobs[{i}].deadline", j.deadline, f"leaves no whole {pf.step} after "
                               f"{bounds[earliest].isoformat()} (periods start on {pf.start.isoformat()} "
                               f"and every {pf.step} after)")
    return earliest, deadline


def _train_job(pf: Portfolio, j: PortfolioJob, i: int, types: list[GpuType], bounds) -> Job:
    from recommender import api, candidates

    if j.tokens is None:
        raise GpuplanError(f"jobs[{i}].tokens", None, f"{j.kind} job '{j.name}' needs tokens (e.g. tokens: 1T)")
    for f in ("rate", "users", "think_time", "ttft", "tpot", "e2e", "until", "prefix_tokens", "prefix_hit"):
        if getattr(j, f) is not None:
            raise GpuplanError(f"jobs[{i}].{f}", getattr(j, f), f"applies to serve jobs, not {j.kind}")
    kw = dict(model=j.model.preset, params=j.model.params, hf_config=j.model.hf_config, tokens=j.tokens,
              global_batch=j.global_batch, seq_len=j.seq_len, gpus=",".join(t.id for t in types),
              precision=None if j.precision is None else ",".join(j.precision), acquisition="on_demand")
    if j.kind == "finetune":
        kw = api.finetune_kwargs(**{k: v for k, v in kw.items() if k != "params"}, method=j.method or "lora",
                                 lora_rank=j.lora_rank, epochs=j.epochs)
    q = api.train_query(**kw)
    space = candidates.SearchSpace(**{**q.space.__dict__, "acquisitions": ("on_demand",), "max_gpus": pf.max_gpus,
                                      "providers": None})
    df, _ = candidates.table(q.job, space)
    earliest, deadline = _window(pf, j, bounds, i)
    options = []
    if not df.empty:
        df = df.sort_values(["accelerator", "count", "days"], kind="mergesort").drop_duplicates(["accelerator", "count"])
        for gid, grp in df.groupby("accelerator", sort=True):
            band = catalog.time_band(gid)
            best = None
            for r in grp.itertuples():
                periods = max(1, math.ceil(round(r.days / pf.period_days, 9)))
                if periods > pf.horizon or (best is not None and periods >= best):
                    continue  # dominated: an option with fewer GPUs runs no longer
                best = periods
                layout = (f"TP{r.tp} PP{r.pp}" + (f" VP{r.vp}" if r.vp > 1 else "") + f" DP{r.dp}"
                          + (f" EP{r.ep}" if r.ep > 1 else "") + f" ZeRO{r.zero} {r.recompute} mb{r.micro_batch} {r.precision}")
                options.append(Option(gpu=gid, count=int(r.count), periods=periods, days=float(r.days), layout=layout,
                                      days_low=float(r.days) * (1 + band.low), days_high=float(r.days) * (1 + band.high)))
    if not options:
        raise GpuplanError(f"jobs[{i}]", j.name, f"no accelerator among those allowed can run it within the "
                           f"{pf.horizon}-{pf.step} horizon on at most {pf.max_gpus} GPUs")
    value = None
    if j.value is not None:
        if pf.objective != "cost":
            raise GpuplanError(f"jobs[{i}].value", j.value, "optional jobs (a value) need objective cost: "
                               "with makespan or lateness, skipping a job would always look best")
        value = units.parse_usd(f"jobs[{i}].value", j.value)
    return Job(name=j.name, kind=j.kind, options=tuple(options), earliest=earliest,
               deadline=None if pf.objective == "lateness" else deadline, due=deadline, weight=j.weight,
               value_usd=value)


def _demand(pf: Portfolio, j: PortfolioJob, i: int, field: str, parse, first_period: int = 0) -> list[float]:
    """The demand per period: a list, one value, or a start and a monthly growth counted from the
    service's first period."""
    value = getattr(j, field)
    if isinstance(value, Growth):
        g = str(value.growth).strip()
        try:
            rate = float(g.rstrip("%")) / 100 if g.endswith("%") else float(g)
        except ValueError:
            raise GpuplanError(f"jobs[{i}].{field}.growth", value.growth, "write a monthly growth, e.g. 10%") from None
        if not -1 < rate < 10:
            raise GpuplanError(f"jobs[{i}].{field}.growth", value.growth, "must be above -100% and below 1000% a month")
        first = parse(f"jobs[{i}].{field}.start", value.start)
        per_period = pf.period_days / (365.0 / 12.0)  # months per period
        return [first * (1 + rate) ** (max(0, t - first_period) * per_period) for t in range(pf.horizon)]
    if isinstance(value, list):
        if len(value) != pf.horizon:
            raise GpuplanError(f"jobs[{i}].{field}", f"[{len(value)} values]", f"give one per period ({pf.horizon}), "
                               "or {start: ..., growth: ...}")
        return [parse(f"jobs[{i}].{field}[{t}]", v) for t, v in enumerate(value)]
    return [parse(f"jobs[{i}].{field}", value)] * pf.horizon


def _service(pf: Portfolio, j: PortfolioJob, i: int, types: list[GpuType], bounds) -> Service:
    from recommender import api
    from recommender import serve_planner as sp

    for f in ("tokens", "global_batch", "method", "lora_rank", "epochs", "deadline", "value"):
        if getattr(j, f) is not None:
            raise GpuplanError(f"jobs[{i}].{f}", getattr(j, f), "applies to training jobs, not serve "
                               "(a service runs from earliest to until)")
    if (j.rate is None) == (j.users is None):
        raise GpuplanError(f"jobs[{i}].rate", j.rate, "give the demand: rate (req/s per period) or users (with think_time)")
    closed = j.users is not None
    start, _ = _window(pf, j, bounds, i)
    demand = _demand(pf, j, i, "users" if closed else "rate",
                     (lambda f, v: float(api.parse_int(f, v))) if closed else units.parse_rate_per_s, start)
    q = api.serve_query(model=j.model.preset, params=j.model.params, hf_config=j.model.hf_config, prompt=j.prompt,
                        output=j.output, rate=None if closed else max(demand), users=max(1, round(max(demand))) if closed else None,
                        think_time=j.think_time, ttft=j.ttft, tpot=j.tpot, e2e=j.e2e, percentile=j.percentile,
                        prefix_tokens=j.prefix_tokens, prefix_hit=j.prefix_hit,
                        gpus=",".join(t.id for t in types), precision=None if j.precision is None else ",".join(j.precision),
                        acquisition="on_demand")
    # a service is served by aggregated replicas: the fleet model has no prefill / decode pools
    space = sp.ServeSpace(**{**q.space.__dict__, "acquisitions": ("on_demand",), "disaggregate": "off"})
    df = sp.replica_table(q.workload, space)
    end = pf.horizon
    if j.until is not None:
        d = pf.when(f"jobs[{i}].until", j.until) + timedelta(days=1)
        end = max((k for k, b in enumerate(bounds) if b <= d), default=0)
    demand = [d if start <= t < end else 0.0 for t, d in enumerate(demand)]
    reps = []
    if not df.empty:
        miss = sp.missed(df, q.workload).any(axis=1).values
        df = df[(~miss) & (df.cap > 0)].drop_duplicates(sp.TYPE_COLUMNS)
        for gid, grp in df.groupby("accelerator", sort=True):
            grp = grp.sort_values(["gpus", "cap"], ascending=[True, False], kind="mergesort")
            kept: list = []
            for r in grp.itertuples():
                # dominated: floor(n / n') replicas of a kept kind with n' <= n GPUs serve as much
                if any((r.gpus // k.gpus) * k.cap >= r.cap for k in kept):
                    continue
                kept.append(r)
                reps.append(Replica(gpu=gid, gpus=int(r.gpus), capacity=float(r.cap),
                                    layout=f"TP{r.tp} PP{r.pp} {r.precision} {int(r.batch)} slots"))
    if not reps:
        raise GpuplanError(f"jobs[{i}]", j.name, "no accelerator among those allowed meets its latency targets")
    return Service(name=j.name, demand=tuple(demand), replicas=tuple(reps), unit="users" if closed else "req/s")


def compile(pf: Portfolio) -> Instance:
    """The Instance the CP-SAT model and the re-check read: every figure from the shared formulas."""
    names = [j.name for j in pf.jobs]
    for i, n in enumerate(names):
        if names.index(n) != i:
            raise GpuplanError(f"jobs[{i}].name", n, "two jobs have this name; names must be unique")
    with context(pf):
        types = _types(pf)
        if not types:
            raise GpuplanError("gpus", ",".join(pf.gpus or []), "no accelerator here has a price (cloud or purchase) "
                               "in this market, and none is owned")
        bounds = pf.boundaries()
        jobs, services = [], []
        for i, j in enumerate(pf.jobs):
            if j.kind == "serve":
                services.append(_service(pf, j, i, types, bounds))
            else:
                jobs.append(_train_job(pf, j, i, types, bounds))
        a = catalog.assumption
        b = pf.budget
        per = None
        if b.per is not None or b.amount is not None:
            if b.per is None or b.amount is None:
                raise GpuplanError("budget.per", b.per, "a budget per period needs both per (month, quarter, half, "
                                   "year) and amount")
            months = {"month": 1, "quarter": 3, "half": 6, "year": 12}[b.per]
            n = months if pf.step == "month" else max(1, round(months * 730 / 168))
            per = (n, units.parse_usd("budget.amount", b.amount))
        return Instance(periods=pf.horizon, step=pf.step, types=tuple(types), jobs=tuple(jobs),
                        services=tuple(services), labels=tuple(d.isoformat() for d in bounds),
                        budget_usd=None if b.total is None else units.parse_usd("budget.total", b.total),
                        budget_per=per, power_kw=pf.power_kw, space_gpus=pf.space_gpus, pue=a("pue"),
                        usd_per_kwh=a("electricity_usd_per_kwh"),
                        colo_usd_per_kw_month=a("colocation_usd_per_kw_month"),
                        depreciation_years=a("useful_life_years"), objective=pf.objective,
                        credit_book_value=pf.book_value)
