"""`gpuplan serve`: replica types from the formulas, an exact fleet from CP-SAT, ranked
alternatives, infeasibility explained, every plan re-checked by the one-configuration evaluator."""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace

import numpy as np
import pandas as pd
from pydantic import BaseModel

from recommender import catalog, prices
from recommender.errors import GpuplanError, Infeasible, check
from recommender.evaluate import link_rates, pricing
from recommender.formulas import cost as costf
from recommender.formulas import serving as sv
from recommender.serve_solver import ServeModel
from recommender.solver import deletion_filter
from recommender.serving import TARGETS as SERVE_TARGETS
from recommender.formulas import queueing as qm
from recommender.serving import (HOURS_PER_DAY, ServeFigures, ServeLayout, ServePart, ServeWorkload, accept_text,
                                 best_slots, decode_budgets, figures, engine_limits, role_workload, stack_steps,
                                 evaluate_serving, full_slot_curve, light_load, meets, replica_cost_per_hour,
                                 replica_memory, replica_steps, slot_candidates, slot_cap, spec_problem)
from recommender.units import fmt_usd

TARGETS = ("ttft", "tpot", "e2e")
ROW_LIMITS = TARGETS + ("gpus", "vendors", "providers", "acquisitions")
FLEET_LIMITS = ("budget", "max_gpus", "power")
OBJECTIVES = ("cost", "latency")
DISAGGREGATE = ("auto", "off", "only")
REL_TOL = 1e-6
MAX_FIXES = 4
DEFAULT_PRECISIONS = ("bf16", "fp16", "fp8")  # fp16 only on parts without bf16


@dataclass
class ServeSpace:
    """What the planner may choose from."""

    accelerators: tuple[str, ...]
    precisions: tuple[str, ...] = DEFAULT_PRECISIONS
    kv_precision: str = "auto"
    acquisitions: tuple[str, ...] = ("on_demand", "spot", "reserved", "buy")
    owned: dict[str, int] = field(default_factory=dict)
    amortize: bool = False
    headroom: float | None = None
    max_pp: int = 64
    # disaggregated prefill/decode pools (serving.role_workload): "auto" prices them beside the
    # aggregated replicas and lets the solver choose; "off" aggregated only; "only" disaggregated only
    disaggregate: str = "auto"


@dataclass
class ServeLimits:
    budget_usd: float | None = None      # over the horizon
    max_gpus: int | None = None
    power_kw: float | None = None
    gpus: tuple[str, ...] | None = None
    vendors: tuple[str, ...] | None = None
    providers: tuple[str, ...] | None = None
    acquisitions: tuple[str, ...] | None = None


def kv_for(precision: str, kv_precision: str) -> str:
    """'auto': an 8-bit cache with 8-bit weights (fp8 -> fp8, int8 -> int8), else 16-bit."""
    if kv_precision != "auto":
        return kv_precision
    return precision if precision in ("fp8", "int8") else ("fp16" if precision == "fp16" else "bf16")


def precisions_for(acc, wanted: tuple[str, ...]) -> list[str]:
    """The wanted precisions this accelerator runs: bf16 and fp16 are one 16-bit choice (fp16 only
    where the part has no bf16)."""
    out = []
    for p in wanted:
        if p == "bf16" and acc.fp16_only:
            continue
        if p == "fp16" and "bf16" in wanted and not acc.fp16_only:
            continue
        if acc.peak_tflops(sv.MATH[p]) is None:
            continue
        out.append(p)
    return out


def nothing_to_serve(w: ServeWorkload, space: ServeSpace) -> GpuplanError:
    """Why no replica came out: no accelerator in the space runs the precisions asked for (the
    input's fault, exit 2), or none holds one replica (Infeasible, exit 3)."""
    accs = [catalog.accelerator(a) for a in space.accelerators]
    if not any(precisions_for(acc, space.precisions) for acc in accs):
        named = catalog.listed([a.id for a in accs])
        have = [p for p in sv.SERVE_PRECISIONS if any(precisions_for(acc, (p,)) for acc in accs)]
        return GpuplanError("precision", ",".join(space.precisions), f"no accelerator in the search space "
                            f"({named}) has a published {' or '.join(space.precisions)} peak"
                            + (f"; try --precision {','.join(have)}" if have else ""))
    return Infeasible("model", w.model.id, "no accelerator in the search space can hold one replica of this "
                      "model at these prompt and output lengths")


def _replica_types(w: ServeWorkload, acc, precision: str, kv: str, headroom: float, efficiency: float,
                   max_pp: int, spec: bool = False) -> list[tuple[int, int, int]]:
    """Every (TP, PP, slot cap) of one accelerator and precision worth pricing: the slot caps come
    from the paged-KV memory limit and slot_candidates. spec: the replicas that can run
    speculative decoding (serving.spec_problem: PP 1, a TP the draft divides)."""
    m = w.model
    links = link_rates(acc)[0]
    if w.role != "both" and not takes_role(acc):
        return []    # a disaggregated pool sends (or takes) every prompt's KV over an RDMA-class network
    tps = [t for t in (1, 2, 4, 8, 16) if t <= acc.domain and m.heads % t == 0 and (t == 1 or links)]
    if spec:
        tps = [t for t in tps if spec_problem(w, t, 1) is None]
    caps = lambda t, p: int(slot_cap(w, acc, precision, kv, t, p, headroom, spec)[0])  # noqa: E731
    pps = [1]
    if not spec and not any(caps(t, 1) >= 1 for t in tps):
        pps = []
        p = 2
        while p <= min(max_pp, m.layers):
            span_ok = lambda t: acc.span_problem(t * p) is None  # noqa: E731
            if any(span_ok(t) and caps(t, p) >= 1 for t in tps):
                pps = [p] + ([2 * p] if 2 * p <= min(max_pp, m.layers) else [])
                break
            p *= 2
    types = [(t, p, caps(t, p)) for p in pps for t in tps if not acc.span_problem(t * p)]
    # a prefill replica must be able to admit more prompts than one step takes, or its slots bind
    least = math.ceil(engine_limits(w, acc)[1] / w.queue_prompt_tokens) + 1 if w.role == "prefill" else 1
    types = [x for x in types if x[2] >= least]
    if not types:
        return []
    tp0, pp0, cap0 = (np.array(x) for x in zip(*types))
    curves = full_slot_curve(replica_steps(w, acc, precision, kv, tp0, pp0, cap0, efficiency,
                                           width=int(cap0.max()) + 1, spec=spec), w)
    return [(t, p, b) for (t, p, c), curve in zip(types, curves) for b in slot_candidates(w, curve, c)]


def _group_steps(w: ServeWorkload, df: pd.DataFrame) -> qm.Steps:
    """The queue model's step terms for the rows of df (any mix of accelerators), in df's order."""
    parts, order = [], []
    for (acc_id, prec, kv, spec), idx in df.groupby(["accelerator", "precision", "kv_precision", "speculative"],
                                                    sort=True).indices.items():
        acc = catalog.accelerator(acc_id)
        parts.append(replica_steps(w, acc, prec, kv, df.tp.values[idx], df.pp.values[idx], df.batch.values[idx],
                                   serve_efficiency(acc_id), spec=bool(spec)))
        order.append(idx)
    s = stack_steps(parts)
    back = np.empty(len(df), dtype=np.int64)
    back[np.concatenate(order)] = np.arange(len(df))
    return s.rows(back)


