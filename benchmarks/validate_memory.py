"""Training memory: gpuplan's prediction against published peak memory (benchmarks/memory_runs.yaml).

Each row is re-evaluated with its published layout through `recommender.evaluate` (the planner's
own memory function) and compared like for like with what the source measured:

- allocated / active (torch max_memory_allocated, active_bytes peak): the prediction without the
  CUDA context, NCCL buffers and allocator fragmentation;
- reserved (max_memory_reserved): the prediction without the CUDA context and NCCL buffers;
- device (nvidia-smi, a screenshot of device usage): the whole prediction;
- states (DeepSpeed's estimator): weights + gradients + optimizer only.

Rows whose run used a memory feature gpuplan does not model (torch.compile's fusion, optimizer
steps fused into the backward pass, activation or CPU offloading, chunked cross-entropy, 8-bit
optimizers, context parallelism, LoRA on only some layers is modelled as all layers) are scored
apart: they are listed, not hidden, but kept out of the headline figures. OOM rows check that the
prediction also exceeds the device.

    python benchmarks/validate_memory.py            # table and summary on stdout
    python benchmarks/validate_memory.py --write    # also rewrites the table in docs/VALIDATION.md
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import published_runs as pr  # noqa: E402

from recommender import catalog  # noqa: E402
from recommender.evaluate import evaluate  # noqa: E402
from recommender.spec import ModelSpec, TrainJob, TrainLayout  # noqa: E402

ROWS = ROOT / "benchmarks" / "memory_runs.yaml"
GIB = 2**30
# architectures published only as a shape: what the shape leaves out, from each model's config
SHAPE_EXTRAS = {
    # Llama 3.2 3B: SwiGLU, tied embeddings (meta-llama/Llama-3.2-3B config.json)
    (28, 3072): dict(mlp="gated", tied_embeddings=True),
    # phi-1.5: GELU MLP, untied head (microsoft/phi-1_5 config.json)
    (24, 2048): dict(mlp="plain", tied_embeddings=False),
    # StableLM-Base-Alpha-3B (GPT-NeoX): GELU MLP 4h, untied
    (16, 4096): dict(mlp="plain", tied_embeddings=False),
    # Falcon-40B: GELU MLP 4h, tied head (tiiuae/falcon-40b config: no tie_word_embeddings=false)
    (60, 8192): dict(mlp="plain", tied_embeddings=True),
}
UNMODELLED = ("compile", "optimizer_in_backward", "activation_offload")


def kind_of(measure: str) -> str:
    m = measure.lower()
    if m.startswith(("allocated", "active")):
        return "allocated"
    if m.startswith("model-states"):
        return "states"
    if "nvidia-smi" in m or "device usage" in m:
        return "device"
    return "reserved"  # reserved, or not stated by a stack that logs max_memory_reserved


def unmodelled(row) -> list[str]:
    why = [k for k in UNMODELLED if row.get(k)]
    if row.get("offload"):
        why.append("CPU offload")
    if "8bit" in str(row.get("optimizer", "")):
        why.append("8-bit optimizer")
    pure = "states in bf16" in str(row.get("optimizer", "")) or "pytorch/torchtune" in row["source"]
    if row.get("method") == "full" and pure:
        # torchtune and a bf16-loaded HF model without AMP keep no fp32 master: 8 bytes a parameter
        why.append("pure bf16 training (no fp32 master, 16-bit Adam states)")
    if "pytorch/torchtitan" in row["source"] and (row.get("layout") or {}).get("recompute") == "selective":
        why.append("torchtitan per-op selective AC (gpuplan's selective is Megatron's)")
    if row.get("seq_len") is None:
        why.append("sequence length not fixed")
    return why


def model_of(row) -> ModelSpec | None:
    if row.get("model"):
        return catalog.model(row["model"])
    shape = row.get("shape")
    if not shape or "moe_experts" in shape:
        return None
    extras = SHAPE_EXTRAS[(shape["layers"], shape["hidden"])]
    return ModelSpec(id=row["id"], name=row["id"], layers=shape["layers"], hidden=shape["hidden"],
                     heads=shape["heads"], kv_heads=shape.get("kv_heads", shape["heads"]), ffn=shape["ffn"],
                     vocab=shape["vocab"], seq_len=row.get("seq_len") or 4096, source=row["source"], **extras)


def layout_of(row):
    L = dict(row["layout"])
    gpus = row["gpus"]
    tp, pp = L.get("tp", 1), L.get("pp", 1)
    mb = L.get("micro_batch")
    notes = []
    if mb is None:
        # torchtitan (Dec 2024): the local batch split into pp micro-batches unless configured
        local = row.get("local_batch") or 1
        mb = max(1, local // pp)
        notes.append(f"micro-batch {mb} assumed (local batch {local} / pp {pp})")
    vp = L.get("vp") or (2 if row.get("pp_schedule") == "interleaved_1f1b" else 1)
    if vp > 1 and not L.get("vp"):
        notes.append("vp 2 assumed (interleaved schedule, chunks per rank not published)")
    cp = L.get("cp") or 1
    layout = TrainLayout(accelerator=catalog.accelerator(row["gpu"]).id, tp=tp, pp=pp, vp=vp, cp=cp,
                         dp=gpus // (tp * pp * cp), ep=L.get("ep", 1), zero=L.get("zero", 0),
                         recompute=L.get("recompute") or "selective", micro_batch=mb,
                         precision=row.get("precision", "bf16"))
    return layout, notes


def quant_of(row) -> str:
    """A QLoRA row's 4-bit base: bitsandbytes without double quantization ("bnb nf4 (...)") keeps
    an fp32 constant per 64 weights; with it, gpuplan's default; torchao's NF4 (torchtune) its own."""
    q = str(row.get("quantization") or "")
    if q.startswith("torchao"):
        return "torchao-nf4"
    return "nf4" if q.startswith("bnb nf4") and "double" not in q else "nf4-dq"


def predict(row, fragmentation: float | None = None) -> dict:
    """One row re-evaluated with its published layout; `fragmentation` replaces the catalog's
    allocator fraction (the leave-one-source-out fit)."""
    out = dict(id=row["id"], source=row["source"].split(" ")[0], published=row.get("published_gib"),
               kind=kind_of(row["measure"]), outcome=row.get("outcome", "ran"), skip=unmodelled(row))
    spec = model_of(row)
    if spec is None:
        out["skip"] = out["skip"] + ["no model preset or shape"]
        return out
    if out["kind"] == "states":
        return out | dict(skip=out["skip"] + ["model states only (estimator)"])
    if not row.get("gpu"):
        return out | dict(skip=out["skip"] + ["GPU not named"])
    layout, notes = layout_of(row)
    seq = row["seq_len"] or spec.seq_len
    batch = (row.get("global_batch") or layout.dp * layout.micro_batch) * seq
    job = TrainJob(model=spec, tokens=1e9, global_batch_tokens=batch, seq_len=seq,
                   method=row.get("method", "full"), lora_rank=row.get("lora_rank", 16),
                   loss="fused" if row.get("cross_entropy") == "chunked" else "standard",
                   grad_sync=row.get("grad_sync", "micro-batch"), quant=quant_of(row))
    site = {} if fragmentation is None else {"training_allocator_fragmentation": fragmentation}
    with catalog.assuming(**site):
        ev = evaluate(job, layout)
    mb = ev.memory_breakdown_gib
    total = ev.memory_gib_per_gpu
    pred = {"allocated": total - mb.framework - mb.fragmentation, "reserved": total - mb.framework,
            "device": total}[out["kind"]]
    share = mb.fragmentation / catalog.assumption("training_allocator_fragmentation") if not site else (
        mb.fragmentation / fragmentation if fragmentation else 0.0)
    implied = None
    if out["kind"] != "allocated" and out["published"] and not out["skip"] and share:
        implied = (out["published"] - (pred - mb.fragmentation)) / share  # the fraction this row needs
    return out | dict(predicted=pred, total=total, capacity=ev.memory_capacity_gib, fits=ev.fits, notes=notes,
                      implied=implied,
                      error=None if not out["published"] else pred / out["published"] - 1)


def leave_one_source_out(rows) -> tuple[list[dict], dict[str, float], float]:
    """The allocator fraction (reserved minus allocated, as a share of the memory each step
    frees) is the one constant fitted here: the median of what the reserved / device rows imply.
    Each source's rows are predicted with the fraction fitted on the other sources only."""
    first = [predict(r) for r in rows]
    implied = [(r["source"], r["implied"]) for r in first if r.get("implied") is not None]
    fitted_all = float(np.median([v for _, v in implied]))
    by_source = {}
    results = []
    for row, res in zip(rows, first):
        src = res["source"]
        others = [v for s, v in implied if s != src]
        if res.get("error") is None or res["kind"] == "allocated" or not others:
            results.append(res)
            continue
        f = by_source.setdefault(src, max(0.0, float(np.median(others))))
        results.append(predict(row, fragmentation=f) | {"fragmentation_fit": f})
    return results, by_source, fitted_all


