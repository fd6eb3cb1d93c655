"""The one-configuration evaluator: applies the formulas to a training job and a layout.

The planner (solver) and `gpuplan evaluate` share this path; every plan the solver returns is
re-checked here.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, computed_field

from recommender import catalog
from recommender.errors import GpuplanError
from recommender.formulas import compute, cost, memory, performance
from recommender.formulas.compute import _scalar
from recommender.formulas.memory import GIB
from recommender.spec import Accelerator, TrainJob, TrainLayout


class MemoryGiB(BaseModel):
    weights: float
    gradients: float
    optimizer: float
    activations: float
    logits: float = 0.0
    gathered: float = 0.0
    framework: float = 0.0
    fragmentation: float = 0.0
    optimizer_paged: bool = False  # QLoRA's paged optimizer: the peak holds max(optimizer, passes)

    @computed_field
    @property
    def overhead(self) -> float:
        """Memory outside the model's tensors: framework + fragmentation."""
        return self.framework + self.fragmentation


class StepTimeS(BaseModel):
    compute: float
    memory: float
    bubble: float
    tp_comm: float
    pp_comm: float
    dp_comm_exposed: float
    ep_comm: float
    cp_comm: float = 0.0


class CostUSD(BaseModel):
    rental: float
    capex: float
    energy: float
    operations: float


class Evaluation(BaseModel):
    """A fully evaluated training plan: the `gpuplan evaluate --json` contract."""

    model_config = ConfigDict(extra="forbid")

    model: str
    params: float
    active_params: float
    method: str
    lora_rank: int | None
    trainable_params: float
    accelerator: str
    count: int
    tp: int
    pp: int
    vp: int
    dp: int
    cp: int = 1
    ep: int
    ep_overlap: bool
    zero: int
    recompute: str
    attention: str = "flash"  # the attention kernel memory was counted for (flash | eager)
    loss: str = "standard"  # the loss kernel (standard: fp32 logits | fused)
    grad_sync: str = "micro-batch"  # ZeRO-3 gradient accumulation (micro-batch | step: FSDP's no_sync)
    quant: str | None = None  # QLoRA's 4-bit storage (nf4-dq | nf4); None for other methods
    micro_batch: int
    precision: str
    acquisition: str
    provider: str | None
    price_usd_per_gpu_hour: float | None
    price_as_of: str | None = None    # the date of the price row used (cloud rate or purchase price)
    price_as_of_kind: str | None = None  # "published", or "read" where the copy's own date is unknown
    price_source: str | None = None
    fits: bool
    memory_gib_per_gpu: float
    memory_capacity_gib: float
    memory_limit_gib: float
    # what must be on the device: all but the allocator's cache, which PyTorch gives back before an
    # out-of-memory error; "tight" where the plan does not fit but that much does (memory_verdict)
    memory_required_gib: float
    memory_verdict: Literal["fits", "tight", "does not fit"]
    memory_breakdown_gib: MemoryGiB
    tokens: float
    seq_len: int
    global_batch_seqs: int
    micro_batches: int
    total_flops: float
    hardware_flops: float
    flops_6nd: float
    pf_days: float
    step_time_s: float
    step_time_breakdown_s: StepTimeS
    bubble_fraction: float
    days: float
    lead_time_days: float
    gpu_hours: float
    mfu: float
    hfu: float
    tflops_per_gpu: float
    tokens_per_s_per_gpu: float
    efficiency: float
    efficiency_calibrated: bool
    goodput: float
    cost_usd: float | None
    # the interval: the time model's cross-validated error band (catalog/time_bands.csv)
    days_low: float = 0.0
    days_high: float = 0.0
    gpu_hours_low: float = 0.0
    gpu_hours_high: float = 0.0
    cost_usd_low: float | None = None
    cost_usd_high: float | None = None
    time_band: str = ""
    stack: str = "megatron"  # the training stack the kernels' efficiency is for
    cost_breakdown_usd: CostUSD | None
    nodes: int
    it_power_kw: float | None
    facility_power_kw: float | None
    warnings: list[str]