def with_latencies(df: pd.DataFrame, w: ServeWorkload, light_only: bool = False) -> pd.DataFrame:
    """df with each row's latency percentiles at its capacity (ttft, tpot, e2e; at light load where
    its capacity is 0) and at light load (ttft0, tpot0, e2e0): the explanations' figures, computed
    only where they are asked for. light_only: the light-load ones alone (an infeasible answer's
    floors: half the work)."""
    if df.empty or "ttft" in df or (light_only and "ttft0" in df):
        return df
    cols = TYPE_COLUMNS + [c for c in ("role", "level") if c in df]
    types = df.drop_duplicates(cols).reset_index(drop=True)
    frames = []
    # aggregated rows in one pass, then each pool's rows per split (their targets differ)
    pool = (types.role + "|" + types.level.astype(str) if "role" in types else pd.Series("both|-1", index=types.index))
    for key, idx in pool.groupby(pool, sort=False).indices.items():
        role, level = key.split("|")
        sub = types.iloc[idx].reset_index(drop=True)
        wr = w if role == "both" else role_workload(w, role, int(level))
        s = _group_steps(wr, sub)
        light = light_load(wr, s)
        floor = figures(wr, s, light)
        at = dict(ttft0=floor.ttft, tpot0=floor.tpot, e2e0=floor.e2e)
        if not light_only:
            fig = figures(wr, s, np.where(sub.cap.values > 0, sub.cap.values, light))
            at |= dict(ttft=fig.ttft, tpot=fig.tpot, e2e=fig.e2e)
        frames.append(sub[cols].assign(**at))
    return df.merge(pd.concat(frames, ignore_index=True), on=cols, how="left", sort=False)


TYPE_COLUMNS = ["accelerator", "precision", "kv_precision", "tp", "pp", "batch", "speculative"]


def serve_efficiency(acc_id: str) -> float:
    """The matmul efficiency serving uses: the catalog's (0.5 where none is listed)."""
    eff = catalog.efficiency(acc_id)
    return eff.matmul_efficiency if eff else 0.5


def pools_apply(w: ServeWorkload) -> bool:
    """Whether a workload can be served by disaggregated pools: an open loop (a closed loop's users
    would cycle through two pools, which the model does not follow) with no end-to-end target."""
    return not w.closed and w.rate_rps is not None and w.e2e_s is None


def takes_role(acc) -> bool:
    """Whether a part may take a prefill or decode role: an RDMA-class published inter-node link."""
    return (acc.inter_node_bw_gb_s or 0.0) >= catalog.assumption("disagg_min_link_gb_s")


def disaggregates(w: ServeWorkload, space: ServeSpace) -> bool:
    """Whether disaggregated pools are priced: asked for, and the workload allows them."""
    return space.disaggregate != "off" and pools_apply(w)


def replica_table(w: ServeWorkload, space: ServeSpace) -> pd.DataFrame:
    """Every fitting replica type (accelerator, precision, TP, PP, slot cap) with its capacity within
    the targets (one vectorized queueing solve over all of them) x acquisition, priced per
    replica-hour over the horizon; role "both" (aggregated). With disaggregation (disaggregates()),
    also the prefill and decode replicas of each split of the TTFT target (serving.decode_budgets;
    column `level`, -1 for aggregated rows), whose capacities are those of their own pool."""
    frames = []
    if space.disaggregate != "only" or not disaggregates(w, space):
        frames.append(_role_table(w, w.output_tokens, space).assign(role="both", level=-1))
    if disaggregates(w, space):
        for level in range(max(len(decode_budgets(w)), 1)):
            for role in ("prefill", "decode"):
                frames.append(_role_table(role_workload(w, role, level), w.output_tokens, space)
                              .assign(role=role, level=level))
    frames = [f for f in frames if not f.empty]
    return pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()


def _offers(acc, space: ServeSpace, horizon_days: float) -> list[tuple[str, object]]:
    """How a replica of this part can be had: each acquisition in the space with its price (None
    where unpublished), and owned GPUs where the space has some."""
    out = [(q, pricing(acc, q, days=horizon_days)) for q in space.acquisitions]
    return out + [("owned", None)] if acc.id in space.owned else out


def _replica_cost(acc, acquisition: str, price, gpus, horizon_days: float, space: ServeSpace):
    """$/hour of one replica of `gpus` GPUs had this way (NaN where no price is published)."""
    return replica_cost_per_hour(price, acc, gpus, horizon_days, space.amortize, owned=acquisition == "owned")


def pool_floor(w: ServeWorkload, space: ServeSpace) -> tuple[float, str] | None:
    """A lower bound on the hourly cost of any disaggregated fleet, and how it is reached. Each pool
    carries the whole demand D with at least one replica, and no replica type's capacity exceeds the
    top of its capacity search (queueing.load_top; a prefill replica's, its saturation). A pool
    holding a replica of type i (at its cheapest acquisition, c_i) costs at least c_i plus the
    demand left beyond i's top at the least cost per unit of top over every type (_role_types):
    the least of that over i bounds the pool; the bound is the prefill pool's plus the decode
    pool's, at the cheapest split of the TTFT target. No capacity search: step terms and prices
    only. None where no pool replica fits."""
    best = None
    demand = w.demand
    for level in range(max(len(decode_budgets(w)), 1)):
        parts = []
        for role in ("prefill", "decode"):
            wr = role_workload(w, role, level)
            types = _role_types(wr, space)
            if types.empty:
                break
            st = _group_steps(wr, types)
            top = qm.prefill_saturation(st, wr.queue) if role == "prefill" else qm.load_top(st, wr.queue)[0]
            cost = np.full(len(types), np.inf)     # each type's cheapest acquisition, $/replica-hour
            for acc_id, idx in types.groupby("accelerator", sort=True).indices.items():
                acc = catalog.accelerator(acc_id)
                gpus = (types.tp.values[idx] * types.pp.values[idx]).astype(float)
                for q, pr in _offers(acc, space, w.horizon_days):
                    c = np.broadcast_to(np.asarray(_replica_cost(acc, q, pr, gpus, w.horizon_days, space),
                                                   dtype=float), gpus.shape)
                    cost[idx] = np.fmin(cost[idx], np.where(np.isfinite(c), c, np.inf))   # unpriced: NaN
            ok = np.isfinite(cost) & (top > 0)
            if not ok.any():
                break
            # a pool holds some replica i: c_i, plus the demand its top leaves at the least cost per
            # unit of top (rho) -- never below one replica's cost, nor below D x rho
            rho = float((cost[ok] / top[ok]).min())
            parts.append((float((cost[ok] + np.maximum(demand - top[ok], 0.0) * rho).min()), role))
        else:
            total = sum(c for c, _ in parts)
            if best is None or total < best[0]:
                best = (total, " + ".join(f"the {role} pool at least {fmt_usd(c)}/h" for c, role in parts))
    return best


def _role_types(w: ServeWorkload, space: ServeSpace) -> pd.DataFrame:
    """Every replica type (accelerator, precision, TP, PP, slot cap, speculation) that holds the
    model for workload w (aggregated, or one pool's), before any capacity search."""
    headroom = catalog.assumption("memory_headroom") if space.headroom is None else space.headroom
    rows = []
    for acc_id in space.accelerators:
        acc = catalog.accelerator(acc_id)
        if acc.memory_gib is None or acc.memory_bw_gb_s is None:
            continue
        e = serve_efficiency(acc.id)
        for prec in precisions_for(acc, space.precisions):
            kv = kv_for(prec, space.kv_precision)
            for spec in (False, True) if w.draft and w.role == "both" else (False,):
                rows += [(acc.id, acc.vendor, prec, kv, t, p, b, spec)
                         for t, p, b in _replica_types(w, acc, prec, kv, headroom, e, space.max_pp, spec)]
    return pd.DataFrame(rows, columns=["accelerator", "vendor", "precision", "kv_precision", "tp", "pp", "batch",
                                       "speculative"])


_CAPACITY_MEMO: dict[str, pd.DataFrame] = {}