def summary(results):
    scored = [r for r in results if r.get("error") is not None and not r["skip"]]
    errs = np.array([r["error"] for r in scored])
    by_source = {}
    for r in scored:
        by_source.setdefault(r["source"], []).append(r["error"])
    return scored, errs, by_source


def table(results) -> str:
    lines = ["| row | measure | published GiB | predicted GiB | error | scored |", "|---|---|---|---|---|---|"]
    for r in results:
        pub = "OOM" if r["outcome"] == "oom" else (f"{r['published']:.1f}" if r["published"] else "")
        pred = f"{r['predicted']:.1f}" if "predicted" in r else ""
        err = f"{r['error']:+.1%}" if r.get("error") is not None else ""
        if r["outcome"] == "oom" and "total" in r:
            err = "does not fit" if not r["fits"] else "**predicted to fit**"
        scored = "yes" if not r["skip"] and r.get("error") is not None else "no: " + ", ".join(r["skip"] or ["-"])
        lines.append(f"| {r['id']} | {r['kind']} | {pub} | {pred} | {err} | {scored} |")
    return "\n".join(lines)


# torchtitan's H100s are Grand Teton's 96 GB HBM2e parts (benchmarks/published_runs_sources.md)
CAPACITY_GIB = {("torchtitan", "h100-sxm"): 96e9 / GIB}


