"""How `train`'s time grows with the catalog: the headline question (100B on 2T tokens in 60 days)
with the catalog's accelerators copied 1x, 2x, 4x and 8x (each copy with its own id, the same
figures, efficiency and prices), in-process, median of 3. Prints a table and the fitted slope of
log(time) against log(catalog size): 1.0 is linear.

    python benchmarks/catalog_scaling.py
"""

from __future__ import annotations

import math
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recommender import api, candidates, catalog  # noqa: E402


def copies(k: int):
    """k-1 extra copies of every accelerator, efficiency row, cloud price and purchase price."""
    accs, effs, clouds, buys = [], [], [], []
    for j in range(1, k):
        for a in catalog.accelerators().values():
            accs.append(a.model_copy(update={"id": f"{a.id}-copy{j}", "aliases": [], "name": f"{a.name} copy {j}"}))
            e = catalog.efficiency(a.id)
            if e is not None:
                effs.append(e.model_copy(update={"accelerator": f"{a.id}-copy{j}"}))
        clouds += [p.model_copy(update={"accelerator": f"{p.accelerator}-copy{j}"}) for p in catalog.cloud_prices()]
        buys += [p.model_copy(update={"accelerator": f"{p.accelerator}-copy{j}"}) for p in catalog.purchase_prices()]
    return dict(accelerators=accs, efficiencies=effs, cloud_prices=clouds, purchase_prices=buys)


def main():
    sizes, times = [], []
    print("| copies | accelerators | candidates | seconds (median of 3) |")
    print("|---|---|---|---|")
    for k in (1, 2, 4, 8):
        with catalog.overrides(**copies(k)):
            n = len(catalog.accelerators())
            runs = []
            for _ in range(3):
                candidates._TABLES.clear()
                t = time.perf_counter()
                result = api.train(params="100B", tokens="2T", deadline="60d")
                runs.append(time.perf_counter() - t)
        sizes.append(n)
        times.append(statistics.median(runs))
        print(f"| {k}x | {n} | {result.candidates:,} | {times[-1]:.2f} |")
    xs, ys = [math.log(s) for s in sizes], [math.log(t) for t in times]
    mx, my = statistics.mean(xs), statistics.mean(ys)
    slope = sum((x - mx) * (y - my) for x, y in zip(xs, ys)) / sum((x - mx) ** 2 for x in xs)
    print(f"\nslope of log(time) vs log(accelerators): {slope:.2f} (1.0 = linear)")


if __name__ == "__main__":
    main()