def _capacity_key(w: ServeWorkload, output_tokens: int, space: ServeSpace) -> str:
    """What a replica type's capacity depends on: the workload but its demand (a capacity is per
    replica: the demand sizes the fleet, not the replica; whether it is a closed or an open loop,
    or offline, is kept), the space's parts, precisions and memory
    headroom, and the catalog's figures (those parts' specs and efficiencies, every assumption's
    value in force). Not prices or acquisitions."""
    import hashlib
    import json

    h = hashlib.sha1(w.model_dump_json(exclude={"rate_rps", "users"}).encode())
    h.update(json.dumps([w.demand is None, w.closed, output_tokens, space.accelerators, space.precisions, space.kv_precision,
                         space.headroom, space.max_pp,
                         sorted((k, catalog.assumption(k)) for k in catalog.assumptions())]).encode())
    if w.draft and w.draft not in ("eagle", "ngram"):   # a draft model's own shape
        h.update(catalog.model(w.draft).model_dump_json().encode())
    for acc_id in space.accelerators:
        eff = catalog.efficiency(acc_id)
        h.update(catalog.accelerator(acc_id).model_dump_json().encode())
        h.update(b"-" if eff is None else eff.model_dump_json().encode())
    return h.hexdigest()


def _capacity_table(w: ServeWorkload, output_tokens: int, space: ServeSpace) -> pd.DataFrame:
    """_role_table's replica types with their capacities, before pricing: one capacity search
    per type, remembered for the last few keys (_capacity_key), so that solves that differ only in
    prices or demand (robustness probes, whatif grids over a rate or a price) search once."""
    key = _capacity_key(w, output_tokens, space)
    if key in _CAPACITY_MEMO:
        return _CAPACITY_MEMO[key].copy()
    types = _role_types(w, space)
    if not types.empty:
        s = _group_steps(w, types)
        kind = types.groupby(["accelerator", "precision", "tp", "pp", "speculative"], sort=False).ngroup().values
        keep, cap, light, edge = best_slots(w, s, kind)
        types = types.iloc[keep].reset_index(drop=True)
        s = s.rows(keep)
        fig_thr = (np.where(cap > 0, cap, 0.0) if w.role == "prefill" else
                   qm.chain(s, w.queue, np.where(cap > 0, cap, light_load(w, s))).throughput)
        types["gpus"] = types.tp * types.pp
        types["cap"] = cap
        types["edge"] = edge
        types["thr"] = np.where(cap > 0, fig_thr * output_tokens, 0.0)
        types["step_full"] = qm.full_slot_step(s, w.queue)
        for c, _ in SERVE_TARGETS:
            types[f"miss_{c}"] = ~light[c] if c in light else False
    if len(_CAPACITY_MEMO) >= 16:
        _CAPACITY_MEMO.pop(next(iter(_CAPACITY_MEMO)))
    _CAPACITY_MEMO[key] = types
    return types.copy()


def _role_table(w: ServeWorkload, output_tokens: int, space: ServeSpace) -> pd.DataFrame:
    """replica_table's rows for one workload (aggregated, or one disaggregated pool's);
    output_tokens: those of the requests the fleet serves (for the tokens/s columns)."""
    a = catalog.assumption
    headroom = a("memory_headroom") if space.headroom is None else space.headroom
    types = _capacity_table(w, output_tokens, space)
    if types.empty:
        return types
    # each (accelerator, precision, speculation) group's rows once per acquisition, as numpy
    # columns: one frame at the end (a frame per acquisition cost more than the rows' formulas)
    n = len(types)
    mem_gib, fits, calibrated = np.empty(n), np.empty(n, dtype=bool), np.empty(n, dtype=bool)
    take, acq, provider, cost_ph, power_kw = [], [], [], [], []
    for (acc_id, prec, spec), idx in types.groupby(["accelerator", "precision", "speculative"], sort=False).indices.items():
        acc = catalog.accelerator(acc_id)
        gpus = types.gpus.values[idx]
        mem = np.atleast_1d(replica_memory(w, acc, prec, types.kv_precision.values[idx[0]], types.tp.values[idx],
                                           types.pp.values[idx], types.batch.values[idx], bool(spec)).total)
        mem_gib[idx] = mem / 2**30
        fits[idx] = mem <= acc.memory_gib * 2**30 * (1.0 - headroom)
        eff = catalog.efficiency(acc.id)
        calibrated[idx] = bool(eff and eff.calibrated)
        for q, price in _offers(acc, space, w.horizon_days):
            take.append(idx)
            acq.append(np.full(len(idx), q, dtype=object))
            provider.append(np.full(len(idx), None if price is None or q == "buy" else price.provider, dtype=object))
            cost_ph.append(np.broadcast_to(_replica_cost(acc, q, price, gpus, w.horizon_days, space), (len(idx),)))
            power_kw.append(np.full(len(idx), np.nan) if acc.tdp_w is None else
                            np.broadcast_to(costf.facility_power_kw(gpus, acc.tdp_w, a("pue")), (len(idx),)))
    if not take:
        return pd.DataFrame()
    rows, prov = np.concatenate(take), np.concatenate(provider)
    out = types.iloc[rows].reset_index(drop=True)
    return out.assign(mem_gib=mem_gib[rows], fits=fits[rows], calibrated=calibrated[rows],
                      acquisition=np.concatenate(acq),
                      provider=pd.Series(prov, dtype=object) if any(v is None for v in prov) else prov,
                      cost_ph=np.concatenate(cost_ph).astype(float), power_kw=np.concatenate(power_kw).astype(float))


def missed(df: pd.DataFrame, w: ServeWorkload) -> pd.DataFrame:
    """Per row and target: does the row miss it at every load (at the percentile)?"""
    out = pd.DataFrame(index=df.index)
    for c, f in SERVE_TARGETS:
        out[c] = df[f"miss_{c}"].values.astype(bool) if getattr(w, f) is not None else np.zeros(len(df), dtype=bool)
    return out


def prune(df: pd.DataFrame, w: ServeWorkload) -> pd.DataFrame:
    """Exact reduction: within one (accelerator, acquisition, provider), a replica type is dropped
    when another has no more GPUs, at least the throughput and misses no target it meets (cost
    and power per replica grow with GPUs there). Such a type can be swapped one-for-one in any
    fleet without raising cost, GPUs or power or breaking a limit, so the optimum is kept; ranked
    alternatives differ in (accelerator, acquisition), so they are kept too. With a draft,
    speculative and plain types are pruned apart, so that the fleet without speculation
    (_spec_line) is exact too."""
    if df.empty:
        return df
    miss = missed(df, w).values
    keep = np.ones(len(df), dtype=bool)
    key = df.accelerator + "|" + df.acquisition + "|" + df.provider.fillna("")
    if "role" in df and (df.role != "both").any():   # each pool (and split) apart
        key = key + "|" + df.role + "|" + df.level.astype(str)
    if w.draft:
        key = key + "|" + df.speculative.astype(str)
    for _, idx in df.groupby(key, sort=True).indices.items():
        g, t = df.gpus.values[idx], df.cap.values[idx]
        ms = miss[idx]
        order = np.lexsort((-t, g))  # fewest GPUs, then most throughput first
        kept: list[int] = []
        for j in order:
            if any(g[k] <= g[j] and t[k] >= t[j] and not (ms[k] & ~ms[j]).any() for k in kept):
                keep[idx[j]] = False
            else:
                kept.append(j)
    return df[keep].reset_index(drop=True)