def check_layout(job: TrainJob, layout: TrainLayout, acc: Accelerator) -> None:
    """Reject layouts the parallelism cannot express, naming the field and the value."""
    m = job.model
    if m.heads % layout.tp:
        raise GpuplanError("tp", layout.tp, f"must divide the {m.heads} attention heads of {m.id}")
    if layout.pp > m.layers:
        raise GpuplanError("pp", layout.pp, f"exceeds the {m.layers} layers of {m.id}")
    if layout.vp > 1 and layout.pp == 1:
        raise GpuplanError("vp", layout.vp, "virtual pipeline stages need pp > 1")
    # each model chunk holds at least one layer, or the embedding or the loss (Megatron-LM's
    # --account-for-embedding/loss-in-pipeline-split: Llama 3.1 405B's 126 layers run as PP 16 x VP 8)
    if layout.pp * layout.vp > m.layers + 2:
        raise GpuplanError("vp", layout.vp, f"pp {layout.pp} x vp {layout.vp} = {layout.pp * layout.vp} model chunks, "
                           f"more than the {m.layers} layers of {m.id} and its embedding and loss can fill")
    if layout.cp > 1 and job.seq_len % (2 * layout.cp):
        raise GpuplanError("cp", layout.cp, f"2*cp = {2 * layout.cp} must divide the sequence length {job.seq_len} "
                                            "(each GPU takes two chunks, to balance the causal mask)")
    if layout.ep > 1:
        if not m.is_moe:
            raise GpuplanError("ep", layout.ep, f"expert parallelism needs a mixture-of-experts model; {m.id} is dense")
        if m.experts % layout.ep:
            raise GpuplanError("ep", layout.ep, f"must divide the {m.experts} experts of {m.id}")
        if layout.dp % layout.ep:
            raise GpuplanError("ep", layout.ep, f"must divide dp ({layout.dp}): expert-parallel ranks are data-parallel ranks")
    if not method_allows(job, layout.precision):
        raise GpuplanError("precision", layout.precision, "QLoRA computes in 16 bits (bf16 or fp16) "
                           "on a 4-bit base")
    if acc.peak_tflops(layout.precision) is None:
        have = [p for p in ("bf16", "fp16", "fp8", "fp32") if acc.peak_tflops(p)]
        raise GpuplanError("precision", layout.precision, f"{acc.id} has no published "
                           f"{layout.precision} peak; use one of: {', '.join(have) or 'none'}")
    if acc.memory_gib is None:
        raise GpuplanError("gpu", acc.id, "no published memory capacity; cannot check fit")


@dataclass(frozen=True)
class Terms:
    """Every intermediate quantity of one layout (or of arrays of layouts: the candidate table)."""

    flops: compute.FlopsPerToken
    micro_batches: object
    effective_batch: object
    memory: memory.MemoryBreakdown
    fits: object
    step: performance.StepTime
    tokens_s_gpu: object
    days: object


def link_rates(acc: Accelerator) -> tuple[float | None, float | None]:
    """(intra-node, inter-node) GB/s, each standing in for the other where only one is published;
    callers keep groups with no published inter-node figure inside one node."""
    intra = acc.intra_node_bw_gb_s or acc.inter_node_bw_gb_s
    return intra, acc.inter_node_bw_gb_s or intra


PRECISIONS = ("bf16", "fp16", "fp8", "fp32")    # training
QLORA_PRECISIONS = ("bf16", "fp16")  # QLoRA dequantizes to 16 bits and computes there


def method_allows(job: TrainJob, precision: str) -> bool:
    return job.method != "qlora" or precision in QLORA_PRECISIONS


def matmul_efficiency(base: float, precision) -> object:
    """The accelerator's calibrated (BF16) matmul efficiency, scaled for FP8 training by the
    measured FP8/BF16 ratio (catalog/assumptions.yaml: fp8_training_efficiency_ratio)."""
    ratio = catalog.assumption("fp8_training_efficiency_ratio")
    return _scalar(base * np.where(np.asarray(precision) == "fp8", ratio, 1.0))


def gemm_half_width(acc: Accelerator, precision: str) -> float:
    """The GEMM dimension at which half the large-GEMM efficiency is reached: a fitted number of
    the accelerator's ridge points (peak FLOP/s over memory bandwidth, FLOP a byte: a faster math
    unit needs larger matrices to stay compute-bound), catalog/assumptions.yaml gemm_half_width."""
    ridge = acc.peak_tflops(precision) * 1e12 / (acc.memory_bw_gb_s * 1e9) if acc.memory_bw_gb_s else 300.0
    return catalog.assumption("gemm_half_width") * ridge


