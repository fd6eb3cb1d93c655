"""Predicted vs published serving figures, and the one calibrated serving constant.

    python benchmarks/validate_serving.py              # table of every run in serving_runs.yaml
    python benchmarks/validate_serving.py --calibrate  # fit decode_layer_overhead_us on the calibration row
    python benchmarks/validate_serving.py --write      # also rewrite the table in docs/VALIDATION.md

Leave-one-source-out (always printed): for each source (MLPerf v4.0, MLPerf v4.1, NIM, the
TensorRT-LLM perf overview), the per-layer decode overhead is refitted on the other sources' rows
(the value minimizing their median |error| on a 5 us grid, then 1 us around the best) and the
held-out source is predicted with it.

Every prediction goes through recommender.serving.evaluate_serving (the path of
`gpuplan serve --gpu ...`) with the run's published layout. Metrics:
  tokens_per_s              output tokens/s of all replicas at the largest batch that fits (offline)
  tpot_ms, ttft_ms          per-replica latency at the run's batch (concurrency)
  closed_loop_tokens_per_s  c users sending back-to-back requests: c * output / end-to-end latency
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recommender import catalog  # noqa: E402
from recommender.formulas import serving as sv  # noqa: E402
from recommender.serving import ServeLayout, ServeWorkload, evaluate_serving  # noqa: E402

RUNS = Path(__file__).with_name("serving_runs.yaml")
DOC = ROOT / "docs" / "VALIDATION.md"
START, END = "<!-- serving-table:start -->", "<!-- serving-table:end -->"


def trtllm_bench_limits(model, acc, tp: int, pp: int, prompt: int, output: int, kv_fraction: float = 0.95
                        ) -> tuple[int, int]:
    """(max_batch_size, max_num_tokens) as trtllm-bench sets them for a run (TensorRT-LLM
    tensorrt_llm/bench/build/tuning.py, calc_engine_setting and finetune_setting; the perf overview
    runs with a KV-cache fraction of 0.95 "in many cases"): the requests whose full prompt + output
    KV (FP8, at least one KV head per GPU) fits in the memory the FP8 weights leave, at most 4,096
    over the stages; tokens = that batch x (1 + prompt / output), at most 32,768; both rounded up
    (batch to 32 / 128 / 256 below 256 / 1,024 / beyond, at least 64; tokens to 256 / 512 / 1,024
    below 4,096 / 8,192 / beyond, at least 2,048)."""
    per_token = 2 * model.layers * max(tp, model.kv_heads or model.heads) * (model.head_dim or model.hidden // model.heads)
    free = (acc.memory_gib * tp * pp - model.total_params / 2**30) * kv_fraction
    requests = free * 2**30 / (per_token * (prompt + output))
    batch = min(requests, 4096) / pp
    tokens = min(batch * (1 + prompt / output), 32768)
    step = 32 if batch < 256 else 128 if batch < 1024 else 256
    batch = max(64, step * math.ceil(batch / step)) if step == 32 else step * math.ceil(batch / step)
    step = 256 if tokens < 4096 else 512 if tokens < 8192 else 1024
    return int(batch), int(max(2048, step * math.ceil(tokens / step)))


def workload(run: dict) -> ServeWorkload:
    m, wl = catalog.model(run["model"]), run["workload"]
    engine = {}
    if run.get("engine") == "trtllm-bench":
        lay = run["layout"]
        seqs, budget = trtllm_bench_limits(m, catalog.accelerator(run["gpu"]), lay["tp"], lay.get("pp", 1),
                                           wl["prompt"], wl["output"])
        # TensorRT-LLM's default capacity scheduler (GUARANTEED_NO_EVICT) admits a request only with
        # its prompt + output KV reserved (and its KV cache takes 0.95 of the free memory: headroom())
        engine = dict(max_seqs=seqs, token_budget=budget, kv_reserve="full")
    return ServeWorkload(model=m, prompt_tokens=wl["prompt"], output_tokens=wl["output"],
                         length_dist=wl.get("lengths", "exponential"), **engine)


def headroom(run: dict) -> float | None:
    """Memory kept free: gpuplan's default (vLLM's gpu_memory_utilization 0.9), or for trtllm-bench
    rows what TensorRT-LLM leaves: 1 - 0.95 of the memory the weights leave free."""
    if run.get("engine") != "trtllm-bench":
        return None
    m, acc, lay = catalog.model(run["model"]), catalog.accelerator(run["gpu"]), run["layout"]
    weights = float(sv.weight_bytes(m, lay["precision"], lay["tp"], lay.get("pp", 1))) / 2**30
    return 0.05 * (acc.memory_gib - weights) / acc.memory_gib


def evaluate(run: dict):
    """The row's published layout evaluated as `gpuplan serve --gpu ...` does, with its engine's
    settings (workload(), headroom())."""
    return evaluate_serving(workload(run), ServeLayout(accelerator=run["gpu"], **run["layout"]), headroom=headroom(run))


def predict(run: dict) -> float:
    w = workload(run)
    ev = evaluate(run)
    if run["metric"] == "closed_loop_tokens_per_s":
        return ev.batch * w.output_tokens / (ev.e2e_ms / 1e3)
    return getattr(ev, run["metric"])


def calibrate(runs: list[dict]) -> float:
    """decode_layer_overhead_us that makes the calibration row exact (bisection; the prediction
    grows with the overhead)."""
    rows = [r for r in runs if r["role"] == "calibration"]
    assert len(rows) == 1 and rows[0]["metric"] == "tpot_ms"
    row = rows[0]
    a = catalog.assumptions()
    original = a["decode_layer_overhead_us"]
    lo, hi = 0.0, 500.0
    try:
        for _ in range(60):
            mid = (lo + hi) / 2
            a["decode_layer_overhead_us"] = original.model_copy(update={"value": mid})
            if predict(row) < row["published"]:
                lo = mid
            else:
                hi = mid
    finally:
        a["decode_layer_overhead_us"] = original
    return (lo + hi) / 2


def source(run: dict) -> str:
    head = run["id"].split("-")
    return head[0] if head[0] in ("nim", "trtllm") else "-".join(head[:2])


_ERRORS: dict[tuple[str, float], float] = {}


def _errors(rows: list[dict], overhead: float) -> list[float]:
    """Signed errors of rows with the overhead set to `overhead` (remembered per row and value)."""
    a = catalog.assumptions()
    original = a["decode_layer_overhead_us"]
    try:
        a["decode_layer_overhead_us"] = original.model_copy(update={"value": overhead})
        for r in rows:
            if (r["id"], overhead) not in _ERRORS:
                _ERRORS[r["id"], overhead] = predict(r) / r["published"] - 1
        return [_ERRORS[r["id"], overhead] for r in rows]
    finally:
        a["decode_layer_overhead_us"] = original


THROUGHPUT = ("tokens_per_s", "closed_loop_tokens_per_s")
BAND_KEYS = ("serve_throughput_error_low", "serve_throughput_error_high")
ASSUMPTIONS = ROOT / "catalog" / "assumptions.yaml"


def loso_errors(runs: list[dict]) -> dict[str, tuple[float, list[float]]]:
    """Per source: the overhead fitted on the other sources' rows and the held-out signed errors."""
    out = {}
    for src in sorted({source(r) for r in runs}):
        test = [r for r in runs if source(r) == src]
        train = [r for r in runs if source(r) != src]

        def score(v):   # each training source weighs the same, however many rows it has
            return statistics.fmean(statistics.median(abs(e) for e in _errors([r for r in train if source(r) == s], v))
                                    for s in sorted({source(r) for r in train}))

        def best(grid):
            return min(grid, key=lambda v: (score(v), v))
        coarse = best([float(x) for x in range(0, 151, 5)])
        fit = best([float(x) for x in range(max(0, int(coarse) - 4), int(coarse) + 5)])
        out[src] = (fit, _errors(test, fit))
    return out


