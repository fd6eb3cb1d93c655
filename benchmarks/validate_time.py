"""Training time: fit the time model's few free parameters on published throughput, and report the
error by leave-one-source-out cross-validation.

    python benchmarks/validate_time.py            # LOSO table with the catalog's parameters and the refits
    python benchmarks/validate_time.py --fit      # also print the all-source fit (what the catalog holds)
    python benchmarks/validate_time.py --write    # refit; rewrite the catalog's values, the tables in
                                                  # docs/VALIDATION.md, benchmarks/time_loso.csv (the
                                                  # cross-validated predictions) and catalog/time_bands.csv
    python benchmarks/validate_time.py --bands    # bands and tables again from benchmarks/time_loso.csv

Rows: benchmarks/published_runs.csv (llm-foundry, Megatron-Bridge, NeMo, Megatron-Core, Megatron-LM
2021, torchtitan, ...), each re-evaluated with its published layout through `training_terms`, the
function the planner and `gpuplan evaluate` use. Compared like for like: tokens/s/GPU where the
source gives it, else model TFLOP/s per GPU, else hardware FLOP/s (HFU x peak).

Free parameters (catalog/efficiency.csv and catalog/assumptions.yaml): the large-GEMM efficiency
of each accelerator family (Ampere, Hopper, Blackwell), the GEMM half-width of the size curve,
FlashAttention's efficiency relative to the GEMMs, and FP8's GEMM efficiency relative to BF16.
The objective is the mean over sources of the median |log(predicted / published)|, so that no one
source's many rows decide the fit. Leave-one-source-out: for each source, refit on the others and
predict it; those predictions are the errors reported, and their spread per family sets the bands.
"""

from __future__ import annotations

import math
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))

import published_runs as pr  # noqa: E402

from recommender import catalog  # noqa: E402
from recommender.evaluate import training_terms  # noqa: E402
from recommender.spec import TrainJob, TrainLayout  # noqa: E402

BANDS = ROOT / "catalog" / "time_bands.csv"
LOSO = ROOT / "benchmarks" / "time_loso.csv"  # the cross-validated predictions, with each fold's parameters
FAMILY = {"a100-40g": "ampere", "a100-80g": "ampere", "h100-sxm": "hopper", "h200": "hopper", "h800": "hopper",
          "b200": "blackwell", "gb200": "blackwell", "b300": "blackwell", "gb300": "blackwell"}
FAMILIES = ("ampere", "hopper", "blackwell")
GLOBALS = ("gemm_half_width", "attention_efficiency_ratio", "fp8_training_efficiency_ratio")
RATIOS = tuple(f"pytorch_ratio_{f}" for f in FAMILIES)  # per family: PyTorch-native / Megatron-TE
BOUNDS = {"ampere": (0.3, 1.0), "hopper": (0.3, 1.0), "blackwell": (0.3, 1.0), "gemm_half_width": (0.05, 20.0),
          "attention_efficiency_ratio": (0.2, 1.5), "fp8_training_efficiency_ratio": (0.3, 1.0),
          **{r: (0.3, 1.5) for r in RATIOS}}


def load_rows() -> list[dict]:
    """The published runs with a throughput figure, as (job, layout, metric, published)."""
    rows = []
    for run in pr.runs():
        r = run.row
        metric = next((m for m in ("tokens_per_s_per_gpu", "model_tflops_per_gpu", "hfu_pct")
                       if pr.cell(r, m) is not None), None)
        if metric is None or r["gpu"] not in FAMILY:
            continue
        seq = run.spec.seq_len
        recompute = run.recompute or "selective"
        job = TrainJob(model=run.spec, tokens=1e9, global_batch_tokens=run.batch_seqs * seq, seq_len=seq,
                       stack="pytorch" if run.source in pr.PYTORCH_STACK else "megatron")
        layout = TrainLayout(accelerator=r["gpu"], tp=run.tp, pp=run.pp, dp=run.dp, cp=run.cp, vp=run.vp,
                             zero=run.zero, recompute=recompute, micro_batch=run.micro_batch, precision=run.precision)
        published = float(r[metric]) * (catalog.accelerator(r["gpu"]).peak_tflops(run.precision) / 100
                                        if metric == "hfu_pct" else 1.0)
        rows.append(dict(row_id=int(r["row_id"]), source=run.source, family=FAMILY[r["gpu"]], gpu=r["gpu"],
                         precision=run.precision, model=r["model"], job=job, layout=layout, metric=metric,
                         published=published, layout_text=f"{run.layout_text} {recompute}"))
    return rows