class ServePlan(ServeFigures):
    """A fleet: the `serve --json` plan item. A mixed fleet joins its parts' accelerators and
    acquisitions with '+', takes TP/PP/precision/batch from the part serving the most tokens,
    the worst latency of any part, and lists every part in `parts`."""

    rank: int
    demand_tokens_per_s: float
    disaggregated: bool = False    # separate prefill and decode pools (parts' role)
    horizon_cost_usd: float | None
    vs_best: str
    parts: list[ServePart]
    # the band from the serving model's leave-one-source-out error on published throughput rows
    # (serve_throughput_error_low / _high): if replicas deliver the prediction / (1 + error), the
    # fleet's capacity is that, and the demand needs (1 + error) times the replicas and cost
    tokens_per_s_low: float | None = None
    tokens_per_s_high: float | None = None
    cost_per_hour_usd_low: float | None = None
    cost_per_hour_usd_high: float | None = None
    cost_per_million_tokens_usd_low: float | None = None
    cost_per_million_tokens_usd_high: float | None = None


class Relaxation(BaseModel):
    constraint: str
    given: str
    needed: str
    plan: str


class ServeResult(BaseModel):
    status: str
    objective: str
    solve_seconds: float
    requests_per_s: float | None          # open loop: the rate given; closed loop: what #1 serves
    demand_tokens_per_s: float | None
    users: int | None = None
    think_time_s: float | None = None
    percentile: float = 0.99
    plans: list[ServePlan]
    relaxations: list[Relaxation]
    explanation: list[str]
    notes: list[str]
    candidates: int
    replica_types: int


def _row_masks(df: pd.DataFrame, w: ServeWorkload, limits: ServeLimits) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    miss = missed(df, w)
    for c in TARGETS:
        if getattr(w, f"{c}_s") is not None:
            out[c] = miss[c].values
    for name, col in (("gpus", "accelerator"), ("vendors", "vendor"), ("providers", "provider"),
                      ("acquisitions", "acquisition")):
        allowed = getattr(limits, name)
        if allowed is not None:
            ok = df[col].fillna("").str.lower().isin([v.lower() for v in allowed]).to_numpy(copy=True)
            if name == "providers":
                ok |= df.acquisition.isin(["buy", "owned"]).values
            if name == "acquisitions":
                ok |= df.acquisition.eq("owned").values
            out[name] = ~ok
    return out


def _fleet(limits: ServeLimits) -> dict[str, float]:
    out = {}
    if limits.budget_usd is not None:
        out["budget"] = limits.budget_usd
    if limits.max_gpus is not None:
        out["max_gpus"] = limits.max_gpus
    if limits.power_kw is not None:
        out["power"] = limits.power_kw
    return out


def _rank(df: pd.DataFrame) -> np.ndarray:
    """A fixed order of the rows for the last tie-break: aggregated rows first (so that they keep
    their numbers whether or not the pools' rows are built: plan_serving's aggregated-first pass),
    then lower latency, fewer GPUs, then names."""
    pools = [c for c in ("role", "level") if c in df]
    keys = df[pools + ["step_full", "gpus", "accelerator", "acquisition", "precision", "tp", "pp", "batch"]].copy()
    if "role" in keys:
        keys["role"] = keys.role != "both"
    order = keys.sort_values(list(keys.columns), kind="mergesort").index.values
    rank = np.empty(len(df), dtype=np.int64)
    rank[order] = np.arange(len(df))
    return rank


def _given(w: ServeWorkload, limits: ServeLimits, c: str) -> str:
    if c in TARGETS:
        return f"{getattr(w, f'{c}_s') * 1e3:g} ms"
    if c == "budget":
        return fmt_usd(limits.budget_usd)
    if c == "max_gpus":
        return str(limits.max_gpus)
    if c == "power":
        return f"{limits.power_kw:g} kW"
    return ",".join(getattr(limits, c) or ())


def _describe(df: pd.DataFrame, rows: list[tuple[int, int]], hours: float) -> str:
    parts = []
    for i, r in rows:
        x = df.iloc[i]
        role = "" if "role" not in df or x.role == "both" else f"{x.role} "
        parts.append(f"{r} x {role}{x.accelerator} {x.acquisition} (TP {x.tp}"
                     + (f" x PP {x.pp}" if x.pp > 1 else "") + f", {x.precision}, {x.batch} slots)")
    cost = sum(df.cost_ph.values[i] * r for i, r in rows)
    return " + ".join(parts) + (f": {fmt_usd(cost)}/h ({fmt_usd(cost * hours)} over the horizon)"
                                if not math.isnan(cost) else "")


def _fleet_figures(df: pd.DataFrame, rows: list[tuple[int, int]]) -> dict[str, float]:
    return {
        "cost": sum(df.cost_ph.values[i] * r for i, r in rows),
        "gpus": sum(int(df.gpus.values[i]) * r for i, r in rows),
        "power": sum(df.power_kw.values[i] * r for i, r in rows),
        **({c: max(df[c].values[i] for i, _ in rows) for c in TARGETS} if "ttft" in df else {}),
    }


RELAX = 1.25        # a relaxed latency target starts this far above the floor any replica reaches
RELAX_TRIES = 4


def _round_up(x: float) -> float:
    """x rounded up to two significant figures (a target a person would write)."""
    if x <= 0 or not math.isfinite(x):
        return x
    scale = 10 ** (math.floor(math.log10(x)) - 1)
    return math.ceil(x / scale - 1e-9) * scale


def _relaxed_needed(c: str, to: float, floor: float) -> str:
    name = c.upper() if c != "e2e" else "end-to-end"
    return (f"{name} <= {_ms(to)} ms works (no fleet goes below {_ms(floor)} ms even at light load)")


def _ms(seconds: float) -> str:
    """Seconds as milliseconds to two significant figures (2.3, 45, 1,200)."""
    x = seconds * 1e3
    return f"{x:,.0f}" if x >= 100 else f"{float(f'{x:.2g}'):g}"


