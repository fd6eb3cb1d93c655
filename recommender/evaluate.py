"""The one-configuration evaluator: applies the formulas to a training job and a layout.

The planner (solver) and `gpuplan evaluate` share this path; every plan the solver returns is
re-checked here.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict

from recommender import catalog
from recommender.errors import GpuplanError
from recommender.formulas import compute, cost, memory, performance
from recommender.formulas.memory import GIB
from recommender.spec import Accelerator, TrainJob, TrainLayout


class MemoryGiB(BaseModel):
    weights: float
    gradients: float
    optimizer: float
    activations: float
    overhead: float


class StepTimeS(BaseModel):
    compute: float
    memory: float
    bubble: float
    tp_comm: float
    pp_comm: float
    dp_comm_exposed: float


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
    accelerator: str
    count: int
    tp: int
    pp: int
    vp: int
    dp: int
    zero: int
    recompute: str
    micro_batch: int
    precision: str
    acquisition: str
    provider: str | None
    price_usd_per_gpu_hour: float | None
    fits: bool
    memory_gib_per_gpu: float
    memory_capacity_gib: float
    memory_limit_gib: float
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
    if m.layers % layout.pp:
        raise GpuplanError("pp", layout.pp, f"must divide the {m.layers} layers of {m.id}")
    if m.layers % (layout.pp * layout.vp):
        raise GpuplanError("vp", layout.vp, f"pp*vp = {layout.pp * layout.vp} must divide the {m.layers} layers of {m.id}")
    if layout.vp > 1 and layout.pp == 1:
        raise GpuplanError("vp", layout.vp, "virtual pipeline stages need pp > 1")
    if acc.peak_tflops(layout.precision) is None:
        have = [p for p in ("bf16", "fp16", "fp8", "fp32") if acc.peak_tflops(p)]
        raise GpuplanError("precision", layout.precision, f"{acc.id} has no published "
                           f"{layout.precision} peak; use one of: {', '.join(have) or 'none'}")
    if acc.memory_gib is None:
        raise GpuplanError("gpu", acc.id, "no published memory capacity; cannot check fit")


def _price(acc: Accelerator, layout: TrainLayout):
    """The cheapest published price of the chosen tier (and provider, if one is named)."""
    if layout.acquisition == "buy":
        return catalog.purchase_for(acc.id)
    rows = [p for p in catalog.prices_for(acc.id) if p.tier == layout.acquisition
            and (layout.provider is None or p.provider.lower() == layout.provider.lower())]
    return min(rows, key=lambda p: (p.price_usd_per_gpu_hour, p.provider)) if rows else None


def evaluate(job: TrainJob, layout: TrainLayout, headroom: float | None = None,
             amortize: bool = True, owned: bool = False, efficiency: float | None = None) -> Evaluation:
    """Memory, time and cost of training `job` with `layout`, with every term explained."""
    acc = catalog.accelerator(layout.accelerator)
    check_layout(job, layout, acc)
    a = catalog.assumption
    headroom = a("memory_headroom") if headroom is None else headroom
    eff_row = catalog.efficiency(acc.id)
    if eff_row is None:
        raise GpuplanError("gpu", acc.id, "no efficiency figure in catalog/efficiency.csv")
    if efficiency is not None:  # calibration sweeps (benchmarks/validate.py) try other values
        eff_row = eff_row.model_copy(update={"matmul_efficiency": efficiency, "calibrated": True})
    m, L = job.model, layout
    warnings: list[str] = []

    # compute
    fpt = compute.flops_per_token(m.matmul_params, m.layers, m.attention_width, job.seq_len, L.recompute)
    total_flops = fpt.model * job.tokens

    # memory
    micro_batches = int(performance.micro_batches_per_step(job.global_batch_seqs, L.dp, L.micro_batch))
    effective_batch = micro_batches * L.dp * L.micro_batch
    if effective_batch != job.global_batch_seqs:
        warnings.append(f"global batch rounded up from {job.global_batch_seqs} to {effective_batch} "
                        f"sequences (= {micro_batches} micro-batches x dp {L.dp} x {L.micro_batch})")
    params_gpu = memory.stage_params(m, L.tp, L.pp)
    states = memory.model_states(params_gpu, L.precision, L.zero, L.dp)
    acts = memory.activation_bytes(m, job.seq_len, L.micro_batch, L.tp, L.pp, L.recompute,
                                   micro_batches, L.precision, L.vp)
    acts += memory.zero3_prefetch_bytes(m, L.tp, L.zero, L.precision)
    overhead = memory.overhead_bytes(states.total + acts, a("framework_overhead_gib"),
                                     a("allocator_fragmentation"))
    mem = memory.MemoryBreakdown(states.weights, states.gradients, states.optimizer, acts, overhead)
    fits = bool(memory.fits(mem.total, acc.memory_gib, headroom))

    # time
    peak = acc.peak_tflops(L.precision)
    gpus_per_node = acc.gpus_per_node or 1
    intra = acc.intra_node_bw_gb_s or acc.inter_node_bw_gb_s
    inter = acc.inter_node_bw_gb_s or intra
    if intra is None:
        raise GpuplanError("gpu", acc.id, "no published interconnect bandwidth; cannot time communication")
    if L.count > 1 and acc.inter_node_bw_gb_s is None and L.count > gpus_per_node:
        warnings.append(f"{acc.id}: no published inter-node bandwidth; intra-node figure used")
    act_bytes = 4.0 if L.precision == "fp32" else 2.0
    st = performance.step_time(
        hardware_flops_per_token=fpt.hardware, seq=job.seq_len, micro_batch=L.micro_batch,
        micro_batches=micro_batches, hidden=m.hidden, layers=m.layers, tp=L.tp, pp=L.pp, dp=L.dp,
        zero=L.zero, vp=L.vp, params_per_gpu=params_gpu, peak_tflops=peak, efficiency=eff_row.matmul_efficiency,
        gpus_per_node=gpus_per_node, intra_gb_s=intra, inter_gb_s=inter,
        comm_efficiency=a("comm_efficiency"), act_bytes=act_bytes,
        grad_bytes=memory.STATE_BYTES[L.precision][1], recompute=L.recompute,
        activation_bytes_per_layer=memory.activation_bytes_per_layer(
            job.seq_len, L.micro_batch, m.hidden, m.heads, memory.mlp_width(m), m.kv_heads,
            m.mlp == "gated", L.tp, "selective"),
        memory_bw_gb_s=acc.memory_bw_gb_s)
    step = st.total
    tokens_per_step = effective_batch * job.seq_len
    tokens_s_gpu = tokens_per_step / step / L.count
    goodput = a("goodput")
    days = job.tokens / (tokens_s_gpu * L.count) / goodput / compute.SECONDS_PER_DAY
    gpu_hours = cost.gpu_hours(L.count, days)
    model_tflops = fpt.model * tokens_s_gpu / 1e12

    # cost and power
    price = _price(acc, L)
    lead = 0.0
    job_cost = None
    price_hour = None
    provider = None
    if L.acquisition == "buy":
        if price is None and not owned:
            warnings.append(f"{acc.id}: no published purchase price; cost not computed")
        elif acc.tdp_w is None:
            warnings.append(f"{acc.id}: no published TDP; energy and so cost not computed")
        else:
            system = 0.0 if price is None else price.price_usd_per_gpu * (
                1.0 if price.basis == "system_per_gpu" else 1.0 + a("server_share_of_gpu_price"))
            lead = 0.0 if owned else (catalog.lead_time_days(acc.id) or 0.0)
            job_cost = cost.buy_cost(L.count, days, system, acc.tdp_w, a("pue"), a("electricity_usd_per_kwh"),
                                     a("colocation_usd_per_kw_month"), a("useful_life_years"),
                                     amortize=amortize, owned=owned)
            provider = "owned" if owned else "purchase"
    elif price is None:
        warnings.append(f"{acc.id}: no published {L.acquisition} cloud price"
                        f"{' from ' + L.provider if L.provider else ''}; cost not computed")
    else:
        job_cost = cost.cloud_cost(L.count, days, price.price_usd_per_gpu_hour)
        price_hour, provider = price.price_usd_per_gpu_hour, price.provider
    if not eff_row.calibrated:
        warnings.append(f"{acc.id}: efficiency {eff_row.matmul_efficiency:.2f} is an assumption "
                        f"({eff_row.basis}), not calibrated on a published run")
    if not fits:
        warnings.append(f"does not fit: {mem.total / GIB:.1f} GiB needed per GPU, "
                        f"{acc.memory_gib * (1 - headroom):.1f} GiB usable "
                        f"({acc.memory_gib:g} GiB less {headroom:.0%} headroom)")

    gib = lambda x: float(x) / GIB  # noqa: E731
    return Evaluation(
        model=m.id, params=m.total_params, active_params=m.active_params,
        accelerator=acc.id, count=L.count, tp=L.tp, pp=L.pp, vp=L.vp, dp=L.dp, zero=L.zero,
        recompute=L.recompute, micro_batch=L.micro_batch, precision=L.precision,
        acquisition=L.acquisition, provider=provider, price_usd_per_gpu_hour=price_hour,
        fits=fits, memory_gib_per_gpu=gib(mem.total), memory_capacity_gib=acc.memory_gib,
        memory_limit_gib=acc.memory_gib * (1 - headroom),
        memory_breakdown_gib=MemoryGiB(weights=gib(mem.weights), gradients=gib(mem.gradients),
                                       optimizer=gib(mem.optimizer), activations=gib(mem.activations),
                                       overhead=gib(mem.overhead)),
        tokens=job.tokens, seq_len=job.seq_len, global_batch_seqs=effective_batch,
        micro_batches=micro_batches, total_flops=total_flops,
        hardware_flops=fpt.hardware * job.tokens, flops_6nd=compute.kaplan_6nd(m.active_params, job.tokens),
        pf_days=compute.pf_days(total_flops), step_time_s=step,
        step_time_breakdown_s=StepTimeS(compute=st.compute, memory=st.memory, bubble=st.bubble, tp_comm=st.tp_comm,
                                        pp_comm=st.pp_comm, dp_comm_exposed=st.dp_comm_exposed),
        bubble_fraction=(L.pp - 1) / (L.vp * micro_batches), days=days, lead_time_days=lead,
        gpu_hours=gpu_hours, mfu=model_tflops / peak, hfu=fpt.hardware * tokens_s_gpu / 1e12 / peak,
        tflops_per_gpu=model_tflops, tokens_per_s_per_gpu=tokens_s_gpu,
        efficiency=eff_row.matmul_efficiency, efficiency_calibrated=eff_row.calibrated, goodput=goodput,
        cost_usd=None if job_cost is None else float(job_cost.total),
        cost_breakdown_usd=None if job_cost is None else CostUSD(
            rental=job_cost.rental, capex=job_cost.capex, energy=job_cost.energy,
            operations=job_cost.operations),
        nodes=-(-L.count // gpus_per_node),
        it_power_kw=None if acc.tdp_w is None else cost.it_power_kw(L.count, acc.tdp_w),
        facility_power_kw=None if acc.tdp_w is None else cost.facility_power_kw(L.count, acc.tdp_w, a("pue")),
        warnings=warnings,
    )