def catalog_params() -> dict[str, float]:
    p = {f: _family_row(f).matmul_efficiency for f in FAMILIES}
    p.update({f"pytorch_ratio_{f}": _family_row(f).pytorch_ratio for f in FAMILIES})
    p.update({g: catalog.assumption(g) for g in GLOBALS})
    return p


def _family_row(family: str):
    gpu = next(g for g, f in FAMILY.items() if f == family)
    return catalog.efficiency(gpu)


def predict(row: dict, params: dict[str, float]) -> float:
    L, job = row["layout"], row["job"]
    acc = catalog.accelerator(L.accelerator)
    # training_terms applies the catalog's stack ratio: pass the efficiency that yields this fit's
    e = params[row["family"]]
    if job.kernels == "pytorch":
        e = e * params[f"pytorch_ratio_{row['family']}"] / catalog.efficiency(L.accelerator).pytorch_ratio
    with catalog.assuming(**{g: params[g] for g in GLOBALS}):
        t = training_terms(job, acc, L.precision, L.tp, L.pp, L.vp, L.dp, L.zero, L.recompute, L.micro_batch,
                           e, 0.0, L.ep, L.ep_overlap, L.cp)
    tokens = float(t.tokens_s_gpu)
    if row["metric"] == "tokens_per_s_per_gpu":
        return tokens
    flops = t.flops.model if row["metric"] == "model_tflops_per_gpu" else float(t.flops.hardware)
    return flops * tokens / 1e12


def log_errors(rows, params) -> np.ndarray:
    return np.array([math.log(predict(r, params) / r["published"]) for r in rows])


def objective(rows, params) -> float:
    errs = log_errors(rows, params)
    sources = {}
    for r, e in zip(rows, errs):
        sources.setdefault(r["source"], []).append(abs(e))
    return float(np.mean([np.median(v) for v in sources.values()]))


def fit(rows, start: dict[str, float], sweeps: int = 3) -> dict[str, float]:
    """Coordinate descent, a golden-section search per parameter within its bounds (families with
    no rows keep their start value)."""
    params = dict(start)
    present = {r["family"] for r in rows}
    names = [f for f in FAMILIES if f in present] + list(GLOBALS)
    if not any(r["precision"] == "fp8" for r in rows):
        names.remove("fp8_training_efficiency_ratio")
    # a family's stack ratio is fitted only where the rows hold both stacks on it; else it is 1
    for f in FAMILIES:
        if len({r["job"].kernels for r in rows if r["family"] == f}) == 2:
            names.append(f"pytorch_ratio_{f}")
        else:
            params[f"pytorch_ratio_{f}"] = 1.0
    g = (math.sqrt(5) - 1) / 2
    for _ in range(sweeps):
        for name in names:
            lo, hi = BOUNDS[name]
            log_scale = name == "gemm_half_width"
            a, b = (math.log(lo), math.log(hi)) if log_scale else (lo, hi)
            value = lambda x: math.exp(x) if log_scale else x  # noqa: E731
            score = lambda x: objective(rows, params | {name: value(x)})  # noqa: E731
            c, d = b - g * (b - a), a + g * (b - a)
            fc, fd = score(c), score(d)
            for _ in range(14):
                if fc < fd:
                    b, d, fd = d, c, fc
                    c = b - g * (b - a)
                    fc = score(c)
                else:
                    a, c, fc = c, d, fd
                    d = a + g * (b - a)
                    fd = score(d)
            params[name] = value((a + b) / 2)
    return params


def leave_one_source_out(rows, start):
    """Each source predicted with parameters fitted on the other sources only."""
    out = []
    for src in sorted({r["source"] for r in rows}):
        train = [r for r in rows if r["source"] != src]
        test = [r for r in rows if r["source"] == src]
        p = fit(train, start)
        for r in test:
            out.append(r | {"predicted": predict(r, p), "fit": p})
    return out