def throughput_band(runs: list[dict], cv: dict) -> tuple[float, float, int]:
    """5th and 95th percentiles (linear interpolation) of the LOSO errors on throughput rows."""
    errs = sorted(e for src, (_, es) in cv.items()
                  for r, e in zip([r for r in runs if source(r) == src], es) if r["metric"] in THROUGHPUT)

    def q(p):
        x = p * (len(errs) - 1)
        i = int(x)
        return errs[i] + (errs[min(i + 1, len(errs) - 1)] - errs[i]) * (x - i)
    return q(0.05), q(0.95), len(errs)


def write_band(lo: float, hi: float) -> None:
    text = ASSUMPTIONS.read_text()
    for key, v in zip(BAND_KEYS, (lo, hi)):
        head, rest = text.split(f"\n{key}:\n", 1)
        line, tail = rest.split("\n", 1)
        assert line.strip().startswith("value:"), key
        text = head + f"\n{key}:\n  value: {v:.4f}\n" + tail
    ASSUMPTIONS.write_text(text)


def loso(runs: list[dict], cv: dict | None = None) -> str:
    """Per source: the overhead fitted without it and the held-out median / p90 |error|."""
    cv = cv or loso_errors(runs)
    lines = ["| held-out source | rows | overhead fitted on the others (us) | median abs error | p90 abs error | signed errors |",
             "|---|---:|---:|---:|---:|---|"]
    medians = []
    for src, (fit, errs) in cv.items():
        ab = sorted(abs(e) for e in errs)
        p90 = ab[min(len(ab) - 1, int(round(0.9 * (len(ab) - 1))))]
        medians.append(statistics.median(ab))
        lines.append(f"| {src} | {len(errs)} | {fit:g} | {statistics.median(ab):.1%} | {p90:.1%} | "
                     + ", ".join(f"{e:+.0%}" for e in errs) + " |")
    lo, hi, n = throughput_band(runs, cv)
    lines.append("")
    lines.append(f"Median over sources of the held-out median |error|: {statistics.median(medians):.1%}. "
                 f"On the {n} throughput rows the held-out errors run from {lo:+.1%} to {hi:+.1%} (5th-95th "
                 "percentile): the band `serve` shows a plan's cost with (serve_throughput_error_low / _high in "
                 "catalog/assumptions.yaml, rewritten by --write).")
    return "\n".join(lines)