STATE_BYTES_16 = 2.0  # a 16-bit weight or gradient, as FSDP gathers and reduces them
# bits a 4-bit base weight takes: NF4 + its block constants. Double quantization (Dettmers et al.
# 2023, QLoRA Sec. 3): an 8-bit constant per 64 weights and an fp32 one per 256 of those, 0.127
# bits; without it bitsandbytes keeps an fp32 absmax per 64 weights (functional.py quantize_4bit
# @18e827d, bitsandbytes 0.41.1), 0.5 bits; torchao's NF4Tensor double-quantizes its scalers as
# QLoRA does (blocks of 64, scaler blocks of 256)
NF4_BITS = {"nf4-dq": 4.0 + 0.127, "nf4": 4.0 + 32.0 / 64.0, "torchao-nf4": 4.0 + 0.127}


def grads_unsharded(grad_sync: str, zero, micro_batches, pp):
    """Where --grad-sync step (FSDP's no_sync) changes anything: ZeRO-3 gradients accumulated over
    more than one micro-batch, without a pipeline (whose stage holds its gradients unsharded anyway)."""
    return (grad_sync == "step") & (np.asarray(zero) >= 3) & (np.asarray(micro_batches) > 1) & (np.asarray(pp) == 1)


def base_weight_bytes(job: TrainJob, precision: str) -> float:
    """Bytes per frozen base parameter: 16-bit under LoRA (32 under fp32); under QLoRA the blocks'
    linear weights in NF4 and the rest (embeddings, head, norms, routers) in 16 bits, averaged."""
    m, full = job.model, 4.0 if precision == "fp32" else 2.0
    if job.method != "qlora":
        return full
    linear = m.block_linear_params
    return (linear * NF4_BITS[job.quant] / 8 + (m.total_params - linear) * full) / m.total_params


@dataclass(frozen=True)
class Params:
    """Parameters one GPU holds, split the ways memory and communication need: trained vs frozen,
    and routed experts (sharded over ep; synchronised over dp/ep) vs the rest (over dp)."""

    trained: object
    trained_experts: object
    frozen: object
    frozen_experts: object


def gpu_params(job: TrainJob, tp, pp, ep) -> Params:
    m = job.model
    experts = memory.stage_routed_params(m, tp, pp, ep)
    rest = memory.stage_params(m, tp, pp, ep) - experts
    if job.method == "full":
        return Params(rest, experts, 0.0, 0.0)
    # adapters sit on the busiest stage's layers like the weights they adapt
    routed = m.lora_routed_params(job.lora_rank)
    tp, ep = np.asarray(tp), np.asarray(ep)
    adapters_experts = (routed / m.moe_layers * memory.stage_layers(m.moe_layers, pp) / (tp * ep)
                        if m.moe_layers else 0.0)
    adapters = (job.adapter_params - routed) / m.layers * memory.stage_layers(m.layers, pp) / tp
    return Params(_scalar(adapters), _scalar(adapters_experts), rest, experts)