def bands(results) -> dict[str, tuple[float, float, int]]:
    """Per family: the 5th and 95th percentile of the cross-validated relative error of throughput
    (predicted / published - 1), and the row count; 'all' pools every family."""
    by = {}
    for r in results:
        e = r["predicted"] / r["published"] - 1
        by.setdefault(r["family"], []).append(e)
        by.setdefault("all", []).append(e)
    return {k: (float(np.percentile(v, 5)), float(np.percentile(v, 95)), len(v)) for k, v in by.items()}


def write_loso(results) -> None:
    import json

    import pandas as pd

    pd.DataFrame([{"row_id": r["row_id"], "source": r["source"], "family": r["family"], "gpu": r["gpu"],
                   "precision": r["precision"], "published": r["published"], "predicted": r["predicted"],
                   "fold_params": json.dumps({k: round(v, 6) for k, v in r["fit"].items()})}
                  for r in results]).to_csv(LOSO, index=False)
    print(f"wrote {LOSO}")


def read_loso(rows) -> list[dict]:
    """The stored cross-validated predictions joined to the rows (for --bands and the tests)."""
    import json

    import pandas as pd

    by_id = {r["row_id"]: r for r in rows}
    out = []
    for s in pd.read_csv(LOSO).to_dict("records"):
        r = by_id[int(s["row_id"])]
        out.append(r | {"predicted": float(s["predicted"]), "fit": json.loads(s["fold_params"])})
    return out


def write_catalog(fitted: dict[str, float], today: str) -> None:
    """The all-source fit into the catalog: each family member's efficiency in catalog/efficiency.csv
    (parts without a published run take the lowest fitted family's, marked assumed), and the global
    parameters' values in catalog/assumptions.yaml."""
    import csv
    import re

    path = ROOT / "catalog" / "efficiency.csv"
    with path.open() as f:
        rows = list(csv.DictReader(f))
    low_family = min(FAMILIES, key=lambda f: fitted[f])
    for r in rows:
        fam = FAMILY.get(r["accelerator"])
        if fam:
            r.update(matmul_efficiency=f"{fitted[fam]:.3f}", pytorch_ratio=f"{fitted[f'pytorch_ratio_{fam}']:.3f}",
                     calibrated="true",
                     basis=f"{fam} family large-GEMM efficiency, fitted on benchmarks/published_runs.csv "
                           f"(leave-one-source-out error in docs/VALIDATION.md)",
                     source="benchmarks/validate_time.py --write", as_of=today)
        else:
            r.update(matmul_efficiency=f"{fitted[low_family]:.3f}", pytorch_ratio="1.0", calibrated="false",
                     basis=f"no published run with its layout: assumed equal to the lowest fitted family "
                           f"({low_family}), with the wider uncalibrated error band", source="gpuplan assumption",
                     as_of=today)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
    ypath = ROOT / "catalog" / "assumptions.yaml"
    text = ypath.read_text()
    for g in GLOBALS:
        text = re.sub(rf"(^{g}:\n  value: )[^\n]+", rf"\g<1>{fitted[g]:.3g}", text, flags=re.M)
    ypath.write_text(text)
    print(f"wrote {path} and {ypath}")


def write_bands(results) -> None:
    """catalog/time_bands.csv: per family the cross-validated 5th-95th percentile error band; an
    accelerator outside the fitted families gets the pooled 2.5th-97.5th percentile (wider)."""
    import csv

    b = bands(results)
    pooled = [r["predicted"] / r["published"] - 1 for r in results]
    out = [("family", "error_low", "error_high", "rows", "basis")]
    for fam in FAMILIES:
        lo, hi, n = b.get(fam, (None, None, 0))
        if n >= 5:
            out.append((fam, f"{lo:.4f}", f"{hi:.4f}", n, "leave-one-source-out 5th-95th percentile"))
    out.append(("uncalibrated", f"{np.percentile(pooled, 2.5):.4f}", f"{np.percentile(pooled, 97.5):.4f}", len(pooled),
                "all families pooled, 2.5th-97.5th percentile: no published run on this accelerator"))
    with BANDS.open("w", newline="") as f:
        csv.writer(f, lineterminator="\n").writerows(out)
    print(f"wrote {BANDS}")