def _tables(w: ServeWorkload, limits: ServeLimits, space: ServeSpace) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The replica table (every row, priced or not) and the rows the fleet model is built on:
    priced, with a published TDP under a power limit, exactly pruned."""
    full = replica_table(w, space)
    if full.empty:
        return full, full
    usable = full.cost_ph.notna()
    if limits.power_kw is not None:  # a part without a published TDP cannot be shown to meet a power limit
        usable &= full.power_kw.notna()
    return full, prune(full[usable].reset_index(drop=True), w)


def _needed(c: str, fig: dict, df: pd.DataFrame, rows, hours: float) -> str:
    if c in TARGETS:
        return f"{c.upper() if c != 'e2e' else 'end-to-end'} >= {fig[c] * 1e3:,.1f} ms"
    if c == "budget":
        return f"budget >= {fmt_usd(fig['cost'] * hours)}"
    if c == "max_gpus":
        return f"max GPUs >= {fig['gpus']}"
    if c == "power":
        return f"power >= {math.ceil(fig['power']):,} kW"
    col = {"gpus": "accelerator", "vendors": "vendor", "providers": "provider", "acquisitions": "acquisition"}[c]
    return "allow " + ",".join(sorted({str(df[col].values[i]) for i, _ in rows}))


class _Query:
    """One serving query's model and the helpers that explain it."""

    def __init__(self, df, w: ServeWorkload, limits: ServeLimits, demand: float, space: ServeSpace,
                 time_limit_s: float, full: pd.DataFrame | None = None):
        self.df, self.w, self.limits, self.demand = df, w, limits, demand
        self.space, self.time_limit_s, self.full = space, time_limit_s, full
        self.hours = w.horizon_days * HOURS_PER_DAY
        pools = []
        for acc_id, cap in space.owned.items():
            idx = np.flatnonzero((df.accelerator == acc_id).values & (df.acquisition == "owned").values)
            if len(idx):
                pools.append((idx, cap))
        self.masks = _row_masks(df, w, limits)
        self.fleet = _fleet(limits)
        role = df.role.map({"both": 0, "prefill": 1, "decode": 2}).values if "role" in df else None
        self.pm = ServeModel(df.cap.values, df.gpus.values, df.cost_ph.values, df.power_kw.values, _rank(df),
                             demand, self.masks, self.fleet, self.hours, pools, time_limit_s,
                             role=role, level=df.level.values if "level" in df else None)
        self.enforce = set(self.masks) | set(self.fleet)

    def least_metric(self, c: str, keep: set[str]) -> list[tuple[int, int]] | None:
        """The fleet with the least worst-case `c` (ttft/tpot/e2e) meeting `keep`: bisection on the
        sorted distinct values of the rows, then the cheapest fleet at that bound (the latency
        objective: each row's latencies at its capacity)."""
        vals = np.unique(self.df[c].values)
        lo, hi = 0, len(vals) - 1
        if not self.pm.feasible(keep, self.df[c].values > vals[hi]):
            return None
        while lo < hi:
            mid = (lo + hi) // 2
            if self.pm.feasible(keep, self.df[c].values > vals[mid]):
                hi = mid
            else:
                lo = mid + 1
        return self.pm.solve(keep, exclude=self.df[c].values > vals[lo]).rows

    def minimal_core(self, core: list[str]) -> list[str]:
        none = np.zeros(len(self.df), dtype=bool)
        return deletion_filter(core, lambda keep: not self.pm.feasible(keep, none))

    def best_for(self, c: str | None, keep: set[str]):
        """The fleet that needs least of fleet limit `c` (cost otherwise) meeting `keep`."""
        first = {"budget": "cost", "max_gpus": "gpus", "power": "power"}.get(c, "cost")
        out = self.pm.solve(keep, first=first)
        return (self, out.rows) if out.rows else None

    def relax_targets(self, targets: list[str], keep: set[str]):
        """The cheapest fleet (meeting the limits in `keep`) once each latency target in `targets`
        is relaxed: to RELAX x the least any replica reaches at light load (its floor), then
        doubled until a fleet exists (at most RELAX_TRIES times). Each try is a new replica
        table, since a replica's capacity depends on the targets. Returns (query, rows) with
        query.relaxed_to = {target: (seconds, floor seconds)}, or None."""
        lat = with_latencies(self.full, self.w, light_only=True)
        floors = {c: fleet_floor(lat, c)[0] for c in targets}
        for k in range(RELAX_TRIES):
            to = {c: _round_up(floors[c] * RELAX * 2 ** k) for c in targets}
            w2 = self.w.model_copy(update={f"{c}_s": v for c, v in to.items()})
            full, df = _tables(w2, self.limits, self.space)
            if df.empty:
                continue
            q = _Query(df, w2, self.limits, self.demand, self.space, self.time_limit_s,
                       full[full.cost_ph.notna()].reset_index(drop=True))
            out = q.pm.solve((keep | set(targets)) & q.enforce)   # the relaxed targets held
            if out.rows:
                q.relaxed_to = {c: (to[c], floors[c]) for c in targets}
                return q, out.rows
        return None

    def correction_sets(self) -> list[list[str]]:
        """Minimal correction sets by increasing size: each the fewest limits whose removal makes
        the query feasible, none a superset of another (at most MAX_FIXES; one feasibility solve
        per subset, exact where a maximizing CP-SAT model was slow to prove on knapsack rows)."""
        from itertools import combinations

        limits = sorted(self.enforce)
        found: list[set[str]] = []
        none = np.zeros(len(self.df), dtype=bool)
        for k in range(1, len(limits) + 1):
            for drop in combinations(limits, k):
                d = set(drop)
                if any(f <= d for f in found):
                    continue
                if self.pm.feasible(self.enforce - d, none):
                    found.append(d)
                    if len(found) == MAX_FIXES:
                        return [sorted(f) for f in found]
        return [sorted(f) for f in found]

    def relaxations(self) -> list[Relaxation]:
        out: list[Relaxation] = []
        for mcs in self.correction_sets():
            keep = self.enforce - set(mcs)
            lead = sorted(mcs, key=lambda c: (c not in TARGETS + FLEET_LIMITS, c))
            targets = [c for c in lead if c in TARGETS]
            found = self.relax_targets(targets, keep) if targets else self.best_for(lead[0], keep)
            if not found:
                continue
            q, rows = found
            fig = _fleet_figures(q.df, rows)
            relaxed_to = getattr(q, "relaxed_to", {})
            out.append(Relaxation(constraint=" + ".join(lead),
                                  given="; ".join(_given(self.w, self.limits, c) for c in lead),
                                  needed="; ".join(_relaxed_needed(c, *relaxed_to[c]) if c in relaxed_to else
                                                   _needed(c, fig, q.df, rows, self.hours) for c in lead),
                                  plan=_describe(q.df, rows, self.hours)))
        return out


def fleet_floor(lat: pd.DataFrame, c: str) -> tuple[float, pd.Series | None]:
    """The least latency `c` (ttft, tpot, e2e) any fleet of these rows reaches at light load, and the
    aggregated replica that reaches it (None where a prefill pool plus a decode pool does better: a
    disaggregated fleet's latencies are sums over its pools, and a prefill pool's TPOT alone is 0)."""
    col = f"{c}0"
    if "role" not in lat:
        return float(lat[col].min()), lat.loc[lat[col].idxmin()]
    agg, pre, dec = (lat[lat.role == r] for r in ("both", "prefill", "decode"))
    best = agg.loc[agg[col].idxmin()] if len(agg) else None
    floor = float(best[col]) if best is not None else math.inf
    if len(pre) and len(dec) and float(pre[col].min() + dec[col].min()) < floor:
        return float(pre[col].min() + dec[col].min()), None
    return floor, best


def closest_targets(df_all: pd.DataFrame, w: ServeWorkload) -> list[str]:
    """For each latency target no fleet meets even at light load: the closest any reaches."""
    lines = []
    for c in TARGETS:
        t = getattr(w, f"{c}_s")
        if t is None or df_all.empty:
            continue
        floor, best = fleet_floor(df_all, c)
        if not meets(floor, t):
            name = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "end-to-end latency"}[c]
            how = ("a prefill pool and a decode pool" if best is None else f"{best.accelerator}, TP {best.tp}"
                   + (f" x PP {best.pp}" if best.pp > 1 else "") + f", {best.precision}, {best.batch} slots")
            lines.append(f"{name} <= {t * 1e3:g} ms cannot be met on any accelerator in the space; the closest is "
                         f"{floor * 1e3:,.1f} ms at light load ({how})")
    given = [c for c in TARGETS if getattr(w, f"{c}_s") is not None]
    if lines or len(given) < 2 or df_all.empty:
        return lines
    # each target is met somewhere, never all at once by one aggregated replica (a pool's rows
    # have their own targets): what the types meeting one reach on the others
    agg = df_all[df_all.role == "both"] if "role" in df_all else df_all
    names = {"ttft": "TTFT", "tpot": "TPOT", "e2e": "end-to-end latency"}
    for c in given:
        ok = np.asarray(meets(agg[f"{c}0"].values, getattr(w, f"{c}_s")), dtype=bool)
        for o in given:
            if o == c or not ok.any():
                continue
            best = float(np.min(agg[f"{o}0"].values[ok]))
            if not meets(best, getattr(w, f"{o}_s")):
                lines.append(f"the replicas that meet {names[c]} <= {getattr(w, f'{c}_s') * 1e3:g} ms reach "
                             f"{names[o]} {best * 1e3:,.1f} ms at best at light load (target "
                             f"{getattr(w, f'{o}_s') * 1e3:g} ms)")
    return lines