def training_terms(job: TrainJob, acc: Accelerator, precision: str, tp, pp, vp, dp, zero, recompute,
                   micro_batch, efficiency: float, headroom: float, ep=1, ep_overlap=False, cp=1) -> Terms:
    """The formulas applied to a layout: scalars for `evaluate`, equal-shape arrays for the solver.
    `efficiency`: the accelerator's large-GEMM efficiency in 16 bits (catalog/efficiency.csv)."""
    a = catalog.assumption
    m = job.model
    tp, pp, vp, dp, mb, ep, cp = (np.asarray(x) for x in (tp, pp, vp, dp, micro_batch, ep, cp))
    shard = dp * cp  # ZeRO / FSDP shard over the data- and context-parallel ranks (same weights)
    adapters = job.adapter_params_active
    fpt = compute.flops_per_token(m.matmul_params + adapters, m.layers, m.attention_width, job.seq_len, recompute,
                                  weight_grad_params=None if job.method == "full" else adapters)
    micro_batches = performance.micro_batches_per_step(job.global_batch_seqs, dp, mb)
    effective_batch = micro_batches * dp * mb
    p = gpu_params(job, tp, pp, ep)
    fb = base_weight_bytes(job, precision)
    sb = memory.QLORA_ADAPTER_BYTES if job.method == "qlora" else None
    frozen_base = job.method != "full"
    fg = memory.FSDP1_FROZEN_GRAD_BYTES if job.method == "lora" else 0.0
    states = memory.model_states(p.trained, precision, zero, shard, frozen=p.frozen, frozen_bytes=fb,
                                 state_bytes=sb, frozen_grad_bytes=fg)
    expert_states = memory.model_states(p.trained_experts, precision, zero, shard / ep, frozen=p.frozen_experts,
                                        frozen_bytes=fb, state_bytes=sb, frozen_grad_bytes=fg)
    acts = memory.activation_terms(m, job.seq_len, mb, tp, pp, recompute, micro_batches, precision, vp,
                                   job.attention, cp, job.loss,
                                   quantized_base=job.method == "qlora" and job.quant != "torchao-nf4")
    weights = states.weights + expert_states.weights
    grads = states.gradients + expert_states.gradients
    gb = (sb or memory.STATE_BYTES[precision])[1]
    if job.grad_sync == "step":
        # FSDP's no_sync: between the step's reductions every GPU accumulates the whole unsharded
        # gradient of what it holds (PyTorch FSDP docs, no_sync: "full model gradients (instead of
        # gradient shards)"), in 16 bits; with a pipeline the stage's are unsharded anyway (gathered)
        held = (p.trained + p.trained_experts) * gb + (p.frozen + p.frozen_experts) * fg
        grads = np.where(grads_unsharded(job.grad_sync, zero, micro_batches, pp), held, grads)
    optim = states.optimizer + expert_states.optimizer
    gathered = (memory.zero3_working_bytes(m, tp, pp, zero, fb if frozen_base else STATE_BYTES_16,
                                           0.0 if frozen_base else STATE_BYTES_16, ep)
                + memory.zero2_bucket_bytes(p.trained + p.trained_experts, zero,
                                            (sb or memory.STATE_BYTES[precision])[1]))
    framework = memory.framework_bytes(tp, pp, dp, ep, cp, a("cuda_context_gib"), a("nccl_group_gib"),
                                       a("nccl_all_to_all_gib"))
    dynamic = acts.stored + acts.working + acts.logits + gathered
    mem = memory.MemoryBreakdown(weights, grads, optim, acts.stored + acts.working, acts.logits, gathered,
                                 framework, memory.fragmentation_bytes(dynamic, a("training_allocator_fragmentation")),
                                 optimizer_paged=job.method == "qlora")
    # no published link at all: only one GPU is ever timed (Accelerator.span_problem), which moves
    # nothing, so the links are taken as free rather than as a missing number
    intra, inter = (r if r is not None else np.inf for r in link_rates(acc))
    # QLoRA dequantizes each NF4 weight to 16 bits before its matmul: read 4.127 bits, write and
    # read back 2 bytes, once per forward or backward pass (Dettmers et al. 2023, Sec. 3)
    stream = 0.0 if job.method != "qlora" else (p.frozen + p.frozen_experts) * (NF4_BITS[job.quant] / 8 + 4.0)
    attention_precision = "fp32" if precision == "fp32" else ("bf16" if acc.bf16_tflops else precision)
    if job.kernels == "pytorch":  # PyTorch-native kernels reach a fitted share of Megatron / TE's
        efficiency = efficiency * catalog.efficiency(acc.id).pytorch_ratio
    compute_s, attention_s = performance.compute_seconds(
        m, job.seq_len, job.seq_len * mb / cp, tp, pp, ep, recompute, acc.peak_tflops(precision),
        acc.peak_tflops(attention_precision) or acc.peak_tflops(precision), matmul_efficiency(efficiency, precision),
        efficiency * a("attention_efficiency_ratio"), gemm_half_width(acc, precision), frozen_base=frozen_base,
        lora_rank=job.lora_rank if frozen_base else 0)
    sync = performance.sync_bytes(p.trained, zero, gb, p.frozen, fb)
    expert_sync = performance.sync_bytes(p.trained_experts, zero, gb, p.frozen_experts, fb)
    st = performance.step_time(
        compute_s=compute_s, attention_s=attention_s, seq=job.seq_len, micro_batch=mb, micro_batches=micro_batches,
        hidden=m.hidden, layers=m.layers, tp=tp, pp=pp, dp=dp, vp=vp, cp=cp,
        kv_width=m.attention_width * (m.kv_heads or m.heads) / m.heads, zero=zero,
        dp_sync_bytes=sync, expert_sync_bytes=expert_sync,
        # FSDP's no_sync: each micro-batch but the last gathers the weights only (ZeRO-3's sync
        # less the gradients' reduce-scatter)
        gather_bytes=None if job.grad_sync != "step" else (sync - p.trained * gb, expert_sync - p.trained_experts * gb),
        gpus_per_node=acc.domain,
        intra_gb_s=intra, inter_gb_s=inter, comm_efficiency=a("comm_efficiency"),
        act_bytes=4.0 if precision == "fp32" else 2.0,
        recompute=recompute, memory_bw_gb_s=acc.memory_bw_gb_s, weight_stream_bytes=stream,
        activation_bytes_per_layer=memory.activation_bytes_per_layer(
            job.seq_len, mb, m.hidden, m.heads, memory.mlp_width(m), m.kv_heads, m.mlp == "gated", tp, "selective"),
        ep=ep, moe_layers=m.moe_layers, experts_per_token=m.experts_per_token, ep_overlap=ep_overlap,
        dispatch_bytes=1.0 if precision == "fp8" else None, node_limit=m.expert_node_limit)
    count = tp * pp * dp * cp
    tokens_s_gpu = effective_batch * job.seq_len / st.total / count
    days = job.tokens / (tokens_s_gpu * count) / a("goodput") / compute.SECONDS_PER_DAY
    return Terms(fpt, micro_batches, effective_batch, mem,
                 memory.fits(mem.total, acc.memory_gib, headroom), st, tokens_s_gpu, days)


