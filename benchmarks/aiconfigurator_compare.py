"""gpuplan beside NVIDIA AIConfigurator on the published serving rows (benchmarks/serving_runs.yaml).

    pip install aiconfigurator          # optional, about 120 MB with its measured-kernel database;
                                        # never needed by the tests (a separate venv is fine)
    python benchmarks/aiconfigurator_compare.py [--aic PATH/TO/aiconfigurator] [--write]

For each published row whose accelerator AIConfigurator has a database for, the row's layout is
given to both tools: gpuplan through recommender.serving.evaluate_serving (as
benchmarks/validate_serving.py does) and AIConfigurator through `aiconfigurator cli estimate`
(aggregated in-flight batching, TensorRT-LLM backend, its default database), at the same model
architecture (a Hugging Face config.json written from gpuplan's preset, so both tools see the
same shapes), precisions, TP, input/output lengths and batch. AIConfigurator runs twice: with
its own engine default (--ctx-tokens = the prompt length: one prompt a step) and with gpuplan's
token budget per step (vLLM's default, or trtllm-bench's for the TensorRT-LLM perf-overview rows,
given as --ctx-tokens); the other published runs' own settings are not stated. Offline throughput rows run both at
the batch gpuplan's slot cap gives (AIConfigurator is given that batch; it does not choose one
in `estimate`). Metrics as in validate_serving.py: tokens/s of all replicas, TPOT / TTFT at a
concurrency, and the closed-loop throughput c * output / request latency.

Nothing here is fitted: AIConfigurator's figures are its own predictions, gpuplan's the same as
in VALIDATION.md's serving table.
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

from doc_table import show  # noqa: E402
from recommender import catalog  # noqa: E402
from recommender.serving import engine_limits  # noqa: E402
from validate_serving import evaluate, predict, workload  # noqa: E402

RUNS = Path(__file__).with_name("serving_runs.yaml")
DOC = ROOT / "docs" / "VALIDATION.md"
START, END = "<!-- aic-table:start -->", "<!-- aic-table:end -->"
SYSTEMS = {"h100-sxm": "h100_sxm", "h200": "h200_sxm", "b200": "b200_sxm", "a100-80g": "a100_sxm", "l40s": "l40s",
           "l4": "l4"}
QUANT = {"fp8": "fp8", "bf16": "bfloat16"}


def hf_config(model_id: str, folder: Path) -> Path:
    """A LlamaForCausalLM config.json with the preset's shapes (the rows are all Llama models)."""
    m = catalog.model(model_id)
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "num_hidden_layers": m.layers,
           "hidden_size": m.hidden, "intermediate_size": m.ffn, "num_attention_heads": m.heads,
           "num_key_value_heads": m.kv_heads, "head_dim": m.hidden // m.heads, "vocab_size": m.vocab,
           "max_position_embeddings": m.seq_len, "hidden_act": "silu", "rms_norm_eps": 1e-5,
           "tie_word_embeddings": False, "torch_dtype": "bfloat16"}
    out = folder / model_id
    out.mkdir(parents=True, exist_ok=True)
    (out / "config.json").write_text(json.dumps(cfg, indent=1))
    return out


def batch_for(run: dict) -> int:
    if "batch" in run["layout"]:
        return int(run["layout"]["batch"])
    return evaluate(run).batch


def token_budget(run: dict) -> int:
    """gpuplan's token budget for the row: vLLM's default, or the run's engine's (trtllm-bench)."""
    return engine_limits(workload(run), catalog.accelerator(run["gpu"]))[1]


def aic_estimate(aic: str, run: dict, model_dir: Path, batch: int, ctx_tokens: int | None) -> dict[str, float]:
    lay = run["layout"]
    args = [aic, "cli", "estimate", "--model", str(model_dir), "--system", SYSTEMS[run["gpu"]],
            "--backend", "trtllm", "--isl", str(run["workload"]["prompt"]), "--osl", str(run["workload"]["output"]),
            "--batch-size", str(batch), "--tp", str(lay.get("tp", 1)), "--pp", str(lay.get("pp", 1)),
            "--gemm-quant-mode", QUANT[lay["precision"]], "--kvcache-quant-mode", QUANT[lay["kv_precision"]]]
    if ctx_tokens is not None:
        args += ["--ctx-tokens", str(ctx_tokens)]
    r = subprocess.run(args, capture_output=True, text=True)
    text = r.stdout + r.stderr
    got = {}
    for key, label in (("ttft_ms", "TTFT"), ("tpot_ms", "TPOT"), ("latency_ms", "Request Latency"),
                       ("tokens_per_s", "tokens/s")):
        hit = re.search(rf"^\s*{re.escape(label)}:\s+([\d,.]+)", text, flags=re.M)
        if hit:
            got[key] = float(hit.group(1).replace(",", ""))
    if r.returncode != 0 or len(got) < 4:
        raise RuntimeError(f"aiconfigurator failed on {run['id']}: {text[-400:]}")
    return got