def share(w: ServeWorkload, cap: float, demand: float, total: float) -> float:
    """The load one replica of capacity `cap` gets when the demand is split in proportion to
    capacity: a whole number of users (at most its capacity) in a closed loop."""
    x = cap * demand / total
    return float(min(math.ceil(x - 1e-9), cap)) if w.closed else x


def _recheck(w: ServeWorkload, df: pd.DataFrame, rows: list[tuple[int, int]], space: ServeSpace,
             limits: ServeLimits, demand: float) -> list[ServePart]:
    """Re-evaluate each part with the one-configuration evaluator at its share of the demand (in
    proportion to capacity, as a load balancer weighted by capacity splits it) and check every
    limit. A disaggregated fleet: each pool (prefill, decode) carries the whole demand, each part
    evaluated with its pool's workload (serving.role_workload)."""
    roles = df.role.values if "role" in df else np.full(len(df), "both")
    totals: dict[str, float] = {}
    for i, r in rows:
        totals[roles[i]] = totals.get(roles[i], 0.0) + float(df.cap.values[i]) * r
    parts = []
    for i, r in rows:
        x = df.iloc[i]
        owned = x.acquisition == "owned"
        role = str(roles[i])
        wr = w if role == "both" else role_workload(w, role, int(x.level))
        layout = ServeLayout(accelerator=x.accelerator, tp=int(x.tp), pp=int(x.pp), precision=x.precision,
                             kv_precision=x.kv_precision, batch=int(x.batch), replicas=int(r),
                             speculative=bool(x.speculative),
                             acquisition="on_demand" if owned else x.acquisition,
                             provider=None if owned or x.acquisition == "buy" else x.provider)
        ev = evaluate_serving(wr, layout, headroom=space.headroom, amortize=space.amortize,
                              owned=int(x.gpus) * int(r) if owned else 0,
                              load=share(w, float(x.cap), demand, totals[role]),
                              edge=float(x.edge) if role == "both" else None)
        check(ev.fits, f"replica does not fit: {ev.accelerator} TP{ev.tp} batch {ev.batch}")
        # a pool's edge is the lesser of two root searches (serving._edges), each to 1e-4 of its
        # bracket: re-evaluated alone, a row may stop a step apart from the table's
        tol = 1e-9 if role == "both" else 2e-4
        check(abs(ev.capacity_per_replica - x.cap) <= tol * x.cap,
              f"capacity {ev.capacity_per_replica} re-evaluated, {x.cap} in the table")
        check(not ev.missed_targets, f"{', '.join(ev.missed_targets)} missed at the part's share of the demand")
        if role == "prefill":   # its tokens are the output tokens of the requests it prefills
            o = w.output_tokens
            served = ev.served_tokens_per_s * o
            ev = ev.model_copy(update=dict(
                tokens_per_s=ev.tokens_per_s * o, tokens_per_s_per_replica=ev.tokens_per_s_per_replica * o,
                served_tokens_per_s=served,
                cost_per_million_tokens_usd=(None if ev.cost_per_hour_usd is None or served <= 0 else
                                             ev.cost_per_hour_usd / (served * 3600.0) * 1e6)))
        parts.append(ev)
    for role, total in totals.items():
        check(total >= demand * (1 - REL_TOL), f"{role} capacity {total} below the demand {demand}")
    check(set(totals) in ({"both"}, {"prefill", "decode"}), f"a fleet of roles {sorted(totals)}")
    hours = w.horizon_days * HOURS_PER_DAY
    if limits.max_gpus is not None:
        check(sum(p.count for p in parts) <= limits.max_gpus, "over the GPU limit")
    if limits.budget_usd is not None:
        check(sum(p.cost_per_hour_usd for p in parts) * hours <= limits.budget_usd * (1 + REL_TOL), "over the budget")
    if limits.power_kw is not None:
        check(all(p.facility_power_kw is not None for p in parts)
              and sum(p.facility_power_kw for p in parts) <= limits.power_kw * (1 + REL_TOL),
              "over the power limit (or no TDP to check it)")
    return parts


def _latencies(parts: list[ServePart]) -> tuple[float, float, float]:
    """A fleet's (TTFT, TPOT, end-to-end) ms at its percentile: the worst part's; a disaggregated
    fleet's TTFT is the worst prefill part's TTFT and hand-off, then the worst decode part's wait and
    first step and hand-off (each at 1 - (1 - p) / 2, so the sum holds at p: role_workload)."""
    if all(p.role == "both" for p in parts):
        return (max(p.ttft_ms for p in parts), max(p.tpot_ms for p in parts), max(p.e2e_ms for p in parts))
    pre = max(p.ttft_ms for p in parts if p.role == "prefill")     # each part's TTFT counts its hand-off
    dec = [p for p in parts if p.role == "decode"]
    return pre + max(p.ttft_ms for p in dec), max(p.tpot_ms for p in dec), pre + max(p.e2e_ms for p in dec)


def _fleet_plan(rank: int, parts: list[ServePart], hours: float, vs_best: str) -> ServePlan:
    pools = [[p for p in parts if p.role == r] for r in ("both", "prefill", "decode")]
    pools = [x for x in pools if x]
    # a disaggregated fleet serves what its smaller pool can; its load is its busier pool's
    capacity = min(sum(p.tokens_per_s for p in x) for x in pools)
    served = min(sum(p.served_tokens_per_s for p in x) for x in pools)
    saturated = min(sum(p.served_tokens_per_s / p.utilization for p in x if p.utilization) for x in pools)
    ttft, tpot, e2e = _latencies(parts)
    main = max(parts, key=lambda p: (p.tokens_per_s, p.count))
    cph = None if any(p.cost_per_hour_usd is None for p in parts) else sum(p.cost_per_hour_usd for p in parts)
    power = None if any(p.facility_power_kw is None for p in parts) else sum(p.facility_power_kw for p in parts)
    join = lambda f: "+".join(dict.fromkeys(getattr(p, f) for p in parts))  # noqa: E731
    per_mtok = None if cph is None or not served else cph / (served * 3600) * 1e6
    return ServePlan(
        rank=rank, accelerator=join("accelerator"), count=sum(p.count for p in parts),
        speculative=any(p.speculative for p in parts),
        replicas=sum(p.replicas for p in parts), tp=main.tp, pp=main.pp, precision=main.precision,
        kv_precision=main.kv_precision, batch=main.batch, ttft_ms=ttft, tpot_ms=tpot, e2e_ms=e2e,
        disaggregated=len(pools) > 1, tokens_per_s=capacity,
        served_tokens_per_s=served, demand_tokens_per_s=served, percentile=main.percentile,
        utilization=served / saturated if saturated else None,
        cost_per_hour_usd=cph, cost_per_million_tokens_usd=per_mtok,
        horizon_cost_usd=None if cph is None else cph * hours, acquisition=join("acquisition"),
        provider=main.provider, memory_gib_per_gpu=max(p.memory_gib_per_gpu for p in parts),
        fits=all(p.fits for p in parts), break_even_utilization=main.break_even_utilization,
        facility_power_kw=power, vs_best=vs_best, parts=parts, **throughput_band(capacity, cph, per_mtok))


def throughput_band(capacity: float, cph: float | None, per_mtok: float | None) -> dict[str, float | None]:
    """The plan's capacity, cost and $/Mtok at the ends of the serving model's throughput band."""
    lo, hi = (catalog.assumption(k) for k in ("serve_throughput_error_low", "serve_throughput_error_high"))
    out: dict[str, float | None] = {"tokens_per_s_low": capacity / (1 + hi), "tokens_per_s_high": capacity / (1 + lo)}
    if cph is not None:
        out |= {"cost_per_hour_usd_low": cph * (1 + lo), "cost_per_hour_usd_high": cph * (1 + hi)}
    if per_mtok is not None:
        out |= {"cost_per_million_tokens_usd_low": per_mtok * (1 + lo),
                "cost_per_million_tokens_usd_high": per_mtok * (1 + hi)}
    return out


