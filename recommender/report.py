"""Rendering: rich tables for people, JSON and CSV for scripts. No domain logic here."""

from __future__ import annotations

import json
import math
import sys
from typing import TYPE_CHECKING

from rich import box
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from recommender import catalog, money
from recommender.units import fmt_count, fmt_usd

if TYPE_CHECKING:
    import pandas as pd


def console() -> Console:
    return Console(soft_wrap=False, width=max(160, Console().width))


def to_json(obj) -> str:
    """Strict JSON: a figure with no finite value (a latency percentile the queue model says is
    never reached) is null."""
    if hasattr(obj, "model_dump"):
        obj = obj.model_dump(mode="json")
    return json.dumps(_finite(obj), indent=2, sort_keys=False, allow_nan=False)


def _finite(obj):
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: _finite(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_finite(v) for v in obj]
    return obj


UNBOUNDED = "unbounded"   # a latency percentile never reached: the backlog it waits behind grows


def _ms(x: float, digits: int = 0):
    """A latency in ms for a table cell (UNBOUNDED where the model has no finite value)."""
    if not math.isfinite(x):
        return UNBOUNDED
    return round(x) if digits == 0 else round(x, digits)


def _kv_table(title: str, rows: list[tuple[str, str, str]]) -> Table:
    t = Table(title=title, title_justify="left", show_header=False, box=None, pad_edge=False)
    t.add_column(style="bold")
    t.add_column(justify="right")
    t.add_column(style="dim")
    for row in rows:
        t.add_row(*row)
    return t


def _groups(ev) -> int:
    """NCCL communicators the layout opens (tp, pp, dp groups of more than one GPU; EP counted apart)."""
    return sum(x > 1 for x in (ev.tp, ev.pp, ev.dp, ev.cp)) + (ev.ep > 1)


def _gradient_note(ev) -> str:
    parts = ["fp32 accumulation buffer"] if (ev.zero < 3 and ev.precision in ("bf16", "fp8")
                                             and ev.method != "qlora") else []
    from recommender.evaluate import grads_unsharded

    if grads_unsharded(ev.grad_sync, ev.zero, ev.micro_batches, ev.pp):
        parts.append("no_sync: the whole unsharded gradient held until the step's reduce-scatter")
    if ev.method == "lora" and ev.zero == 3:
        trained = ["adapters + the frozen base's (FSDP1 units mix them)"]
    else:
        trained = [] if ev.method == "full" else ["adapters only"]
    return ", ".join(parts + trained)


def activation_note(ev) -> str:
    """Which activation accounting applies: the stage, the schedule, the attention kernel."""
    where = ("the busiest stage, " + ("interleaved" if ev.vp > 1 else "1F1B") + " micro-batches in flight"
             if ev.pp > 1 else "one micro-batch")
    kernel = "eager attention (s^2 scores)" if ev.attention == "eager" else "flash attention"
    kept = ("; + the 4-bit linears' inputs (bitsandbytes keeps them)"
            if ev.method == "qlora" and ev.quant != "torchao-nf4" else "")
    return f"Korthikanti 2022, {kernel}{kept}; {where}"