@dataclass(frozen=True)
class Pricing:
    """How GPUs of one accelerator are paid for under one acquisition mode."""

    acquisition: str
    provider: str
    usd_per_gpu_hour: float | None = None   # cloud tiers
    system_usd_per_gpu: float | None = None  # buying: GPU + its share of the server
    lead_time_days: float = 0.0
    row: object = None  # the catalog row the price comes from (its source and as_of)
    term_hours: float = 0.0  # a reserved term is paid whole, however short the job (730 h a month)


HOURS_PER_MONTH = 730.0  # 8,760 h a year / 12: how clouds convert monthly commitments


def pricing_options(acc: Accelerator, acquisition: str, providers: tuple[str, ...] | None = None) -> list[Pricing]:
    """Every way to pay for one acquisition mode: the purchase price; for a cloud tier, the
    cheapest rate per commitment term (a reserved 1-month, 1-year and 3-year rate are different
    offers: which is cheapest depends on how long the GPUs are needed)."""
    if acquisition == "buy":
        if acc.tdp_w is None:
            return []  # energy cannot be costed
        p = catalog.purchase_for(acc.id)
        if p is None:
            return []
        share = 0.0 if p.basis == "system_per_gpu" else catalog.assumption("server_share_of_gpu_price")
        return [Pricing("buy", "purchase", system_usd_per_gpu=p.price_usd_per_gpu * (1 + share),
                        lead_time_days=catalog.lead_time_days(acc.id) or 0.0, row=p)]
    allowed = None if providers is None else {p.lower() for p in providers}
    rows = [p for p in catalog.prices_for(acc.id) if p.tier == acquisition
            and (allowed is None or p.provider.lower() in allowed)]
    best: dict = {}
    for p in sorted(rows, key=lambda p: (p.price_usd_per_gpu_hour, p.provider, p.region)):
        best.setdefault(p.term_months or 0, p)
    return [Pricing(acquisition, p.provider, usd_per_gpu_hour=p.price_usd_per_gpu_hour, row=p,
                    term_hours=(p.term_months or 0) * HOURS_PER_MONTH) for _, p in sorted(best.items())]


def pricing(acc: Accelerator, acquisition: str, providers: tuple[str, ...] | None = None,
            days: float | None = None) -> Pricing | None:
    """The cheapest published way to pay for `days` of GPU time under one acquisition mode (among
    `providers`, if given): a cloud rate, with a reserved term paid whole; or the purchase price
    with its lead time. None where no source gives one. Without `days`, the lowest rate."""
    options = pricing_options(acc, acquisition, providers)
    if not options:
        return None
    if days is None or len(options) == 1:
        return min(options, key=lambda p: (p.usd_per_gpu_hour or 0.0, p.term_hours))
    # the cost formula decides (a term paid whole), as the candidate table's choice does
    return min(options, key=lambda p: (float(job_cost(p, acc, 1, days).total), p.term_hours))


def cheapest_offer(options: list[Pricing | None], acc: Accelerator, count, days, amortize: bool = False,
                   owned=0) -> tuple[np.ndarray, np.ndarray]:
    """Elementwise over (count, days): the cost of the cheapest of `options` (pricing_options' offers
    of one acquisition mode; [None] where none is published) and which offer it is (ties: the
    first, the shorter term). NaN where no offer can be costed. The candidate table and the
    compute objective's re-pricing both choose this way, as pricing() does for one plan."""
    count, days = np.asarray(count), np.asarray(days, dtype=float)
    n = np.broadcast(count, days).shape
    costs = np.vstack([np.asarray(job_cost(p, acc, count, days, amortize, owned).total, dtype=float) * np.ones(n)
                       for p in options]).reshape(len(options), -1)
    pick = np.argmin(np.where(np.isnan(costs), np.inf, costs), axis=0)
    return costs[pick, np.arange(costs.shape[1])], pick


