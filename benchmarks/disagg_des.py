"""Disaggregated prefill/decode fleets the planner returns, run in the chained step-by-step
simulation of tests/test_disaggregated.py (prefill replicas, the KV hand-off, decode replicas), on
three seeds, with one replica fewer in each pool of two or more: the table in docs/SERVING.md.

    python benchmarks/disagg_des.py [--write]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests"), str(ROOT / "benchmarks")]

import test_disaggregated as td  # noqa: E402
from doc_table import show  # noqa: E402

DOC = ROOT / "docs" / "SERVING.md"
START, END = "<!-- disagg-table:begin -->", "  <!-- disagg-table:end -->"   # inside a list item
SEEDS = 3


def _span(values, fmt) -> str:
    lo, hi = min(values), max(values)
    return fmt(lo) if fmt(lo) == fmt(hi) else f"{fmt(lo)}-{fmt(hi)}"


def row(name: str) -> str:
    w, plan, result = td.planned(name)
    gpus = next(f[2] for f in td.FLEETS if f[0] == name)
    parts = [(p, p.replicas) for p in plan.parts]
    kinds = len({p.accelerator for p in plan.parts}) > 1
    layout = " + ".join(f"{p.replicas} {p.role} {p.accelerator.upper() + ' ' if kinds else ''}TP{p.tp}"
                        for p in plan.parts)
    line = next(x for x in result.explanation if x.startswith("disaggregated"))
    agg = line.split("$")[-2].split("/h")[0] if " saves " in line else "none meets the targets"
    sims = [td.simulate_disaggregated(w, parts, seed=s) for s in range(SEEDS)]
    fewer = []
    for j, (p, _) in enumerate(parts):
        if sum(q.replicas for q in plan.parts if q.role == p.role) < 2:
            continue
        got = td.simulate_disaggregated(w, [(q, n - (k == j)) for k, (q, n) in enumerate(parts) if n - (k == j) > 0])
        what = (f"TTFT {got['ttft']:,.2f} s" if got["ttft"] > w.ttft_s else
                f"TPOT {got['tpot'] * 1e3:.1f} ms" if got["tpot"] > w.tpot_s else "still meets")
        fewer.append(f"{p.role} {p.accelerator} TP{p.tp}: {what}")
    ms = lambda x: f"{x * 1e3:,.0f}"  # noqa: E731
    ms1 = lambda x: f"{x * 1e3:.1f}"  # noqa: E731
    return (f"  | {w.model.name}, {w.prompt_tokens:,}/{w.output_tokens} tokens, {w.rate_rps:g} req/s, "
            f"{w.ttft_s:g} s / {w.tpot_s * 1e3:g} ms, {' + '.join(g.upper() for g in gpus)} | {layout} | "
            f"{plan.cost_per_hour_usd:.2f} ({agg}) | {plan.ttft_ms:,.0f} / {_span([s['ttft'] for s in sims], ms)} ms | "
            f"{plan.tpot_ms:.1f} / {_span([s['tpot'] for s in sims], ms1)} ms | {'; '.join(fewer)} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the table in docs/SERVING.md")
    args = ap.parse_args()
    lines = ["  | fleet | plan | $/h (aggregated) | TTFT p99: bound / simulated (3 seeds) | "
             "TPOT p99: planned / simulated | one replica fewer |", "  |---|---|---|---|---|---|"]
    lines += [row(name) for name, _, _ in td.FLEETS]
    show("\n".join(lines), args.write, DOC, START, END)


if __name__ == "__main__":
    main()