NO_FLEET_IN_TIME = ("The solver's time limit ran out before any fleet was found; no fleet is proven to exist "
                    "or not. Raise --time-limit.")


def plan_serving(w: ServeWorkload, limits: ServeLimits, space: ServeSpace, objective: str = "cost", top: int = 5,
                 time_limit_s: float = 10.0, notes: list[str] | None = None, *,
                 explain_infeasible: bool = True) -> ServeResult:
    """The cheapest (or fastest) fleets for w, ranked; explain_infeasible=False skips what an
    infeasible answer explains (its closest targets and relaxations: the aggregated-first pass
    below, whose infeasible answer is not shown)."""
    if objective not in OBJECTIVES:
        raise GpuplanError("objective", objective, f"must be one of {', '.join(OBJECTIVES)}")
    t0 = time.perf_counter()
    notes = list(notes or [])
    demand = w.demand
    if objective == "latency" and space.disaggregate != "off":
        # a pool's row latencies are its share of the fleet's, not a fleet's: aggregated replicas only
        space = replace(space, disaggregate="off")
    if demand is None:
        raise GpuplanError("rate", None, "give the demand: --rate 20rps, or --users N with --think-time")
    if objective == "cost" and space.disaggregate == "auto" and disaggregates(w, space) and not w.draft:
        # aggregated fleets first: when every plan asked for costs less than any disaggregated fleet
        # can (pool_floor), the pools' tables (most of the time: a capacity search per split and
        # role) cannot change the answer and are not built. Not with a draft: the fleet without
        # speculation that the explanation prices (_spec_line) may be a disaggregated one
        floor = pool_floor(w, space)
        if floor is None:   # no pool replica holds the model: the pools would add no row
            space = replace(space, disaggregate="off")
        else:
            try:
                agg = plan_serving(w, limits, replace(space, disaggregate="off"), objective, top, time_limit_s,
                                   notes, explain_infeasible=False)
            except GpuplanError:   # no aggregated replica (pools may still serve): the whole table
                agg = None
            plans = agg.plans if agg is not None else []
            # the solver compares costs rounded up to 1e-4 $/h a replica: the margin covers that
            if (agg is not None and agg.status == "optimal" and len(plans) == top and
                    all(p.cost_per_hour_usd * (1 + 1e-9) + 1e-4 * (1 + sum(pt.replicas for pt in p.parts))
                        < floor[0] for p in plans)):
                dearer = (f" ({floor[0] / plans[0].cost_per_hour_usd - 1:+.0%})"
                          if plans[0].cost_per_hour_usd > 0 else "")
                agg.explanation.append(
                    f"disaggregated prefill/decode does not pay here: any such fleet costs at least "
                    f"{fmt_usd(floor[0])}/h{dearer} ({floor[1]}), more than "
                    f"{'#1' if top == 1 else f'each of the {top} plans'}, so its pools were not sized")
                return agg.model_copy(update={"solve_seconds": time.perf_counter() - t0})
    full, df = _tables(w, limits, space)
    if full.empty and space.disaggregate == "only" and not any(takes_role(catalog.accelerator(a))
                                                               for a in space.accelerators):
        raise GpuplanError("disaggregate", "only", "no accelerator in the search space has an RDMA-class inter-node "
                           f"link (at least {catalog.assumption('disagg_min_link_gb_s'):g} GB/s per GPU) to take a "
                           "prefill or decode role")
    if full.empty:
        raise nothing_to_serve(w, space)
    unpriced = sorted(set(full.accelerator[full.cost_ph.isna()]) - set(full.accelerator[full.cost_ph.notna()]))
    if unpriced:
        notes += prices.unpriced_note(unpriced, "not chosen")
    if limits.power_kw is not None:
        no_tdp = sorted(set(full.accelerator[full.power_kw.isna() & full.cost_ph.notna()]))
        if no_tdp:
            notes.append("no published TDP, so not chosen under a power limit: " + ", ".join(no_tdp))
    if objective == "latency":
        df = with_latencies(df, w)
    if df.empty:
        raise GpuplanError("gpus", ",".join(space.accelerators), "none of these accelerators has a published "
                           "price (cloud or purchase); serving plans are priced per hour")
    q = _Query(df, w, limits, demand, space, time_limit_s, full[full.cost_ph.notna()].reset_index(drop=True))
    hours = q.hours
    plans: list[ServePlan] = []
    relaxations: list[Relaxation] = []
    explanation: list[str] = []
    enforce = set(q.enforce)
    if objective == "latency":
        rows = q.least_metric("e2e", enforce)
        first = q.pm.solve(enforce) if rows is None else None
        status = "infeasible" if rows is None else "optimal"
        bound = None if rows is None else max(df.e2e.values[i] for i, _ in rows)
    else:
        first = q.pm.solve(enforce, want_core=True)
        status, rows, bound = first.status, first.rows, None
    if status == "unknown" and not rows:   # the time limit ran out before any fleet was found
        explanation.append(NO_FLEET_IN_TIME)
    elif status == "infeasible" or not rows:
        status = "infeasible" if status in ("infeasible", "optimal") else status
        core = first.core if first is not None and first.core else sorted(enforce)
        if explain_infeasible:
            core = q.minimal_core(core)
            explanation.append("No fleet meets all limits. Conflicting: " + ", ".join(core) + ".")
            lat = with_latencies(full, w, light_only=True)   # once, for the floors here and the relaxations
            explanation += closest_targets(lat, w)
            q.full = lat[lat.cost_ph.notna()].reset_index(drop=True)
            relaxations = q.relaxations()
    else:
        excluded = np.zeros(len(df), dtype=bool)
        if bound is not None:
            excluded |= df.e2e.values > bound
        best = None
        while rows and len(plans) < top:
            parts = _recheck(w, df, rows, space, limits, demand)
            fig = _fleet_figures(df, rows)
            if best is None:
                best = fig
            fig["e2e"] = _latencies(parts)[2]
            plans.append(_fleet_plan(len(plans) + 1, parts, hours, _versus(fig, best)))
            # the next plan uses none of this one's (accelerator, acquisition) pairs it pays for
            paid = [(df.accelerator.values[i], df.acquisition.values[i]) for i, _ in rows
                    if df.acquisition.values[i] != "owned"] or \
                   [(df.accelerator.values[i], df.acquisition.values[i]) for i, _ in rows]
            for acc_id, acq in paid:
                excluded |= (df.accelerator.values == acc_id) & (df.acquisition.values == acq)
            nxt = q.pm.solve(enforce, exclude=excluded)
            rows = nxt.rows
        if not plans:  # the time limit ran out before any fleet was found
            status = "unknown"
            explanation = [NO_FLEET_IN_TIME]
        else:
            explanation = _explain(q, plans, objective)
            if status == "feasible":
                explanation.insert(1, "Time limit reached: #1 is the best fleet found, not proven optimal.")
    if any("buy" in p.acquisition for p in plans):
        notes.append(("buying is charged its capex share over the useful life (--amortize)" if space.amortize else
                      f"buying is charged the whole purchase within the {w.horizon_days:g}-day horizon "
                      "(--amortize charges only the horizon's share of a "
                      f"{catalog.assumption('useful_life_years'):g}-year life)") + ", plus energy and colocation")
    assumed = sorted({pt.accelerator for p in plans for pt in p.parts if not pt.efficiency_calibrated})
    if assumed:
        notes.append("compute efficiency assumed, not calibrated on a published run, for: " + ", ".join(assumed))
    if any(pt.precision in ("fp8", "int8", "int4") for p in plans for pt in p.parts):
        notes.append("8- and 4-bit plans assume the quantized model meets your quality bar; "
                     "restrict with --precision bf16 if it must not be quantized")
    notes += prices.age_notes(pt for p in plans for pt in p.parts) + catalog.assumption_notes()
    notes.append(queue_note(w))
    served = plans[0].served_tokens_per_s if plans else None
    rps = w.rate_rps if not w.closed else (None if served is None else served / w.output_tokens)
    return ServeResult(status=status, objective=objective, solve_seconds=time.perf_counter() - t0,
                       requests_per_s=rps, demand_tokens_per_s=None if rps is None else rps * w.output_tokens,
                       users=w.users, think_time_s=w.think_time_s if w.closed else None, percentile=w.percentile,
                       plans=plans, relaxations=relaxations,
                       explanation=explanation, notes=notes, candidates=len(full), replica_types=len(df))