def render_evaluation(ev) -> None:
    c = console()
    fits = {"fits": "[green]fits[/green]", "tight": "[yellow bold]TIGHT[/yellow bold] (see the note below)"}.get(
        ev.memory_verdict, "[red bold]DOES NOT FIT[/red bold]")
    c.print(f"[bold]{ev.model}[/bold] ({fmt_count(ev.params)} params"
            + (f", {fmt_count(ev.active_params)} active" if ev.active_params != ev.params else "")
            + f") on {ev.count} x {ev.accelerator}: TP {ev.tp} x PP {ev.pp}" + (f" (VP {ev.vp})" if ev.vp > 1 else "")
            + (f" x CP {ev.cp}" if ev.cp > 1 else "") + f" x DP {ev.dp}"
            + (f" (EP {ev.ep}{', overlapped' if ev.ep_overlap else ''})" if ev.ep > 1 else "")
            + f", ZeRO-{ev.zero}, recompute {ev.recompute}, micro-batch {ev.micro_batch}, {ev.precision}, "
            f"{ev.acquisition}")
    if ev.method != "full":
        c.print(f"{method_label(ev)}: {fmt_count(ev.trainable_params)} adapter parameters trained "
                f"({ev.trainable_params / ev.params:.2%}), base frozen"
                + (" in 4-bit NF4" if ev.method == "qlora" else ""))
    mb = ev.memory_breakdown_gib
    c.print(_kv_table(f"\nMemory per GPU: {ev.memory_gib_per_gpu:.1f} GiB of {ev.memory_limit_gib:.1f} "
                      f"usable -> {fits}", [
        ("weights", f"{mb.weights:.2f} GiB", "ZeRO Sec. 3.1" if ev.method == "full" else
         "frozen base" + ({"nf4-dq": " (NF4 + double quantization, QLoRA Sec. 3)",
                           "nf4": " (NF4, an fp32 constant per 64 weights)",
                           "torchao-nf4": " (torchao NF4, double-quantized scalers)"}.get(ev.quant or "", "")) + " + adapters"),
        ("gradients", f"{mb.gradients:.2f} GiB", _gradient_note(ev)),
        ("optimizer", f"{mb.optimizer:.2f} GiB", "32-bit paged AdamW m, v, adapters only" if ev.method == "qlora" else
         "fp32 master + Adam m, v" + ("" if ev.method == "full" else ", adapters only")),
        ("activations", f"{mb.activations:.2f} GiB", activation_note(ev)),
        *([("logits", f"{mb.logits:.2f} GiB", ("fused loss: bf16 logits + bf16 gradient" if ev.loss == "fused" else
                                                "loss: bf16 logits + fp32 copy + fp32 gradient")
            + ", s x b x V/t" + (", the last stage" if ev.pp > 1 else ""))] if mb.logits else []),
        *([("gathered", f"{mb.gathered:.2f} GiB", "ZeRO-3 working set: 2 blocks + root gathered, 1 unit's grads"
            if ev.zero == 3 else "ZeRO-2 gradient bucket (5e8 elements)")] if mb.gathered else []),
        ("framework", f"{mb.framework:.2f} GiB", "CUDA context" + (
            f" + {_groups(ev)} NCCL communicator(s)" if _groups(ev) else "")),
        ("fragmentation", f"{mb.fragmentation:.2f} GiB", "allocator cache, share of what each step frees"),
    ]))
    if mb.optimizer_paged:
        c.print("  paged optimizer (QLoRA): its states move to host memory while the passes run, so the "
                "peak holds the larger of the optimizer and the passes' memory, not both")
    st = ev.step_time_breakdown_s
    c.print(_kv_table("\nCompute and time", [
        ("tokens", fmt_count(ev.tokens), f"seq {ev.seq_len}, batch {ev.global_batch_seqs} seqs, "
                                         f"{ev.micro_batches} micro-batches"),
        ("model FLOPs", f"{ev.total_flops:.3g}", f"6ND = {ev.flops_6nd:.3g}; {ev.pf_days:,.0f} PF-days"),
        ("hardware FLOPs", f"{ev.hardware_flops:.3g}", "with recomputation"
         + ("" if ev.method == "full" else "; no weight gradients for the frozen base (4N + 6A per token)")),
        ("step time", f"{ev.step_time_s:.2f} s", f"compute {st.compute:.2f} + memory {st.memory:.2f} + bubble {st.bubble:.2f} + "
                                                  f"TP {st.tp_comm:.2f} + PP {st.pp_comm:.2f} + DP {st.dp_comm_exposed:.2f}"
                                                  + (f" + EP all-to-all {st.ep_comm:.2f}" if ev.ep > 1 else "")
                                                  + (f" + CP ring {st.cp_comm:.2f}" if ev.cp > 1 else "")),
        ("throughput", f"{ev.tokens_per_s_per_gpu:,.0f} tok/s/GPU", f"{ev.tflops_per_gpu:.0f} model TFLOP/s per GPU"),
        ("MFU", f"{ev.mfu:.1%}", f"HFU {ev.hfu:.1%}; kernel efficiency {ev.efficiency:.2f}"
                                 + ("" if ev.efficiency_calibrated else " (assumed)")),
        ("training time", f"{ev.days:,.1f} days ({ev.days_low:,.1f}-{ev.days_high:,.1f})",
         f"at {ev.goodput:.0%} goodput; {ev.stack} stack"
         + (f"; + {ev.lead_time_days:.0f} days lead time" if ev.lead_time_days else "")),
        ("GPU-hours", f"{ev.gpu_hours:,.0f} ({ev.gpu_hours_low:,.0f}-{ev.gpu_hours_high:,.0f})",
         f"interval: the time model's error band {ev.time_band}"),
    ]))
    cost_rows = []
    if ev.cost_usd is not None:
        cb = ev.cost_breakdown_usd
        where = (f"{ev.provider} at {fmt_usd(ev.price_usd_per_gpu_hour)}/GPU-h"
                 if ev.price_usd_per_gpu_hour is not None else ev.provider or "")
        if ev.price_as_of:
            where += (f" (price as of {ev.price_as_of})" if ev.price_as_of_kind != "read"
                      else f" (price read {ev.price_as_of}, copy undated)")
        cost_rows.append(("cost", f"{fmt_usd(ev.cost_usd)} ({fmt_usd(ev.cost_usd_low)}-{fmt_usd(ev.cost_usd_high)})",
                          where))
        for name in ("rental", "capex", "energy", "operations"):
            if getattr(cb, name):
                cost_rows.append((f"  {name}", fmt_usd(getattr(cb, name)), ""))
    else:
        cost_rows.append(("cost", "n/a", "no published price"))
    if ev.it_power_kw is not None:
        cost_rows.append(("power", f"{ev.it_power_kw:,.1f} kW IT", f"{ev.facility_power_kw:,.1f} kW with PUE; "
                                                                  f"{ev.nodes} nodes"))
    c.print(_kv_table("\nCost and power", cost_rows))
    for w in ev.warnings + [n for n in [money.rate_note()] if n]:
        c.print(f"[yellow]note:[/yellow] {w}")


