"""Disaggregated prefill/decode fleets the planner returns, run in the chained step-by-step
simulation of tests/test_disaggregated.py (prefill replicas, the KV hand-off, decode replicas), on
several seeds, with one replica fewer in each pool of two or more: the figures docs/SERVING.md
quotes.

    python benchmarks/disagg_des.py
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

import test_disaggregated as td  # noqa: E402


def main():
    for name, _, gpus in td.FLEETS:
        w, plan, result = td.planned(name)
        parts = [(p, p.replicas) for p in plan.parts]
        print(f"{name}: {', '.join(gpus)}; {w.prompt_tokens}/{w.output_tokens} tokens at {w.rate_rps:g} req/s, "
              f"TTFT {w.ttft_s * 1e3:g} ms, TPOT {w.tpot_s * 1e3:g} ms (p{w.percentile * 100:g})")
        print("  plan: " + " + ".join(f"{p.replicas} x {p.role} {p.accelerator} TP{p.tp} {p.precision} {p.batch} slots"
                                      for p in plan.parts)
              + f"; ${plan.cost_per_hour_usd:.2f}/h; planned TTFT bound {plan.ttft_ms:.0f} ms, TPOT {plan.tpot_ms:.1f} ms")
        line = next(x for x in result.explanation if x.startswith("disaggregated"))
        print("  " + line)
        for seed in range(3):
            got = td.simulate_disaggregated(w, parts, seed=seed)
            print(f"  simulated seed {seed}: TTFT {got['ttft'] * 1e3:.0f} ms, TPOT {got['tpot'] * 1e3:.2f} ms")
        for j, (p, r) in enumerate(parts):
            pool = sum(q.replicas for q in plan.parts if q.role == p.role)
            if pool < 2:
                continue
            fewer = [(q, n - (k == j)) for k, (q, n) in enumerate(parts)]
            got = td.simulate_disaggregated(w, [(q, n) for q, n in fewer if n > 0])
            print(f"  one {p.role} {p.accelerator} TP{p.tp} fewer: TTFT {got['ttft'] * 1e3:.0f} ms, "
                  f"TPOT {got['tpot'] * 1e3:.2f} ms")


if __name__ == "__main__":
    main()