def queue_note(w: ServeWorkload) -> str:
    """How the demand and the latency percentiles are modelled, in one line."""
    q = w.queue
    if w.demand is None:
        load = "offline: every slot busy"
    elif w.closed:
        load = (f"{w.users:,} users, each waiting for its answer then thinking {w.think_time_s:g} s on average "
                "(closed loop, users spread over replicas in proportion to capacity)")
    else:
        load = f"Poisson arrivals at {w.rate_rps:g} requests/s (open loop, split over replicas in proportion to capacity)"
    return (f"latencies are p{w.percentile * 100:g} from a queueing model of continuous batching with chunked "
            f"prefill (vLLM V1 scheduler: slot cap = batch, token budget per step"
            + ("; each request's prompt + output KV reserved at admission, TensorRT-LLM's GUARANTEED_NO_EVICT"
               if w.kv_reserve == "full" else "") + f"); {load}; output lengths "
            f"{w.length_dist} with mean {w.output_tokens:,} (p{w.percentile * 100:g}: {q.output_quantile:,.0f}), "
            f"prompts {w.prompt_tokens:,} tokens"
            + (f" ({w.prefix_tokens:,} of them a shared prefix found in the prefix cache by {w.prefix_hit:.0%} of "
               f"requests: {w.prefill_tokens:,.0f} computed per prompt, the prefix's KV held once per replica)"
               if w.prefix_hit > 0 else "")
            + "; each replica loaded to "
            f"{1 - catalog.assumption('serve_capacity_margin'):.0%} of the most load at which the targets hold, the "
            "queue model's error against a step-by-step simulation (docs/SERVING.md)"
            + ("; fixed output lengths in a closed loop: requests admitted together finish and return together, "
               "and with a think time short against a request's own time they can form convoys the model does "
               "not follow (the simulation's p99 TTFT up to 4x the model's, docs/SERVING.md)"
               if w.closed and w.length_dist == "fixed" else ""))


def fleet_summary(p: ServePlan) -> str:
    """A fleet in one line: replicas x accelerator, how they are had, TP/PP, precision, batch, per part."""
    return " + ".join(f"{pt.replicas} x {'' if pt.role == 'both' else pt.role + ' '}{pt.accelerator} {pt.acquisition} (TP {pt.tp}"
                      + (f" x PP {pt.pp}" if pt.pp > 1 else "") + f", {pt.precision}, {pt.batch} slots)"
                      for pt in p.parts)


def _versus(fig: dict, best: dict) -> str:
    if fig is best:
        return "best"
    cost = (f"{fig['cost'] / best['cost'] - 1:+.0%} $" if best["cost"] > 0 else
            "+0% $" if fig["cost"] <= 0 else f"+{fmt_usd(fig['cost'])}/h")   # #1 free (owned, no energy price)
    return f"{cost}, {fig['e2e'] / best['e2e'] - 1:+.0%} e2e"


def _explain(q: _Query, plans: list[ServePlan], objective: str) -> list[str]:
    what = {"cost": "cheapest", "latency": "lowest end-to-end latency (then cheapest)"}[objective]
    lines = [f"#1 is the {what} fleet over {len(q.df):,} non-dominated replica types covering "
             + (f"{q.demand:,.0f} users" if q.w.closed else f"{q.demand:,.2f} requests/s")
             + f" with p{q.w.percentile * 100:g} TTFT / TPOT within the targets."]
    if not plans or objective != "cost":
        return lines
    base = plans[0].cost_per_hour_usd
    for c in sorted(q.enforce):
        alt = q.pm.solve(q.enforce - {c})
        if not alt.rows:
            continue
        fig = _fleet_figures(q.df, alt.rows)
        if fig["cost"] < base * (1 - 1e-9):
            lines.append(f"{c} binds ({_given(q.w, q.limits, c)}): without it, {_describe(q.df, alt.rows, q.hours)}.")
    if len(lines) == 1:
        lines.append("No limit binds: #1 is the cheapest fleet in the search space.")
    if q.w.draft:
        lines.append(_spec_line(q, plans[0]))
    if "role" in q.df and (q.df.role != "both").any():
        lines.append(_disagg_line(q, plans[0]))
    return lines


def _disagg_line(q: _Query, best: ServePlan) -> str:
    """What separate prefill and decode pools are worth here: #1 against the cheapest fleet of the
    other kind (aggregated, or disaggregated)."""
    dis = (q.df.role != "both").values
    if best.disaggregated:
        pre = next(p for p in best.parts if p.role == "prefill")
        dec = next(p for p in best.parts if p.role == "decode")
        what = (f"disaggregated prefill/decode (the prefill pool's TTFT within {pre.ttft_ms:,.0f} ms and the decode "
                f"pool's first token within {dec.ttft_ms:,.0f} ms, each at p{pre.ttft_percentile * 100:g} and "
                f"counting {pre.kv_transfer_ms + dec.kv_transfer_ms:,.1f} ms of KV hand-off)")
        if not (~dis).any():
            return f"{what}: only disaggregated fleets were priced (--disaggregate only)."
        alt = q.pm.solve(q.enforce, exclude=dis)
        if not alt.rows:
            return f"{what} is what makes the targets reachable: no aggregated fleet meets them."
        cost = _fleet_figures(q.df, alt.rows)["cost"]
        return f"{what} saves {1 - best.cost_per_hour_usd / cost:.0%}: aggregated, {_describe(q.df, alt.rows, q.hours)}."
    alt = q.pm.solve(q.enforce, exclude=~dis)
    if not alt.rows:
        return "disaggregated prefill/decode pools cannot meet the targets here (no such fleet does)."
    cost = _fleet_figures(q.df, alt.rows)["cost"]
    return (f"disaggregated prefill/decode does not pay here: the cheapest such fleet costs "
            f"{cost / best.cost_per_hour_usd - 1:+.0%} ({_describe(q.df, alt.rows, q.hours)}).")


def _spec_line(q: _Query, best: ServePlan) -> str:
    """What speculative decoding is worth here: #1 against the cheapest fleet without it."""
    w = q.w
    what = (f"speculative decoding ({w.draft} draft, {w.draft_tokens} tokens drafted, acceptance "
            f"{accept_text(w.draft_accept)}: {w.tokens_per_step:.2f} tokens a step)")
    if not best.speculative:
        return f"{what} does not pay here: the cheapest fleet runs without it."
    alt = q.pm.solve(q.enforce, exclude=q.df.speculative.values.astype(bool))
    if not alt.rows:
        return f"{what} is what makes the targets reachable: no fleet without it meets them."
    cost = _fleet_figures(q.df, alt.rows)["cost"]
    return (f"{what} saves {1 - best.cost_per_hour_usd / cost:.0%}: without it, "
            f"{_describe(q.df, alt.rows, q.hours)}.")