def method_label(ev) -> str:
    return {"full": "full", "lora": f"LoRA r={ev.lora_rank}", "qlora": f"QLoRA r={ev.lora_rank}"}[ev.method]


def render_frame(df: pd.DataFrame, title: str = "", csv_path: str | None = None,
                 csv_df: pd.DataFrame | None = None) -> None:
    """The table on the console; with csv_path, also as CSV (`csv_df`: plain numbers with units in
    the headers, where the shown table formats them)."""
    import pandas as pd

    if csv_path:
        (df if csv_df is None else csv_df).to_csv(csv_path if csv_path != "-" else sys.stdout, index=False)
        if csv_path == "-":
            return
    t = Table(title=title or None, title_justify="left", box=box.SIMPLE_HEAD, pad_edge=False)
    for col in df.columns:
        t.add_column(str(col), no_wrap=True)
    for row in df.itertuples(index=False):
        t.add_row(*["" if (v is None or (isinstance(v, float) and pd.isna(v))) else
                    (f"{v:g}" if isinstance(v, float) else escape(str(v))) for v in row])
    c = console()
    need = Console(width=4000).measure(t).maximum
    (c if need <= c.width else Console(soft_wrap=False, width=need)).print(t)


def train_frame(result) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for p in result.plans:
        rows.append({
            "#": p.rank, "accelerator": p.accelerator, "GPUs": p.count,
            "TPxPPxDP": f"{p.tp}x{p.pp}x{p.dp}" + (f" v{p.vp}" if p.vp > 1 else "") + (f" ep{p.ep}" if p.ep > 1 else ""),
            "ZeRO": p.zero,
            "recompute": p.recompute, "mb": p.micro_batch, "prec": p.precision,
            "acquisition": (p.acquisition.replace("_", "-") + ("" if p.acquisition in ("buy", "owned")
                                                               else f" {p.provider or '(no price)'}"))
            if not p.owned_gpus
            else p.provider,
            "days": f"{p.total_days:,.1f} ({_low(p):,.0f}-{_high(p):,.0f})",
            "cost": None if p.cost_usd is None else f"{fmt_usd(p.cost_usd)} ({fmt_usd(p.cost_usd_low)}-"
                                                    f"{fmt_usd(p.cost_usd_high)})",
            "MFU": f"{p.mfu:.0%}", "GiB/GPU": round(p.memory_gib_per_gpu, 1),
            "kW": None if p.facility_power_kw is None else round(p.facility_power_kw),
            "vs #1": p.vs_best,
        })
    return pd.DataFrame(rows)


