"""Serving: the workload and one replica's configuration, the shared vectorized terms, and the
one-configuration evaluator that `gpuplan serve --gpu ...` and the serving planner's re-check use.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recommender import catalog
from recommender.errors import GpuplanError
from recommender.evaluate import Pricing, job_cost, link_rates, pricing
from recommender.formulas import cost as costf
from recommender.formulas import performance
from recommender.formulas import serving as sv
from recommender.formulas.compute import _scalar
from recommender.formulas.memory import GIB
from recommender.spec import Accelerator, ModelSpec, Strict

HOURS_PER_DAY = 24.0
# batch sizes the planner lists per replica type: a 1-1.5-2 series (1, 2, 3, 4, 6, 8, 12, ...), plus the
# largest that fits and, per latency target, the largest batch meeting it (exact, by bisection)
BATCH_SERIES = sorted({int(round(b * m)) for b in (2 ** k for k in range(0, 15)) for m in (1.0, 1.5)})


class ServeWorkload(Strict):
    """What is served: prompt and output lengths, demand, latency targets, horizon."""

    model: ModelSpec
    prompt_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0)
    rate_rps: float | None = Field(None, gt=0)       # demand in requests/s; None = offline
    users: int | None = Field(None, gt=0)
    think_time_s: float = Field(0.0, ge=0)
    ttft_s: float | None = Field(None, gt=0)
    tpot_s: float | None = Field(None, gt=0)
    e2e_s: float | None = Field(None, gt=0)
    horizon_days: float = Field(365.0, gt=0)

    @model_validator(mode="after")
    def _demand(self) -> "ServeWorkload":
        if self.rate_rps is not None and self.users is not None:
            raise GpuplanError("rate", self.rate_rps, "give either --rate or --users, not both")
        if self.users is not None and self.think_time_s == 0 and self.response_target_s is None:
            raise GpuplanError("users", self.users, "with no think time, give a latency target (--e2e, or "
                               "--ttft and --tpot) so the request rate is bounded: rate = users / (think + latency)")
        return self

    @property
    def response_target_s(self) -> float | None:
        """The end-to-end latency users are promised: --e2e, else TTFT + (O - 1) TPOT targets."""
        if self.e2e_s is not None:
            return self.e2e_s
        if self.ttft_s is not None and self.tpot_s is not None:
            return self.ttft_s + (self.output_tokens - 1) * self.tpot_s
        return None

    @property
    def requests_per_s(self) -> float | None:
        """Demand: given, or users / (think time + promised latency) (response time law)."""
        if self.rate_rps is None and self.users is None:
            return None
        return sv.request_rate(self.users, self.think_time_s, self.response_target_s, self.rate_rps)

    @property
    def output_tokens_per_s(self) -> float | None:
        r = self.requests_per_s
        return None if r is None else r * self.output_tokens

    @property
    def context(self) -> int:
        """Tokens a sequence holds in the KV cache at its end."""
        return self.prompt_tokens + self.output_tokens

    @property
    def mean_decode_context(self) -> float:
        """Context a decode step attends to, averaged over the generation."""
        return self.prompt_tokens + self.output_tokens / 2.0


class ServeLayout(Strict):
    """One replica configuration (and optionally how many replicas and what batch)."""

    accelerator: str
    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    precision: str = "bf16"
    kv_precision: str = "bf16"
    batch: int | None = Field(None, ge=1)      # None: the largest meeting the targets
    replicas: int | None = Field(None, ge=1)   # None: enough for the demand (1 if offline)
    acquisition: str = "on_demand"
    provider: str | None = None

    @model_validator(mode="after")
    def _known(self) -> "ServeLayout":
        for f in ("precision", "kv_precision"):
            if getattr(self, f) not in sv.SERVE_PRECISIONS:
                raise GpuplanError(f.replace("_", "-"), getattr(self, f),
                                   f"must be one of {', '.join(sv.SERVE_PRECISIONS)}")
        return self

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp


@dataclass(frozen=True)
class ServeTerms:
    """Every intermediate quantity of one replica configuration (or arrays of them)."""

    memory: sv.ServeMemory
    fits: object
    decode: sv.PassTime
    prefill: sv.PassTime
    latency: sv.Latency


def bw(acc: Accelerator, span):
    """GB/s a GPU reaches inside a group of `span` GPUs (training's link rule, shared)."""
    intra, inter = link_rates(acc)
    return performance.link_bandwidth(span, acc.domain, intra or 0.0, inter or 0.0) / sv.GB


def serving_terms(w: ServeWorkload, acc: Accelerator, precision: str, kv_precision: str, tp, pp, batch,
                  efficiency: float, headroom: float) -> ServeTerms:
    """The formulas applied to replica configurations: scalars or equal-shape arrays."""
    a = catalog.assumption
    m = w.model
    tp, pp, batch = np.asarray(tp), np.asarray(pp), np.asarray(batch)
    mem = sv.serve_memory(m, precision, kv_precision, batch, w.context, tp, pp, a("framework_overhead_gib"),
                          a("allocator_fragmentation"))
    fits = np.asarray(mem.total) <= acc.memory_gib * GIB * (1.0 - headroom)
    peak = acc.peak_tflops(sv.MATH[precision])
    comm = dict(comm_efficiency=a("comm_efficiency"), allreduce_latency_s=a("allreduce_latency_us") * 1e-6)
    hw = dict(peak_tflops=peak, efficiency=efficiency, memory_bw_gb_s=acc.memory_bw_gb_s,
              bw_efficiency=a("memory_bw_efficiency"), tp_bw_gb_s=np.maximum(bw(acc, tp), 1e-9),
              pp_bw_gb_s=np.maximum(bw(acc, tp * pp), 1e-9))
    dec = sv.decode_stage_time(m, precision, kv_precision, batch, w.mean_decode_context, tp, pp, **hw, **comm,
                               layer_overhead_s=a("decode_layer_overhead_us") * 1e-6)
    pre = sv.prefill_time(m, precision, w.prompt_tokens, tp, pp, **hw, **comm)
    lat = sv.latency(dec.total, pre.total, batch, pp, w.output_tokens)
    return ServeTerms(mem, _scalar(fits), dec, pre, lat)


def replica_cost_per_hour(price: Pricing | None, acc: Accelerator, gpus, horizon_days: float,
                          amortize: bool = False, owned: bool = False):
    """$/hour of one replica over the horizon: rental, or capex (whole, or its share of the useful
    life with --amortize) + energy + colocation spread over the horizon; owned GPUs cost energy and
    colocation only. NaN where a needed figure is unpublished."""
    gpus = np.asarray(gpus)
    total = job_cost(None if owned else price, acc, gpus, horizon_days, amortize=amortize,
                     owned=gpus if owned else 0)
    return _scalar(np.asarray(total.total, dtype=float) / (horizon_days * HOURS_PER_DAY))


def break_even_utilization(acc: Accelerator, horizon_days: float, amortize: bool = False) -> float | None:
    """The share of the horizon a GPU must be busy for buying it to cost less than renting it
    on demand only while busy: (buy cost per GPU over the horizon) / (on-demand $/h x hours).
    Above 1: renting is cheaper even at 100% use."""
    buy = pricing(acc, "buy")
    cloud = pricing(acc, "on_demand")
    if buy is None or cloud is None:
        return None
    total = job_cost(buy, acc, 1, horizon_days, amortize=amortize).total
    return float(total / (cloud.usd_per_gpu_hour * horizon_days * HOURS_PER_DAY))


class ServeMemoryGiB(BaseModel):
    weights: float
    kv_cache: float
    activations: float
    overhead: float


class ServeFigures(BaseModel):
    """What a serving plan and each of its parts report (the `serve --json` fields)."""

    model_config = ConfigDict(extra="forbid")

    accelerator: str
    count: int
    replicas: int
    tp: int
    pp: int
    precision: str
    kv_precision: str
    batch: int
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    tokens_per_s: float
    cost_per_hour_usd: float | None
    cost_per_million_tokens_usd: float | None
    acquisition: str
    provider: str | None
    memory_gib_per_gpu: float
    fits: bool
    break_even_utilization: float | None
    facility_power_kw: float | None


class ServePart(ServeFigures):
    """One homogeneous group of replicas, fully evaluated."""

    tokens_per_s_per_replica: float
    requests_per_s: float
    price_usd_per_gpu_hour: float | None
    price_as_of: str | None = None
    price_as_of_kind: str | None = None
    price_source: str | None = None
    memory_capacity_gib: float
    memory_limit_gib: float
    memory_breakdown_gib: ServeMemoryGiB
    max_batch: int
    decode_bound: str
    decode_step_ms: float
    prefill_ms: float
    efficiency: float
    efficiency_calibrated: bool
    meets_targets: bool
    missed_targets: list[str]


def check_serve_layout(w: ServeWorkload, layout: ServeLayout, acc: Accelerator) -> None:
    m = w.model
    if m.heads % layout.tp:
        raise GpuplanError("tp", layout.tp, f"must divide the {m.heads} attention heads of {m.id}")
    if layout.pp > m.layers:
        raise GpuplanError("pp", layout.pp, f"must be at most the {m.layers} layers of {m.id}")
    if acc.memory_gib is None or acc.memory_bw_gb_s is None:
        raise GpuplanError("gpu", acc.id, "no published memory capacity or bandwidth; cannot model serving")
    if layout.precision == "bf16" and acc.fp16_only:
        raise GpuplanError("precision", "bf16", f"{acc.id} has no bf16; use fp16")
    if acc.peak_tflops(sv.MATH[layout.precision]) is None:
        have = [p for p in sv.SERVE_PRECISIONS if acc.peak_tflops(sv.MATH[p]) and not (p == "bf16" and acc.fp16_only)]
        raise GpuplanError("precision", layout.precision, f"{acc.id} has no published {sv.MATH[layout.precision]} "
                           f"peak; use one of: {', '.join(have) or 'none'}")
    span = layout.tp * layout.pp
    if layout.tp > acc.domain:
        raise GpuplanError("tp", layout.tp, f"tensor parallelism stays inside the scale-up domain ({acc.domain} "
                           f"{acc.id})")
    problem = acc.span_problem(span)
    if problem:
        raise GpuplanError("pp" if layout.pp > 1 else "tp", layout.pp if layout.pp > 1 else layout.tp, problem)


TARGETS = (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("e2e", "e2e_s"))


def meets(value, target):
    """A latency meets its target (None: no target); elementwise."""
    return True if target is None else np.asarray(value) <= target * (1 + 1e-12)


def targets_missed(w: ServeWorkload, ttft, tpot, e2e) -> list[str]:
    values = {"ttft": ttft, "tpot": tpot, "e2e": e2e}
    return [name for name, f in TARGETS if not meets(values[name], getattr(w, f))]


def target_edges(w: ServeWorkload, acc: Accelerator, precision: str, kv_precision: str, tp, pp, bmax,
                 efficiency: float, headroom: float) -> dict[str, np.ndarray]:
    """For each latency target: the largest batch in [1, bmax] meeting it (0 if batch 1 misses).

    TTFT, TPOT and end-to-end latency all grow with the batch (every decode term is non-decreasing
    in it), so the set of batches meeting a target is [1, edge] and bisection finds the edge
    exactly; tests/test_serving.py checks the monotonicity."""
    tp, pp, bmax = np.broadcast_arrays(np.asarray(tp), np.asarray(pp), np.asarray(bmax))
    out = {}
    for name, f in TARGETS:
        t = getattr(w, f)
        if t is None:
            continue
        lo, hi = np.zeros(bmax.shape, dtype=np.int64), bmax.astype(np.int64).copy()
        while np.any(lo < hi):
            mid = np.maximum((lo + hi + 1) // 2, 1)
            lat = serving_terms(w, acc, precision, kv_precision, tp, pp, mid, efficiency, headroom).latency
            ok = meets(getattr(lat, name), t)
            open_ = lo < hi
            lo = np.where(open_ & ok, mid, lo)
            hi = np.where(open_ & ~ok, mid - 1, hi)
        out[name] = lo
    return out


def largest_fitting_batch(w: ServeWorkload, acc: Accelerator, precision: str, kv_precision: str, tp, pp,
                          headroom: float):
    """The largest batch whose memory fits on `acc` (0: not even the weights)."""
    a = catalog.assumption
    return sv.max_batch(w.model, precision, kv_precision, w.context, tp, pp, acc.memory_gib, headroom,
                        a("framework_overhead_gib"), a("allocator_fragmentation"))


def evaluate_serving(w: ServeWorkload, layout: ServeLayout, headroom: float | None = None, amortize: bool = False,
                     owned: int = 0, efficiency: float | None = None) -> ServePart:
    """Memory, latency, throughput and cost of `layout` serving `w`.

    batch None: the largest batch meeting every latency target (with no target, the largest that
    fits: throughput never falls as the batch grows, so that is the offline maximum). replicas None:
    enough for the demand (1 when there is none). `owned` GPUs of this accelerator cost energy and
    colocation only (whole replicas).
    """
    acc = catalog.accelerator(layout.accelerator)
    check_serve_layout(w, layout, acc)
    a = catalog.assumption
    headroom = a("memory_headroom") if headroom is None else headroom
    eff = catalog.efficiency(acc.id)
    e = efficiency if efficiency is not None else (eff.matmul_efficiency if eff else 0.5)
    bmax = int(largest_fitting_batch(w, acc, layout.precision, layout.kv_precision, layout.tp, layout.pp, headroom))
    if layout.batch is not None:
        batch = layout.batch
    else:
        # the largest batch meeting every target (throughput grows with the batch); offline: the
        # largest that fits
        edges = target_edges(w, acc, layout.precision, layout.kv_precision, layout.tp, layout.pp, bmax, e, headroom)
        batch = int(min([bmax] + [int(v) for v in edges.values()]))
        batch = max(batch, 1)
    t = serving_terms(w, acc, layout.precision, layout.kv_precision, layout.tp, layout.pp, batch, e, headroom)
    lat, mem = t.latency, t.memory
    missed = targets_missed(w, lat.ttft, lat.tpot, lat.e2e)
    per_replica = float(lat.tokens_per_s)
    demand = w.output_tokens_per_s
    replicas = layout.replicas or (1 if demand is None else max(1, math.ceil(demand / per_replica - 1e-12)))
    gpus = replicas * layout.gpus_per_replica
    acq = layout.acquisition
    own = min(gpus, owned) // layout.gpus_per_replica * layout.gpus_per_replica
    price = (pricing(acc, acq, None if layout.provider is None else (layout.provider,), days=w.horizon_days)
             if acq != "owned" else None)
    if acq != "owned" and layout.provider is not None and price is None:
        raise GpuplanError("provider", layout.provider, f"no {acq} price for {acc.id} from this provider")
    cph = float(replica_cost_per_hour(price, acc, gpus - own, w.horizon_days, amortize)
                + replica_cost_per_hour(None, acc, own, w.horizon_days, owned=True))
    cph = None if math.isnan(cph) else cph
    capacity = per_replica * replicas
    served = capacity if demand is None else min(demand, capacity)
    power = None if acc.tdp_w is None else float(costf.facility_power_kw(gpus, acc.tdp_w, a("pue")))
    dec = t.decode
    return ServePart(
        accelerator=acc.id, count=gpus, replicas=replicas, tp=layout.tp, pp=layout.pp,
        precision=layout.precision, kv_precision=layout.kv_precision, batch=batch,
        ttft_ms=float(lat.ttft) * 1e3, tpot_ms=float(lat.tpot) * 1e3, e2e_ms=float(lat.e2e) * 1e3,
        tokens_per_s=capacity, tokens_per_s_per_replica=per_replica,
        requests_per_s=capacity / w.output_tokens,
        cost_per_hour_usd=cph,
        cost_per_million_tokens_usd=None if cph is None else cph / (served * 3600.0) * 1e6,
        acquisition="owned" if own == gpus and own else acq,
        provider=None if acq in ("buy", "owned") or price is None else price.provider,
        price_usd_per_gpu_hour=None if price is None else price.usd_per_gpu_hour,
        price_as_of=None if price is None else price.row.as_of.isoformat(),
        price_as_of_kind=None if price is None else getattr(price.row, "as_of_kind", "published"),
        price_source=None if price is None else price.row.source,
        memory_gib_per_gpu=float(mem.total) / GIB, memory_capacity_gib=acc.memory_gib,
        memory_limit_gib=acc.memory_gib * (1 - headroom),
        memory_breakdown_gib=ServeMemoryGiB(weights=float(mem.weights) / GIB, kv_cache=float(mem.kv_cache) / GIB,
                                            activations=float(mem.activations) / GIB,
                                            overhead=float(mem.overhead) / GIB),
        max_batch=bmax, fits=bool(t.fits),
        decode_bound="memory" if float(dec.memory) >= float(dec.compute) else "compute",
        decode_step_ms=float(dec.total) * 1e3, prefill_ms=float(t.prefill.total) * 1e3,
        break_even_utilization=break_even_utilization(acc, w.horizon_days, amortize),
        facility_power_kw=power, efficiency=e, efficiency_calibrated=bool(eff and eff.calibrated),
        meets_targets=not missed and bool(t.fits), missed_targets=missed,
    )