def doc_table(results, fitted) -> str:
    errs = np.array([r["predicted"] / r["published"] - 1 for r in results])
    lines = [f"{len(results)} rows from {len({r['source'] for r in results})} sources; leave-one-source-out median "
             f"|error| **{np.median(np.abs(errs)):.1%}**, p90 {np.percentile(np.abs(errs), 90):.1%}, signed median "
             f"{np.median(errs):+.1%}. Parameters fitted on all sources (the catalog's): "
             + ", ".join(f"{k} {v:.3g}" for k, v in fitted.items()) + ".", "",
             "| source | family | rows | bias | median abs error | p90 abs error |", "|---|---|---|---|---|---|"]
    groups = {}
    for r, e in zip(results, errs):
        groups.setdefault((r["source"], r["family"]), []).append(e)
    for (src, fam), e in sorted(groups.items()):
        e = np.array(e)
        lines.append(f"| {src} | {fam} | {len(e)} | {np.median(e):+.1%} | {np.median(np.abs(e)):.1%} | "
                     f"{np.percentile(np.abs(e), 90):.1%} |")
    fam = {}
    for r, e in zip(results, errs):
        fam.setdefault(r["family"], []).append(e)
    lines += ["", "| family | rows | bias | median abs error | p90 abs error | band (5th-95th) |", "|---|---|---|---|---|---|"]
    b = bands(results)
    for f, e in sorted(fam.items()):
        e = np.array(e)
        lines.append(f"| {f} | {len(e)} | {np.median(e):+.1%} | {np.median(np.abs(e)):.1%} | "
                     f"{np.percentile(np.abs(e), 90):.1%} | {b[f][0]:+.0%} to {b[f][1]:+.0%} |")
    worst = sorted(zip(results, errs), key=lambda x: -abs(x[1]))[:10]
    lines += ["", "Worst rows:", ""]
    lines += [f"- {r['source']} row {r['row_id']}: {r['model']} on {r['gpu']} {r['precision']}, {r['layout_text']}, "
              f"seq {r['job'].seq_len}: {e:+.0%}" for r, e in worst]
    return "\n".join(lines)


def main(argv) -> None:
    rows = load_rows()
    start = catalog_params()
    print(f"{len(rows)} rows; catalog parameters: " + ", ".join(f"{k} {v:.3g}" for k, v in start.items()))
    if "--bands" in argv:  # redo the bands and tables from the stored cross-validated predictions
        results, fitted = read_loso(rows), start
    else:
        fitted = fit(rows, start) if ("--fit" in argv or "--write" in argv) else start
        if "--fit" in argv:
            print("fit on all sources: " + ", ".join(f"{k} {v:.3g}" for k, v in fitted.items()))
        results = leave_one_source_out(rows, fitted)
    errs = np.array([r["predicted"] / r["published"] - 1 for r in results])
    print(f"leave-one-source-out: median |error| {np.median(np.abs(errs)):.1%}, p90 {np.percentile(np.abs(errs), 90):.1%}")
    groups = {}
    for r, e in zip(results, errs):
        groups.setdefault((r["source"], r["family"]), []).append(e)
    for (src, fam), e in sorted(groups.items()):
        e = np.array(e)
        print(f"  {src:12s} {fam:9s} {len(e):4d} rows  bias {np.median(e):+6.1%}  median |err| "
              f"{np.median(np.abs(e)):5.1%}  p90 {np.percentile(np.abs(e), 90):5.1%}")
    for k, (lo, hi, n) in sorted(bands(results).items()):
        print(f"  band {k:9s} {n:4d} rows: {lo:+.1%} .. {hi:+.1%}")
    if "--write" in argv or "--bands" in argv:
        import datetime

        if "--write" in argv:
            write_catalog(fitted, datetime.date.today().isoformat())
            write_loso(results)
        write_bands(results)
        doc = ROOT / "docs" / "VALIDATION.md"
        text = doc.read_text()
        begin, end = "<!-- time-table:begin -->", "<!-- time-table:end -->"
        head, rest = text.split(begin)
        _, tail = rest.split(end)
        doc.write_text(head + begin + "\n" + doc_table(results, fitted) + "\n" + end + tail)
        print(f"wrote {doc}")


if __name__ == "__main__":
    main(sys.argv[1:])