def _low(p) -> float:
    """The plan's total days (lead time + training) at the low end of the time model's band."""
    return p.total_days - p.days + p.days_low


def _high(p) -> float:
    return p.total_days - p.days + p.days_high


def _money_header(name: str) -> str:
    return f"{name}_{money.display().lower()}"


def train_csv(result) -> pd.DataFrame:
    """The ranked plans as plain numbers, units in the headers (money in the display currency)."""
    import pandas as pd

    return pd.DataFrame([{
        "rank": p.rank, "accelerator": p.accelerator, "gpus": p.count, "tp": p.tp, "pp": p.pp, "dp": p.dp,
        "vp": p.vp, "ep": p.ep, "zero": p.zero, "recompute": p.recompute, "micro_batch": p.micro_batch,
        "precision": p.precision, "acquisition": p.acquisition, "provider": p.provider,
        "days": p.total_days, "days_low": _low(p), "days_high": _high(p),
        _money_header("cost"): money.in_display(p.cost_usd), _money_header("cost_low"): money.in_display(p.cost_usd_low),
        _money_header("cost_high"): money.in_display(p.cost_usd_high), "mfu": p.mfu,
        "memory_gib_per_gpu": p.memory_gib_per_gpu, "facility_power_kw": p.facility_power_kw,
        "price_as_of": p.price_as_of, "vs_best": p.vs_best,
    } for p in result.plans])


def serve_csv(result) -> pd.DataFrame:
    """One row per fleet part, plain numbers, units in the headers."""
    import pandas as pd

    rows = []
    for p in result.plans:
        for pt in p.parts:
            rows.append({
                "rank": p.rank, "accelerator": pt.accelerator, "role": pt.role, "gpus": pt.count, "replicas": pt.replicas,
                "tp": pt.tp, "pp": pt.pp, "precision": pt.precision, "speculative": pt.speculative,
                "tokens_per_step": pt.tokens_per_step, "slots": pt.batch,
                "percentile": pt.percentile, "ttft_ms": pt.ttft_ms, "tpot_ms": pt.tpot_ms, "e2e_ms": pt.e2e_ms,
                "served_tokens_per_s": pt.served_tokens_per_s, "capacity_tokens_per_s": pt.tokens_per_s,
                "utilization": pt.utilization,
                _money_header("cost_per_hour"): money.in_display(pt.cost_per_hour_usd),
                _money_header("fleet_cost_per_mtok"): money.in_display(p.cost_per_million_tokens_usd),
                _money_header("fleet_cost_per_mtok_low"): money.in_display(p.cost_per_million_tokens_usd_low),
                _money_header("fleet_cost_per_mtok_high"): money.in_display(p.cost_per_million_tokens_usd_high),
                "acquisition": pt.acquisition, "provider": pt.provider,
                "memory_gib_per_gpu": pt.memory_gib_per_gpu, "price_as_of": pt.price_as_of, "vs_best": p.vs_best,
            })
    return pd.DataFrame(rows)


def evaluation_csv(ev) -> pd.DataFrame:
    """`evaluate --csv`: the whole evaluation as one row of plain numbers (nested breakdowns flattened)."""
    import pandas as pd

    flat = pd.json_normalize(ev.model_dump(mode="json"), sep=".")
    return flat.drop(columns=[c for c in flat.columns if c == "warnings"])


def render_reasons(c: Console, result) -> None:
    """A result's explanation, its ways to feasibility and its notes."""
    for line in result.explanation:
        c.print(line)
    if result.relaxations:
        t = Table(title="Ways to make it feasible (each row alone is enough)", title_justify="left")
        for col in ("constraint", "given", "needed", "plan"):
            t.add_column(col)
        for r in result.relaxations:
            t.add_row(r.constraint, r.given, r.needed, r.plan)
        c.print(t)
    for n in list(result.notes) + [n for n in [money.rate_note()] if n]:
        c.print(f"[yellow]note:[/yellow] {n}")


