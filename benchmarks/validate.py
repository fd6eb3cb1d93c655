"""Predicted vs published training throughput on papers' runs (benchmarks/validation_runs.yaml).

    python benchmarks/validate.py              # table of every run in validation_runs.yaml
    python benchmarks/validate.py --write      # also rewrite the table in docs/VALIDATION.md

The time model's parameters are fitted by benchmarks/validate_time.py on benchmarks/published_runs.csv;
of these rows only Megatron-LM 2021's Table 1 is among them ("fitted"), the rest are held out.

Every prediction goes through recommender.evaluate (the same path as `gpuplan evaluate`), with the
run's published layout; the published figure is compared like for like (hardware vs model FLOPs).
"""

from __future__ import annotations

import argparse
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_table import show  # noqa: E402
from recommender import catalog  # noqa: E402
from recommender.evaluate import evaluate  # noqa: E402
from recommender.spec import ModelSpec, TrainJob, TrainLayout  # noqa: E402

RUNS = Path(__file__).with_name("validation_runs.yaml")
DOC = ROOT / "docs" / "VALIDATION.md"
START, END = "<!-- training-table:start -->", "<!-- training-table:end -->"
GPT_VOCAB = 51200  # Megatron-LM pads GPT-2's 50,257 to a multiple of 128 x TP; Table 1 FLOPs use V = 51,200


def run_model(run: dict) -> ModelSpec:
    if "shape" in run:
        s = run["shape"]
        return ModelSpec(id=run["id"], name=run["id"], layers=s["layers"], hidden=s["hidden"],
                         ffn=4 * s["hidden"], heads=s["heads"], kv_heads=s["heads"], vocab=GPT_VOCAB,
                         seq_len=2048, mlp="plain", tied_embeddings=True, position="learned",
                         linear_bias=True, source=run["source"])
    spec = catalog.model(run["model"])
    if "layers" in run:
        spec = ModelSpec(**(spec.model_dump() | {"layers": run["layers"]}))
    return spec


def predict(run: dict, efficiency: float | None = None):
    spec = run_model(run)
    seq = run.get("seq_len", 2048 if "shape" in run else min(spec.seq_len, 4096))
    job = TrainJob(model=spec, tokens=run.get("tokens", 1e12),
                   global_batch_tokens=run["global_batch_seqs"] * seq, seq_len=seq)
    layout = TrainLayout(accelerator=run["gpu"], **run["layout"])
    ev = evaluate(job, layout, efficiency=efficiency)
    acc = catalog.accelerator(run["gpu"])
    value = {
        "hardware_tflops_per_gpu": ev.hfu * acc.bf16_tflops,
        "model_tflops_per_gpu": ev.tflops_per_gpu,
        "tokens_per_s_per_gpu": ev.tokens_per_s_per_gpu,
        "gpu_hours": ev.gpu_hours,
    }[run["metric"]]
    return value, ev


def load_runs() -> list[dict]:
    return yaml.safe_load(RUNS.read_text())


def table(runs: list[dict]) -> tuple[str, dict]:
    lines = ["| run | accelerator x count | layout (TP x PP x DP, ZeRO, recompute, mb) | metric | published | "
             "predicted | error | role | fits | source |",
             "|---|---|---|---|---:|---:|---:|---|---|---|"]
    errs = {"fitted": [], "held out": []}
    for r in runs:
        value, ev = predict(r)
        err = value / r["published"] - 1
        role = "fitted" if r["id"].startswith("megatron2021") else "held out"
        errs[role].append(abs(err))
        lo = r["layout"]
        lines.append(
            f"| {r['id']} | {r['gpu']} x {ev.count} | {lo['tp']}x{lo['pp']}x{lo['dp']}, Z{lo['zero']}, "
            f"{lo['recompute']}, {lo['micro_batch']} | {r['metric']} | {r['published']:,.4g} | {value:,.4g} | "
            f"{err:+.1%} | {role} | {'yes' if ev.fits else 'NO'} | {r['source']}"
            + (f" ({r['notes']})" if r.get("notes") else "") + " |")
    summary = {k: (statistics.median(v) if v else float("nan"), len(v)) for k, v in errs.items()}
    summary["all"] = (statistics.median(errs["fitted"] + errs["held out"]), len(errs["fitted"]) + len(errs["held out"]))
    lines.append("")
    for k, (med, n) in summary.items():
        lines.append(f"- median absolute error, {k} rows ({n}): **{med:.1%}**")
    return "\n".join(lines), summary


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    runs = load_runs()
    text, _ = table(runs)
    show(text, args.write, DOC, START, END)


if __name__ == "__main__":
    main()