def table(runs: list[dict]) -> tuple[str, dict[str, float]]:
    lines = ["| run | model | GPUs | layout | metric | published | predicted | error | role |",
             "|---|---|---|---|---|---:|---:|---:|---|"]
    errors: dict[str, list[float]] = {"calibration": [], "held-out": []}
    for run in runs:
        pred = predict(run)
        err = pred / run["published"] - 1
        errors[run["role"]].append(abs(err))
        lay = run["layout"]
        gpus = lay["tp"] * lay.get("replicas", 1)
        layout = (f"{lay.get('replicas', 1)} x TP{lay['tp']} {lay['precision']}"
                  + (f", batch {lay['batch']}" if "batch" in lay else ", max batch"))
        lines.append(f"| {run['id']} | {run['model']} | {gpus} x {run['gpu']} | {layout} | {run['metric']} | "
                     f"{run['published']:,.2f} | {pred:,.2f} | {err:+.1%} | {run['role']} |")
    stats = {k: statistics.median(v) for k, v in errors.items() if v}
    stats["all"] = statistics.median(errors["calibration"] + errors["held-out"])
    return "\n".join(lines), stats


def sensitivity(runs: list[dict]) -> str:
    """How the MLPerf predictions move with the unverified 684-token mean prompt."""
    out = []
    for scale in (0.8, 1.2):
        errs = []
        for run in runs:
            if run["id"].startswith("mlperf"):
                r = dict(run, workload=dict(run["workload"], prompt=round(run["workload"]["prompt"] * scale)))
                errs.append(f"{predict(r) / run['published'] - 1:+.0%}")
        out.append(f"prompt x{scale}: " + ", ".join(errs))
    return "; ".join(out)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--calibrate", action="store_true")
    ap.add_argument("--write", action="store_true")
    args = ap.parse_args()
    runs = yaml.safe_load(RUNS.read_text())["runs"]
    if args.calibrate:
        print(f"decode_layer_overhead_us = {calibrate(runs):.1f} "
              f"(catalog has {catalog.assumption('decode_layer_overhead_us'):g})")
    text, stats = table(runs)
    summary = (f"Median |error|: held-out {stats['held-out']:.1%} ({sum(r['role'] == 'held-out' for r in runs)} rows), "
               f"calibration {stats.get('calibration', 0):.1%}, all {stats['all']:.1%}. "
               f"MLPerf sensitivity to the mean prompt length: {sensitivity(runs)}.")
    errs = loso_errors(runs)
    cv = loso(runs, errs)
    print(text)
    print()
    print(summary)
    print()
    print(cv)
    if args.write:
        doc = DOC.read_text()
        head, rest = doc.split(START)
        _, tail = rest.split(END)
        DOC.write_text(head + START + "\n" + text + "\n\n" + summary + "\n\nLeave-one-source-out (the per-layer "
                       "decode overhead refitted without the held-out source):\n\n" + cv + "\n" + END + tail)
        lo, hi, _ = throughput_band(runs, errs)
        write_band(lo, hi)
        print(f"wrote {DOC} and the throughput band ({lo:+.4f}, {hi:+.4f}) in {ASSUMPTIONS}")


if __name__ == "__main__":
    main()