def render_train(result, csv_path: str | None = None) -> None:
    c = console()
    head = f"status: {result.status}" + ("" if result.status != "feasible" else " (time limit: not proven optimal)")
    c.print(f"[bold]{head}[/bold]; objective {result.objective}; {result.candidates:,} candidates from "
            f"{result.tuples:,} tuples; {result.solve_seconds:.2f} s")
    if result.plans:
        render_frame(train_frame(result), csv_path=csv_path, csv_df=train_csv(result))
    render_reasons(c, result)
    if result.plans:
        p = result.plans[0]
        c.print(f"#1 uses {p.nodes} nodes, {p.it_power_kw or 0:,.0f} kW IT / {p.facility_power_kw or 0:,.0f} kW "
                f"facility; {p.tflops_per_gpu:.0f} TFLOP/s per GPU; {p.tokens:.3g} tokens; "
                f"{p.total_flops:.3g} FLOPs ({p.pf_days:,.0f} PF-days)")


def _pct(x) -> str | None:
    return None if x is None else f"{x:.0%}"


def pct(p) -> str:
    return f"{p.percentile * 100:g}"


def _prec(p) -> str:
    """A serving part's precision, marked +spec where it decodes speculatively."""
    return p.precision + ("+spec" if getattr(p, "speculative", False) else "")


def serve_frame(result) -> pd.DataFrame:
    """One row per plan; a mixed fleet adds one indented row per part."""
    import pandas as pd

    rows = []
    sym = money.symbol()

    def line(rank, p, fleet_cost=True, plan=None):
        acq = p.acquisition.replace("_", "-") + ("" if not p.provider or "buy" in p.acquisition
                                                  or "owned" in p.acquisition else f" {p.provider}")
        role = getattr(p, "role", "both")
        head = plan or p     # a part's columns under its plan's percentile (a pool's share is at its own)
        return {
            "#": rank, "accelerator": p.accelerator, "GPUs": p.count,
            "replicas": f"{p.replicas} x TP{p.tp}" + (f"xPP{p.pp}" if p.pp > 1 else "")
                        + ("" if role == "both" else f" {role}"), "prec": _prec(p),
            "slots": p.batch, f"TTFT p{pct(head)}": _ms(p.ttft_ms),
            f"TPOT p{pct(head)}": "" if role == "prefill" else _ms(p.tpot_ms, 1),
            "tok/s": f"{p.served_tokens_per_s:,.0f}", "load": _pct(p.utilization),
            f"{sym}/h": None if p.cost_per_hour_usd is None else f"{money.in_display(p.cost_per_hour_usd):,.2f}",
            f"{sym}/Mtok": (None if not fleet_cost or p.cost_per_million_tokens_usd is None
                            else f"{money.in_display(p.cost_per_million_tokens_usd):,.3f}"),
            "acquisition": acq, "GiB": round(p.memory_gib_per_gpu, 1),
            "buy b/e": _pct(p.break_even_utilization),
        }

    for p in result.plans:
        row = line(p.rank, p)
        if len(p.parts) > 1:  # the parts' rows below carry the layout
            pools = (f"{sum(pt.replicas for pt in p.parts if pt.role == 'prefill')} prefill + "
                     f"{sum(pt.replicas for pt in p.parts if pt.role == 'decode')} decode" if p.disaggregated else
                     f"{p.replicas} in {len(p.parts)} types")
            row.update({"replicas": pools, "slots": "",
                        "prec": " / ".join(dict.fromkeys(_prec(pt) for pt in p.parts))})
        row["vs #1"] = p.vs_best
        rows.append(row)
        if len(p.parts) > 1:
            for pt in p.parts:
                sub = line("", pt, fleet_cost=False, plan=p)
                sub["accelerator"] = "  " + sub["accelerator"]
                sub["vs #1"] = ""
                rows.append(sub)
    return pd.DataFrame(rows)


