"""Wall time of `gpuplan fleet` on the example portfolios: compiling (the candidate and replica
tables, the same formulas as train and serve) and the CP-SAT solve, in-process, median of N.

    python benchmarks/fleet_time.py [--repeat 3]
"""

import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recommender import fleet, portfolio  # noqa: E402
from recommender.fleet_solver import FleetModel  # noqa: E402


def main(repeat: int = 3) -> None:
    print("| portfolio | jobs | periods | accelerators | options + replica kinds | compile s | solve s | status | gap |")
    print("|---|---|---|---|---|---|---|---|---|")
    for path in sorted((ROOT / "constraints" / "portfolios").glob("*.yaml")):
        comp, solve = [], []
        for _ in range(repeat):
            t0 = time.perf_counter()
            pf = portfolio.load(path)
            inst = portfolio.compile(pf)
            t1 = time.perf_counter()
            out = FleetModel(inst, time_limit_s=30).solve()
            solve.append(time.perf_counter() - t1)
            comp.append(t1 - t0)
        n_opts = sum(len(j.options) for j in inst.jobs) + sum(len(s.replicas) for s in inst.services)
        g = fleet.gap(out)
        print(f"| {path.stem} | {len(inst.jobs) + len(inst.services)} | {inst.periods} {inst.step}s | "
              f"{len(inst.types)} | {n_opts} | {statistics.median(comp):.2f} | {statistics.median(solve):.2f} | "
              f"{out.status} | {'' if g is None else f'{g:.2%}'} |")


if __name__ == "__main__":
    main(int(sys.argv[sys.argv.index("--repeat") + 1]) if "--repeat" in sys.argv else 3)