def job_cost(price: Pricing | None, acc: Accelerator, count, days, amortize: bool = False, owned=0):
    """Dollars for `count` GPUs over `days`: `owned` of them cost energy and colocation only, the
    rest are rented or bought at `price`. Elementwise; NaN where a needed figure is unpublished
    (no price for the GPUs beyond those owned, or no TDP to cost energy)."""
    a = catalog.assumption
    count, days = np.asarray(count), np.asarray(days, dtype=float)
    own = np.minimum(count, owned)
    extra = count - own
    zero = np.zeros(np.broadcast(count, days).shape)
    site = (a("pue"), a("electricity_usd_per_kwh"), a("colocation_usd_per_kw_month"), a("useful_life_years"))
    parts = []
    if acc.tdp_w is None:
        parts.append(cost.Cost(energy=np.where(own > 0, np.nan, zero)))
    else:
        parts.append(cost.buy_cost(own, days, 0.0, acc.tdp_w, *site, owned=True))
    if price is None or (price.acquisition == "buy" and acc.tdp_w is None):
        parts.append(cost.Cost(rental=np.where(extra > 0, np.nan, zero)))
    elif price.acquisition == "buy":
        parts.append(cost.buy_cost(extra, days, price.system_usd_per_gpu, acc.tdp_w, *site, amortize=amortize))
    else:
        billed = np.maximum(days, price.term_hours / 24.0)  # a reserved term is paid whole
        parts.append(cost.cloud_cost(extra, billed, price.usd_per_gpu_hour))
    return cost.Cost(*(_scalar(sum(np.asarray(getattr(c, f), dtype=float) for c in parts))
                       for f in ("rental", "capex", "energy", "operations")))