def render_serve(result, csv_path: str | None = None) -> None:
    c = console()
    head = f"status: {result.status}" + ("" if result.status != "feasible" else " (time limit: not proven optimal)")
    if result.users is not None:
        demand = (f"{result.users:,} users thinking {result.think_time_s:g} s"
                  + ("" if result.requests_per_s is None else
                     f" = {result.requests_per_s:,.2f} requests/s = {result.demand_tokens_per_s:,.0f} output tokens/s "
                     "served by #1"))
    elif result.requests_per_s is not None:
        demand = f"{result.requests_per_s:,.2f} requests/s = {result.demand_tokens_per_s:,.0f} output tokens/s"
    else:
        demand = "offline"
    pc = f"latencies p{result.percentile * 100:g}"
    if result.objective == "fixed":
        c.print(f"[bold]{head}[/bold]; one fixed configuration; {demand}; {pc}")
    else:
        c.print(f"[bold]{head}[/bold]; objective {result.objective}; demand {demand}; {pc}; "
                f"{result.replica_types:,} replica types from {result.candidates:,}; {result.solve_seconds:.2f} s")
    if result.plans:
        render_frame(serve_frame(result), csv_path=csv_path, csv_df=serve_csv(result))
    render_reasons(c, result)
    if result.plans:
        p = result.plans[0]
        pt = max((x for x in p.parts if x.role != "prefill"), key=lambda x: x.tokens_per_s)
        prompt_ms = max(x.prefill_ms for x in p.parts if x.role == "prefill") if p.disaggregated else pt.prefill_ms
        load = ("" if p.utilization is None else
                f"{p.utilization:.0%} of its saturated throughput in use, {pt.queue_share:.1%} of requests wait for a "
                f"slot; ")
        step = (f"{pt.decode_step_ms:.1f} ms a step with every slot busy" if not pt.speculative else
                f"speculative: {pt.tokens_per_step:.2f} tokens a step, {pt.decode_step_ms * pt.tokens_per_step:.1f} ms "
                f"a step ({pt.decode_step_ms:.1f} ms a token) with every slot busy")
        e2e = f"{p.e2e_ms / 1e3:,.2f} s" if math.isfinite(p.e2e_ms) else UNBOUNDED
        if not math.isfinite(p.ttft_ms):
            if p.utilization is None:
                c.print(f"TTFT p{pct(p)} is unbounded: the demand on each replica is more than it serves with every "
                        "slot busy, so its queue grows without bound; add replicas (or leave --replicas out and "
                        "gpuplan sizes the fleet)")
            else:
                c.print(f"TTFT p{pct(p)} is unbounded: the queue model's prompt backlog or slot queue does not "
                        "settle at this load (docs/SERVING.md); TPOT and throughput stand")
        c.print(f"#1: {load}end-to-end p{pct(p)} {e2e}; decode is {pt.decode_bound}-bound "
                f"({step}, a prompt {prompt_ms:.0f} ms of compute{' in the prefill pool' if p.disaggregated else ''}); "
                f"memory {pt.memory_breakdown_gib.weights:.1f} GiB weights + {pt.memory_breakdown_gib.kv_cache:.1f} GiB "
                f"paged KV cache per GPU (slots up to {pt.max_batch}, token budget {pt.token_budget:,}); "
                + ("" if p.horizon_cost_usd is None else f"{fmt_usd(p.horizon_cost_usd)} over the horizon"))
        if p.cost_per_hour_usd_low is not None:
            lo, hi = p.cost_per_million_tokens_usd_low, p.cost_per_million_tokens_usd_high
            per_mtok = ("" if lo is None or hi is None else
                        f" ({money.symbol()}{money.in_display(lo):.3g}-{money.in_display(hi):.3g}/Mtok)")
            c.print(f"#1 interval: serving this demand costs {fmt_usd(p.cost_per_hour_usd_low)}-"
                    f"{fmt_usd(p.cost_per_hour_usd_high)}/h{per_mtok} if replicas deliver what the model predicts within "
                    "its leave-one-source-out error on published throughput "
                    f"({catalog.assumption('serve_throughput_error_low'):+.0%} to "
                    f"{catalog.assumption('serve_throughput_error_high'):+.0%}, docs/VALIDATION.md)")