def run_memory(run: pr.Run) -> dict:
    """A published run that really ran: the least memory gpuplan predicts for it over the settings
    its source does not publish (recomputation; micro-batch 1, no interleaving where not given),
    against the device's physical memory: `over` with the allocator's cache, `impossible` (evaluate's
    "does not fit") where even what must be on the device, all but that cache, exceeds it."""
    row, seq = run.row, run.spec.seq_len
    job = TrainJob(model=run.spec, tokens=1e9, global_batch_tokens=run.batch_seqs * seq, seq_len=seq,
                   loss="fused" if run.source in pr.FUSED_LOSS else "standard")
    recomputes = [run.recompute] if run.recompute else ["none", "selective", "full"]
    if run.source == "torchtitan" and recomputes == ["selective"]:
        recomputes = ["selective", "full"]  # per-op SAC stores less than Megatron's selective, more than full
    best = None
    for rc in recomputes:
        layout = TrainLayout(accelerator=row["gpu"], tp=run.tp, pp=run.pp, dp=run.dp, cp=run.cp, vp=run.vp,
                             zero=run.zero, recompute=rc, micro_batch=run.micro_batch, precision=run.precision)
        ev = evaluate(job, layout)
        if best is None or ev.memory_gib_per_gpu < best.memory_gib_per_gpu:
            best = ev
    capacity = CAPACITY_GIB.get((run.source, row["gpu"]), best.memory_capacity_gib)
    return dict(row_id=int(row["row_id"]), source=run.source, model=row["model"], gpu=row["gpu"],
                layout=f"{run.layout_text} ZeRO-{run.zero} {best.recompute}", seq=seq,
                predicted=best.memory_gib_per_gpu, required=best.memory_required_gib, capacity=capacity,
                over=best.memory_gib_per_gpu > capacity, impossible=best.memory_required_gib > capacity)