def estimates(aic: str, run: dict, folder: Path, batch: int) -> tuple[list[float] | None, int]:
    """AIConfigurator's figure for the row with its default engine and with gpuplan's token budget,
    at gpuplan's batch, or, where its memory check refuses that batch ("OOM": it reserves every
    sequence's full prompt + output KV), at the largest batch it accepts (bisection)."""
    def at(b):
        return [aic_metric(run, aic_estimate(aic, run, folder, b, ctx), b) for ctx in (None, token_budget(run))]
    try:
        return at(batch), batch
    except RuntimeError as e:
        if "OOM" not in str(e):
            return None, batch
    lo, hi = 0, batch - 1            # the largest batch in [1, batch) that runs
    best = None
    while lo < hi:
        mid = (lo + hi + 1) // 2
        try:
            best = at(mid), mid
            lo = mid
        except RuntimeError:
            hi = mid - 1
    return best if best else (None, batch)


def aic_metric(run: dict, est: dict[str, float], batch: int) -> float:
    metric, reps = run["metric"], int(run["layout"].get("replicas", 1))
    if metric == "tokens_per_s":
        return est["tokens_per_s"] * reps
    if metric == "closed_loop_tokens_per_s":
        return batch * run["workload"]["output"] / (est["latency_ms"] / 1e3)
    return est[metric]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--aic", default=shutil.which("aiconfigurator"), help="the aiconfigurator executable")
    ap.add_argument("--write", action="store_true", help="rewrite the table in docs/VALIDATION.md")
    args = ap.parse_args()
    if not args.aic:
        raise SystemExit("aiconfigurator is not installed (pip install aiconfigurator, or give --aic PATH)")
    runs = yaml.safe_load(RUNS.read_text())["runs"]
    lines = ["| run | metric | published | gpuplan | AIConfigurator, its default / gpuplan's budget | gpuplan error | "
             "AIConfigurator error |", "|---|---|---:|---:|---:|---:|---:|"]
    errs = {"gpuplan": [], "aic": [], "aic_budget": []}
    skipped, refused = [], []
    with tempfile.TemporaryDirectory() as tmp:
        for run in runs:
            if run["gpu"] not in SYSTEMS:
                skipped.append(f"{run['id']} ({run['gpu']}: no AIConfigurator database)")
                continue
            batch, folder = batch_for(run), hf_config(run["model"], Path(tmp))
            ours, pub = predict(run), run["published"]
            theirs, used = estimates(args.aic, run, folder, batch)
            if theirs is None:
                skipped.append(f"{run['id']} (AIConfigurator: fails at every batch)")
                continue
            if used != batch:
                refused.append(f"{run['id']} {used} (gpuplan {batch})")
            eo, ea, eb = ours / pub - 1, theirs[0] / pub - 1, theirs[1] / pub - 1
            for key, e in zip(errs, (eo, ea, eb)):
                errs[key].append(abs(e))
            lines.append(f"| {run['id']} | {run['metric']} | {pub:,.2f} | {ours:,.2f} | {theirs[0]:,.2f} / "
                         f"{theirs[1]:,.2f} | {eo:+.0%} | {ea:+.0%} / {eb:+.0%} |")
    med = {k: statistics.median(v) for k, v in errs.items()}
    lines.append("")
    lines.append(f"Median |error| over the {len(errs['aic'])} rows: gpuplan {med['gpuplan']:.1%}; AIConfigurator "
                 f"{med['aic']:.1%} with its default engine, {med['aic_budget']:.1%} with gpuplan's token budget."
                 + (f" AIConfigurator's memory check (every sequence's full prompt + output KV) refuses gpuplan's "
                    f"batch on {len(refused)} rows; there it runs at the largest batch it accepts: {'; '.join(refused)}."
                    if refused else "")
                 + (f" Not compared: {'; '.join(skipped)}." if skipped else ""))
    show("\n".join(lines), args.write, DOC, START, END)


if __name__ == "__main__":
    main()