def frontier_frame(fr) -> pd.DataFrame:
    import pandas as pd

    rows = []
    base = fr.points[0].cost_usd if fr.points else None
    for pt in fr.points:
        p = pt.plan
        vs = "cheapest" if pt.point == 1 else f"{pt.cost_usd / base - 1:+.0%} cost"
        if fr.kind == "train":
            rows.append({"#": pt.point, "days": round(pt.days, 1), "cost": fmt_usd(pt.cost_usd), "vs #1": vs,
                         "accelerator": p.accelerator, "GPUs": p.count, "TPxPPxDP": f"{p.tp}x{p.pp}x{p.dp}",
                         "acquisition": p.acquisition.replace("_", "-") + (f" {p.provider}" if p.provider and
                                                                           p.acquisition not in ("buy", "owned")
                                                                           else ""),
                         "prec": p.precision})
        else:
            rows.append({"#": pt.point, f"{fr.metric} ms": round(pt.latency_ms, 1),
                         f"{money.symbol()}/h": fmt_usd(pt.cost_per_hour_usd), "horizon": fmt_usd(pt.cost_usd), "vs #1": vs,
                         "GPUs": p.count, "fleet": pt.summary})
    return pd.DataFrame(rows)


METRIC_LABEL = {"days": "days to finish", "e2e": "end-to-end latency (ms)", "ttft": "time to first token (ms)",
                "tpot": "time per output token (ms)"}


def frontier_chart(fr, title: str) -> bytes:
    """The frontier as a PNG (recommender.plot): cost against days or latency."""
    from recommender import plot

    if fr.kind == "train":
        xs, ys = [p.days for p in fr.points], [p.cost_usd for p in fr.points]
        ylabel, fx = "cost of the run", (lambda v: f"{v:g}")
    else:
        xs, ys = [p.latency_ms for p in fr.points], [p.cost_per_hour_usd for p in fr.points]
        ylabel, fx = "cost per hour", (lambda v: f"{v:,.0f}")
    png, _ = plot.frontier_png(xs, ys, METRIC_LABEL[fr.metric], ylabel, title, fx, fmt_usd)
    return png


def frontier_csv(fr) -> pd.DataFrame:
    """The frontier's points as plain numbers, units in the headers (money in the display currency)."""
    import pandas as pd

    rows = []
    base = fr.points[0].cost_usd if fr.points else None
    for pt in fr.points:
        p = pt.plan
        row = {"point": pt.point}
        if fr.kind == "train":
            row.update({"days": pt.days, _money_header("cost"): money.in_display(pt.cost_usd),
                        "cost_vs_first": pt.cost_usd / base - 1, "accelerator": p.accelerator, "gpus": p.count,
                        "tp": p.tp, "pp": p.pp, "dp": p.dp, "acquisition": p.acquisition, "provider": p.provider,
                        "precision": p.precision})
        else:
            row.update({f"{fr.metric}_ms": pt.latency_ms,
                        _money_header("cost_per_hour"): money.in_display(pt.cost_per_hour_usd),
                        _money_header("horizon_cost"): money.in_display(pt.cost_usd),
                        "cost_vs_first": pt.cost_usd / base - 1, "gpus": p.count, "fleet": pt.summary})
        rows.append(row)
    return pd.DataFrame(rows)


def render_frontier(fr, csv_path: str | None = None) -> None:
    c = console()
    what = "cost vs days" if fr.kind == "train" else f"cost vs {fr.metric} latency"
    c.print(f"[bold]status: {fr.status}[/bold]; exact {what} frontier: {len(fr.points)} points, "
            f"{fr.solves} CP-SAT solves over {fr.candidates:,} candidates; {fr.solve_seconds:.2f} s")
    if fr.points:
        render_frame(frontier_frame(fr), csv_path=csv_path, csv_df=frontier_csv(fr))
        c.print("Each point is the least cost at its bound on "
                + ("days" if fr.kind == "train" else f"{fr.metric}") + "; no point is cheaper and faster than another.")
    else:
        c.print("No plan meets the scenario's limits: `gpuplan solve FILE` names the conflict and the fixes.")
    for n in fr.notes:
        c.print(f"[yellow]note:[/yellow] {n}")