def published_runs() -> list[dict]:
    return [run_memory(r) for r in pr.runs()]


def main(write: bool = False) -> None:
    rows = yaml.safe_load(ROWS.read_text())
    results, fits, fitted_all = leave_one_source_out(rows)
    scored, errs, by_source = summary(results)
    print(table(results))
    print(f"\nallocator fraction fitted on all reserved/device rows: {fitted_all:.3f}; leave-one-source-out fits: "
          + ", ".join(f"{k} {v:.3f}" for k, v in sorted(fits.items())))
    print(f"scored rows: {len(scored)} of {len(results)}; median |error| {np.median(np.abs(errs)):.1%}; "
          f"p90 |error| {np.percentile(np.abs(errs), 90):.1%}; under-predicted by more than 10%: "
          f"{int((errs < -0.10).sum())}; worst {errs.min():+.1%} / {errs.max():+.1%}")
    for src, e in sorted(by_source.items()):
        e = np.array(e)
        print(f"  {src}: {len(e)} rows, median error {np.median(e):+.1%}, median |error| {np.median(np.abs(e)):.1%}")
    runs = published_runs()
    over = [r for r in runs if r["over"]]
    print(f"\npublished runs that really ran (benchmarks/published_runs.csv): {len(runs)}; predicted above the "
          f"GPU's memory: {len(over)} ({len(over) / len(runs):.1%}); without the allocator's cache (called "
          f"impossible): {sum(r['impossible'] for r in runs)}")
    for r in over:
        print(f"  row {r['row_id']} {r['source']} {r['model']} {r['gpu']} {r['layout']} seq {r['seq']}: "
              f"{r['predicted']:.1f} GiB > {r['capacity']:.1f}")
    ooms = [r for r in results if r["outcome"] == "oom" and "total" in r]
    print(f"OOM rows the planner also rejects: {sum(not r['fits'] for r in ooms)} of {len(ooms)}")
    if write:
        doc = ROOT / "docs" / "VALIDATION.md"
        text = doc.read_text()
        begin, end = "<!-- memory-table:begin -->", "<!-- memory-table:end -->"
        head, rest = text.split(begin)
        _, tail = rest.split(end)
        block = "\n".join([
            f"Scored rows: {len(scored)} of {len(results)} from {len(by_source)} sources; median |error| "
            f"**{np.median(np.abs(errs)):.1%}**, p90 {np.percentile(np.abs(errs), 90):.1%}; under-predicted by more "
            f"than 10%: **{int((errs < -0.10).sum())}** rows; worst {errs.min():+.1%} / {errs.max():+.1%}. "
            f"Allocator fraction: {fitted_all:.3f} fitted on all rows; leave-one-source-out "
            + ", ".join(f"{k} {v:.3f}" for k, v in sorted(fits.items())) + ".",
            "", "| source | rows | median error | median abs error |", "|---|---|---|---|",
            *[f"| {src} | {len(e)} | {np.median(e):+.1%} | {np.median(np.abs(e)):.1%} |"
              for src, e in sorted((k, np.array(v)) for k, v in by_source.items())],
            "", table(results), "",
            f"Runs that ran (benchmarks/published_runs.csv): {len(runs)}; predicted above the GPU's physical "
            f"memory with the allocator's cache: **{len(over)} ({len(over) / len(runs):.1%})**; called impossible "
            f"(`does not fit`: even without that cache, which PyTorch gives back before an out-of-memory error, "
            f"above the GPU): **{sum(r['impossible'] for r in runs)} "
            f"({sum(r['impossible'] for r in runs) / len(runs):.1%})**; the others `tight`:", "",
            *[f"- row {r['row_id']} ({r['source']}) {r['model']} on {r['gpu']}, {r['layout']}, seq {r['seq']}: "
              f"{r['predicted']:.1f} GiB of {r['capacity']:.1f} ({r['required']:.1f} without the cache"
              + (", called impossible" if r["impossible"] else "") + ")" for r in over],
        ])
        doc.write_text(head + begin + "\n" + block + "\n" + end + tail)
        print(f"wrote {doc}")


if __name__ == "__main__":
    main("--write" in sys.argv)
