"""Solve time of the headline query: cheapest setup to train a 100B dense model on 2T tokens in
60 days, over the whole catalog, to proven optimality; beside it, brute force over the same space.

    python benchmarks/solve_time.py [--repeat 7] [--brute]

Reports medians of the candidate-table build (vectorized formulas + exact pruning), the first
CP-SAT solve (#1, proven optimal), and the whole `plan` call with top-10 and explanation.
--brute also times a loop calling the one-configuration evaluator on every tuple of the space.
"""

from __future__ import annotations

import argparse
import itertools
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recommender import api, catalog  # noqa: E402
from recommender.candidates import BATCH_ROUNDING, SearchSpace, table  # noqa: E402
from recommender.errors import GpuplanError  # noqa: E402
from recommender.evaluate import evaluate  # noqa: E402
from recommender.planner import plan  # noqa: E402
from recommender.solver import Limits, PlanModel, ordering  # noqa: E402
from recommender.spec import TrainLayout  # noqa: E402


def query():
    job, _ = api.build_job(api.build_model(params="100B"), "2T")
    space = SearchSpace(accelerators=tuple(catalog.accelerators()))
    return job, space, Limits(deadline_days=60)


def brute(job, space, limits):
    best, n = None, 0
    m = job.model
    for acc_id, prec, acq in itertools.product(space.accelerators, space.precisions, space.acquisitions):
        acc = catalog.accelerator(acc_id)
        node = acc.gpus_per_node or 1
        counts = [c for c in space.gpu_counts(node) if acc.inter_node_bw_gb_s is not None or c <= node]
        for count, tp, pp, vp, zero, rc, mb in itertools.product(counts, space.tp, space.pp, space.vp, space.zero,
                                                                 space.recompute, space.micro_batch):
            if count % (tp * pp) or tp > node or (vp > 1 and pp == 1) or m.layers % (pp * vp) or m.heads % tp:
                continue
            dp = count // (tp * pp)
            if dp * mb > job.global_batch_seqs:
                continue
            n += 1
            try:
                ev = evaluate(job, TrainLayout(accelerator=acc_id, tp=tp, pp=pp, vp=vp, dp=dp, zero=zero,
                                               recompute=rc, micro_batch=mb, precision=prec, acquisition=acq))
            except GpuplanError:
                continue
            if (ev.fits and ev.cost_usd is not None and ev.days + ev.lead_time_days <= limits.deadline_days
                    and ev.global_batch_seqs <= BATCH_ROUNDING * job.global_batch_seqs):
                if best is None or round(ev.cost_usd, 2) < round(best.cost_usd, 2):
                    best = ev
    return best, n


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=7)
    ap.add_argument("--brute", action="store_true")
    args = ap.parse_args()
    job, space, limits = query()
    t_table, t_first, t_top10 = [], [], []
    for _ in range(args.repeat):
        t0 = time.perf_counter()
        df, stats = table(job, space)
        t1 = time.perf_counter()
        masks = limits.violations(df, needs_price=True)
        first = PlanModel(df, ordering(df, "cost"), masks).solve(set(masks))
        t2 = time.perf_counter()
        result = plan(job, limits, space, objective="cost", top=10)
        t3 = time.perf_counter()
        t_table.append(t1 - t0)
        t_first.append(t2 - t1)
        t_top10.append(t3 - t2)
    best = df.iloc[first.rows[0]]
    print(f"machine: {os.cpu_count()} cores; {stats['tuples']:,} tuples, {stats['candidates']:,} candidates; "
          f"status {first.status}")
    print(f"#1: {int(best['count'])} x {best.accelerator} {best.acquisition}, {best.total_days:.1f} days, "
          f"${best.cost:,.0f}")
    print(f"median of {args.repeat}: candidate table {statistics.median(t_table):.3f} s; first CP-SAT solve "
          f"{statistics.median(t_first):.3f} s; table + solve {statistics.median(t_table) + statistics.median(t_first):.3f} s; "
          f"plan() with top-10 + explanation {statistics.median(t_top10):.3f} s")
    if args.brute:
        t0 = time.perf_counter()
        bf, n = brute(job, space, limits)
        dt = time.perf_counter() - t0
        print(f"brute force: {n:,} tuples through evaluate() in {dt:.1f} s; optimum {bf.count} x {bf.accelerator} "
              f"{bf.acquisition} ${bf.cost_usd:,.0f} (solver: ${result.plans[0].cost_usd:,.0f})")


if __name__ == "__main__":
    main()
