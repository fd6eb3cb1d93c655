"""Solve time of `gpuplan serve` on the README query (Llama-3-70B, 1,000 users, 3 s think time,
512/256 tokens, TTFT 1 s, TPOT 50 ms) over the whole catalog, and on an owned-GPU mixed query.

    python benchmarks/serve_time.py [--repeat 5]

Reports medians of: the replica table (formulas over every accelerator x precision x TP x PP x
batch, priced per acquisition), the first CP-SAT solve (#1 proven optimal, three lexicographic
levels), and the whole `serve` call with top-5 and the binding-limit explanation.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recommender import api, catalog  # noqa: E402
from recommender import serve_planner as sp  # noqa: E402
from recommender.serving import ServeWorkload  # noqa: E402

QUERY = dict(model="llama-3-70b", users=1000, think_time="3s", prompt=512, output=256, ttft="1s", tpot="50ms")


def timed(fn, repeat):
    out, times = None, []
    for _ in range(repeat):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return out, statistics.median(times)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    args = ap.parse_args()
    w = ServeWorkload(model=catalog.model("llama-3-70b"), prompt_tokens=512, output_tokens=256, users=1000,
                      think_time_s=3.0, ttft_s=1.0, tpot_s=0.05)
    space = sp.ServeSpace(accelerators=tuple(catalog.accelerators()))
    full, t_table = timed(lambda: sp.replica_table(w, space), args.repeat)
    df = sp.prune(full[full.cost_ph.notna()].reset_index(drop=True), w)
    q = sp._Query(df, w, sp.ServeLimits(), w.demand, space, 10.0)
    first, t_solve = timed(lambda: q.pm.solve(q.enforce), args.repeat)
    res, t_all = timed(lambda: api.serve(**QUERY), args.repeat)
    own, t_own = timed(lambda: api.serve(**QUERY, own="a100-80g:64"), args.repeat)
    print(f"replica table: {len(full):,} rows, {len(df):,} non-dominated priced types: {t_table:.3f} s")
    print(f"first CP-SAT solve ({first.status}): {t_solve:.3f} s")
    print(f"serve() with top-5 and explanation: {t_all:.3f} s -> #1 {res.plans[0].replicas} x "
          f"{res.plans[0].accelerator} {res.plans[0].acquisition}, ${res.plans[0].cost_per_hour_usd:,.2f}/h")
    print(f"serve() with --own a100-80g:64: {t_own:.3f} s -> #1 {own.plans[0].accelerator} "
          f"{own.plans[0].acquisition}, ${own.plans[0].cost_per_hour_usd:,.2f}/h")


if __name__ == "__main__":
    main()