def whatif_frame(wi) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r in wi.rows:
        row = {"#": r.scenario}
        for path in wi.varied:
            row[path.split(".")[-1] if not path.startswith("price.") else path] = r.values.get(path, "")
        row["status"] = r.status
        row["best plan"] = r.summary
        if wi.kind == "train":
            row["days"] = None if r.days is None else round(r.days, 1)
            row["cost"] = None if r.cost_usd is None else fmt_usd(r.cost_usd)
        else:
            row["e2e ms"] = None if r.e2e_ms is None else round(r.e2e_ms)
            row[f"{money.symbol()}/h"] = None if r.cost_per_hour_usd is None else fmt_usd(r.cost_per_hour_usd)
        row["vs base"] = r.vs_base
        rows.append(row)
    return pd.DataFrame(rows)


def _varied_columns(path: str) -> tuple[str, object] | None:
    """A varied path whose values are quantities: the CSV column (unit in its name) and the parser
    giving the plain number."""
    from recommender import units

    return {"constraints.budget": (_money_header("budget"), lambda f, v: money.in_display(units.parse_usd(f, v))),
            "constraints.deadline": ("deadline_days", units.parse_days),
            "constraints.compute_budget": ("compute_budget_pf_days", units.parse_pf_days),
            "constraints.power_kw": ("power_kw", units.parse_count),
            "constraints.max_gpus": ("max_gpus", units.parse_count),
            "workload.tokens": ("tokens", units.parse_count),
            "workload.horizon": ("horizon_days", units.parse_days)}.get(path)


def whatif_csv(wi) -> pd.DataFrame:
    """One row per scenario as plain numbers, units in the headers (money in the display currency); a
    varied quantity as its number (budget_usd, deadline_days, ...), other varied settings as given."""
    import pandas as pd

    from recommender.errors import GpuplanError

    rows = []
    for r in wi.rows:
        row = {"scenario": r.scenario}
        for path in wi.varied:
            text = r.values.get(path, "")
            named = _varied_columns(path)
            if named is None:
                row[path] = None if text == "-" else text
                continue
            try:
                row[named[0]] = None if text in ("", "-") else float(named[1](path, text))
            except GpuplanError:
                row[named[0]] = None
        p = r.plan
        row.update({"status": r.status, "best_plan": r.summary,
                    "accelerator": None if p is None else p.accelerator, "gpus": None if p is None else p.count})
        if wi.kind == "train":
            row.update({"days": r.days, _money_header("cost"): money.in_display(r.cost_usd)})
        else:
            row.update({"e2e_ms": r.e2e_ms, _money_header("cost_per_hour"): money.in_display(r.cost_per_hour_usd),
                        _money_header("horizon_cost"): money.in_display(r.cost_usd)})
        row["vs_base"] = r.vs_base
        rows.append(row)
    return pd.DataFrame(rows).astype({"gpus": "Int64"})  # whole numbers, empty where no plan


def render_whatif(wi, csv_path: str | None = None) -> None:
    c = console()
    c.print(f"[bold]{len(wi.rows) - 1} scenarios[/bold] and the base (the file as written; 'vs base' compares "
            f"with it); varied: {', '.join(wi.varied)}; {wi.seconds:.1f} s")
    render_frame(whatif_frame(wi), csv_path=csv_path, csv_df=whatif_csv(wi))


def robust_frame(rb) -> pd.DataFrame:
    import pandas as pd

    rows = []
    for r in rb.rows:
        rows.append({"input": r.what, "as written": r.base, "move": r.direction,
                     "#1 holds to": f"x{r.holds_to:.2f} ({r.holds_to_value})",
                     "changes at": "" if r.breaks_at is None else f"x{r.breaks_at:.2f} ({r.breaks_at_value})",
                     "then #1 is": "(no change in range)" if r.becomes is None else r.becomes,
                     "at": r.becomes_cost or ""})
    return pd.DataFrame(rows)


def render_robust(rb) -> None:
    c = console()
    c.print(f"[bold]Robustness of #1[/bold] ({rb.best}): each input moved alone, x0.5 to x2; "
            f"{rb.solves} solves, {rb.seconds:.1f} s")
    render_frame(robust_frame(rb))
