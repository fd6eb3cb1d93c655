"""Wall time of the scenario analyses: the Pareto frontier of every file in constraints/, a what-if
grid and a robustness run (in-process, after a warm-up import; reported, not asserted).

    python benchmarks/analysis_time.py
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from recommender import robust, scenario, whatif  # noqa: E402
from recommender.errors import GpuplanError  # noqa: E402


def main():
    print("| file | frontier | points | CP-SAT solves | seconds |")
    print("|---|---|---|---|---|")
    for f in sorted((ROOT / "constraints").glob("*.yaml")):
        sc = scenario.load(f)
        t = time.perf_counter()
        try:
            fr = sc.pareto()
        except GpuplanError as exc:
            print(f"| {f.name} | - | - | - | error: {exc} |")
            continue
        what = "cost vs days" if fr.kind == "train" else "cost vs e2e"
        print(f"| {f.name} | {what} | {len(fr.points)} | {fr.solves} | {time.perf_counter() - t:.2f} |")
    t = time.perf_counter()
    wi = whatif.run(str(ROOT / "constraints/cheapest-100b-60d.yaml"), ["deadline=30d,60d,90d", "budget=2M,4M"])
    print(f"\nwhatif cheapest-100b-60d, 3 x 2 grid + base: {len(wi.rows)} solves, {time.perf_counter() - t:.1f} s")
    for name in ("lora-finetune.yaml", "cheapest-100b-60d.yaml", "serve-70b-chat.yaml"):
        sc = scenario.load(ROOT / "constraints" / name)
        kind, result = sc.run()
        t = time.perf_counter()
        rb = robust.analyse(sc, kind, result)
        print(f"solve --robust {name}: {rb.solves} solves, {time.perf_counter() - t:.1f} s")


if __name__ == "__main__":
    main()