def evaluate(job: TrainJob, layout: TrainLayout, headroom: float | None = None,
             amortize: bool = False, owned: int = 0, efficiency: float | None = None) -> Evaluation:
    """Memory, time and cost of training `job` with `layout`, with every term explained.
    `owned` GPUs of the layout's accelerator cost energy and colocation only."""
    acc = catalog.accelerator(layout.accelerator)
    check_layout(job, layout, acc)
    a = catalog.assumption
    headroom = a("memory_headroom") if headroom is None else headroom
    eff_row = catalog.efficiency_for(acc.id, job.kernels)
    if eff_row is None:
        raise GpuplanError("gpu", acc.id, "no efficiency figure in catalog/efficiency.csv")
    if efficiency is not None:  # calibration sweeps (benchmarks/validate.py) try other values
        eff_row = eff_row.model_copy(update={"matmul_efficiency": efficiency, "calibrated": True})
    problem = acc.span_problem(layout.count)
    if problem:
        raise GpuplanError("count", layout.count, problem)
    m, L = job.model, layout
    warnings: list[str] = []
    eff = float(matmul_efficiency(eff_row.matmul_efficiency, L.precision))
    step_seqs = L.micro_batch * L.dp
    if L.micro_batch > 1 and step_seqs > performance.BATCH_ROUNDING * job.global_batch_seqs:
        raise GpuplanError("micro-batch", L.micro_batch, f"x DP {L.dp} = {step_seqs:,} sequences a step, more than "
                           f"the global batch of {job.global_batch_seqs:,.0f} sequences of {job.seq_len:,} tokens; "
                           "lower --micro-batch or raise --global-batch")
    t = training_terms(job, acc, L.precision, L.tp, L.pp, L.vp, L.dp, L.zero, L.recompute, L.micro_batch,
                       eff_row.matmul_efficiency, headroom, L.ep, L.ep_overlap, L.cp)
    fpt, mem, st = t.flops, t.memory, t.step
    micro_batches, effective_batch = int(t.micro_batches), int(t.effective_batch)
    fits, days, tokens_s_gpu = bool(t.fits), float(t.days), float(t.tokens_s_gpu)
    if effective_batch != job.global_batch_seqs:
        warnings.append(f"global batch rounded up from {job.global_batch_seqs} to {effective_batch} "
                        f"sequences (= {micro_batches} micro-batches x dp {L.dp} x {L.micro_batch})")
    if job.grad_sync == "step" and not grads_unsharded(job.grad_sync, L.zero, micro_batches, L.pp):
        why = ("below ZeRO-3 the gradients are not sharded" if L.zero < 3 else
               "one micro-batch a step accumulates nothing" if micro_batches == 1 else
               "a pipeline's stage holds its gradients unsharded anyway")
        warnings.append(f"--grad-sync step changes nothing here: {why}")
    total_flops = fpt.model * job.tokens
    peak = acc.peak_tflops(L.precision)
    goodput = a("goodput")
    gpu_hours = cost.gpu_hours(L.count, days)
    model_tflops = fpt.model * tokens_s_gpu / 1e12
    # the cross-validated error band of the time model: true days = predicted x (1 + error)
    band = catalog.time_band(acc.id)
    days_low, days_high = days * (1 + band.low), days * (1 + band.high)

    # cost and power
    owned = min(owned, L.count)
    price = pricing(acc, L.acquisition, None if L.provider is None else (L.provider,), days=days)
    job_cost_ = job_cost(price, acc, L.count, days, amortize, owned)
    if np.isnan(job_cost_.total):
        job_cost_ = None
    lead = price.lead_time_days if price is not None and L.count > owned else 0.0
    price_hour = price.usd_per_gpu_hour if price is not None and L.count > owned else None
    provider = "owned" if owned == L.count else (price.provider if price else None)
    if owned:
        provider = f"owned {owned}" + (f" + {L.count - owned} {price.provider}" if owned < L.count and price else "")
    if job_cost_ is not None and price is not None:
        import types

        from recommender import prices

        if L.count > owned:  # the price's date, as every answer gives it (prices.age_notes)
            warnings += prices.age_notes([types.SimpleNamespace(
                accelerator=acc.id, acquisition=L.acquisition, provider=price.provider,
                price_as_of=price.row.as_of.isoformat(), price_as_of_kind=getattr(price.row, "as_of_kind", "published"))])

        if getattr(price.row, "market", "global") == "china" and prices.market() == "global":
            warnings.append(f"{acc.id}: priced from China's market, the only one that sells it "
                            f"(CNY converted at catalog/fx.yaml's rate)")
    warnings += catalog.assumption_notes()
    if job_cost_ is None:
        what = "TDP (for energy)" if acc.tdp_w is None and (owned or L.acquisition == "buy") else (
            f"{L.acquisition} price" + (f" from {L.provider}" if L.provider else ""))
        from recommender import prices

        where = " in the global market (it is priced in China's: --market china)" if (
            prices.market() == "global" and prices.china_only(acc.id)) else ""
        warnings.append(f"{acc.id}: no published {what}{where}; cost not computed")
    if m.layers % L.pp:
        warnings.append(f"pp {L.pp} does not divide the {m.layers} layers: the fullest stage holds "
                        f"{-(-m.layers // L.pp)}, and sets the pace and the memory")
    elif L.vp > 1 and m.layers % (L.pp * L.vp):
        warnings.append(f"pp*vp = {L.pp * L.vp} does not divide the {m.layers} layers: chunks are uneven (Megatron "
                        f"puts fewer layers on the first and last stage); timed and sized at the fullest stage")
    if m.is_moe and L.ep == 1 and L.dp > 1:
        warnings.append(f"ep 1: every GPU holds all {m.experts} experts of each MoE layer; --ep shards them")
    if L.ep_overlap and L.ep == 1:
        warnings.append("--ep-overlap has no effect without expert parallelism (ep 1)")
    if not eff_row.calibrated:
        warnings.append(f"{acc.id}: efficiency {eff_row.matmul_efficiency:.2f} is an assumption "
                        f"({eff_row.basis}), not calibrated on a published run")
    required = mem.total - mem.fragmentation
    verdict = "fits" if fits else ("tight" if required <= acc.memory_gib * GIB else "does not fit")
    if verdict == "tight":
        warnings.append(f"tight: {mem.total / GIB:.1f} GiB per GPU with the allocator's cache, {required / GIB:.1f} "
                        f"without it, against {acc.memory_gib * (1 - headroom):.1f} GiB usable of {acc.memory_gib:g} "
                        f"({headroom:.0%} headroom): it may run, with no margin (PyTorch gives back its cache "
                        "and retries before an out-of-memory error; expandable_segments helps), but gpuplan "
                        "does not plan it")
    elif not fits:
        warnings.append(f"does not fit: {mem.total / GIB:.1f} GiB needed per GPU ({required / GIB:.1f} even "
                        f"without the allocator's cache), {acc.memory_gib * (1 - headroom):.1f} GiB usable "
                        f"({acc.memory_gib:g} GiB less {headroom:.0%} headroom)")

    gib = lambda x: float(x) / GIB  # noqa: E731
    return Evaluation(
        model=m.id, params=m.total_params, active_params=m.active_params, method=job.method,
        lora_rank=None if job.method == "full" else job.lora_rank,
        trainable_params=m.total_params if job.method == "full" else job.adapter_params,
        accelerator=acc.id, count=L.count, tp=L.tp, pp=L.pp, vp=L.vp, dp=L.dp, cp=L.cp, ep=L.ep,
        ep_overlap=L.ep_overlap,
        zero=L.zero,
        recompute=L.recompute, attention=job.attention, loss=job.loss, grad_sync=job.grad_sync,
        quant=job.quant if job.method == "qlora" else None, micro_batch=L.micro_batch, precision=L.precision,
        acquisition=L.acquisition, provider=provider, price_usd_per_gpu_hour=price_hour,
        price_as_of=None if price is None or owned == L.count else price.row.as_of.isoformat(),
        price_as_of_kind=None if price is None or owned == L.count else getattr(price.row, "as_of_kind", "published"),
        price_source=None if price is None or owned == L.count else price.row.source,
        fits=fits, memory_gib_per_gpu=gib(mem.total), memory_capacity_gib=acc.memory_gib,
        memory_limit_gib=acc.memory_gib * (1 - headroom), memory_required_gib=gib(required),
        memory_verdict=verdict,
        memory_breakdown_gib=MemoryGiB(weights=gib(mem.weights), gradients=gib(mem.gradients),
                                       optimizer=gib(mem.optimizer), activations=gib(mem.activations),
                                       logits=gib(mem.logits), gathered=gib(mem.gathered),
                                       framework=gib(mem.framework), fragmentation=gib(mem.fragmentation),
                                       optimizer_paged=mem.optimizer_paged),
        tokens=job.tokens, seq_len=job.seq_len, global_batch_seqs=effective_batch,
        micro_batches=micro_batches, total_flops=total_flops,
        hardware_flops=fpt.hardware * job.tokens, flops_6nd=compute.kaplan_6nd(m.active_params, job.tokens),
        pf_days=compute.pf_days(total_flops), step_time_s=float(st.total),
        step_time_breakdown_s=StepTimeS(compute=st.compute, memory=st.memory, bubble=st.bubble, tp_comm=st.tp_comm,
                                        pp_comm=st.pp_comm, dp_comm_exposed=st.dp_comm_exposed,
                                        ep_comm=st.ep_comm, cp_comm=st.cp_comm),
        bubble_fraction=(L.pp - 1) / (L.vp * micro_batches), days=days, lead_time_days=lead,
        gpu_hours=gpu_hours, mfu=model_tflops / peak, hfu=fpt.hardware * tokens_s_gpu / 1e12 / peak,
        tflops_per_gpu=model_tflops, tokens_per_s_per_gpu=tokens_s_gpu,
        efficiency=eff, efficiency_calibrated=eff_row.calibrated, goodput=goodput,
        cost_usd=None if job_cost_ is None else float(job_cost_.total),
        days_low=days_low, days_high=days_high,
        gpu_hours_low=cost.gpu_hours(L.count, days_low), gpu_hours_high=cost.gpu_hours(L.count, days_high),
        cost_usd_low=None if job_cost_ is None else float(job_cost(price, acc, L.count, days_low, amortize, owned).total),
        cost_usd_high=None if job_cost_ is None else float(job_cost(price, acc, L.count, days_high, amortize, owned).total),
        time_band=f"{band.low:+.0%} to {band.high:+.0%}: {band.family}, {band.basis}"
                  + (f" ({band.rows} published runs)" if band.rows else ""),
        stack=job.kernels,
        cost_breakdown_usd=None if job_cost_ is None else CostUSD(
            rental=job_cost_.rental, capex=job_cost_.capex, energy=job_cost_.energy,
            operations=job_cost_.operations),
        nodes=-(-L.count // acc.node),
        it_power_kw=None if acc.tdp_w is None else cost.it_power_kw(L.count, acc.tdp_w),
        facility_power_kw=None if acc.tdp_w is None else cost.facility_power_kw(L.count, acc.tdp_w, a("pue")),
        warnings=warnings,
    )
