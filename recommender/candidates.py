"""The discrete search space of training plans, evaluated in bulk by the shared formulas.

A candidate is one tuple (accelerator, precision, acquisition, count, TP, PP, VP, EP, ZeRO,
recompute, micro-batch); DP = count / (TP * PP); EP (mixture-of-experts models only) divides DP
and the number of experts. PP need not divide the layers (the fullest stage sets the pace), but
interleaving (VP > 1) needs PP * VP to. Every tuple goes through
`evaluate.training_terms` and `evaluate.cheapest_offer` (arrays, not a second copy of any formula);
tuples that do not fit in memory are dropped, then dominated tuples are dropped exactly:

  within one (accelerator, precision, acquisition, count, TP) group every constraint the
  planner knows (budget, deadline, GPUs, power, allowed sets) depends on a row only through its
  cost and days, and cost grows with days there; so the fastest row of the group (ties broken
  by lower ZeRO stage, less recomputation, VP 1, smaller EP, smaller micro-batch; PP is among
  the knobs) is as good as any other.

The groups kept are still distinct in the things a person compares (accelerator, count,
acquisition, tensor-parallel width), so ranked alternatives come from this table too; two plans
that differ only in how the pipeline is cut are not offered as alternatives. (Grouping by PP as
well multiplied the table by five once PP no longer had to divide the layers, and the top-10
solve by fifteen.)
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import pandas as pd

from recommender import catalog
from recommender.errors import GpuplanError, Infeasible
from recommender.formulas.performance import BATCH_ROUNDING
from recommender.evaluate import PRECISIONS, cheapest_offer, method_allows, pricing_options, training_terms
from recommender.spec import TrainJob

RECOMPUTE_ORDER = {"none": 0, "selective": 1, "full": 2}
ACQUISITIONS = ("on_demand", "spot", "reserved", "buy")


@dataclass(frozen=True)
class SearchSpace:
    """What the planner may choose from. Counts: 1, 2, 4 ... up to one node, then whole nodes on
    a 1-1.5-2 series (8, 12, 16, 24, 32, 48, ...) up to max_gpus, plus max_gpus and any owned count.
    An accelerator with no published inter-node bandwidth is limited to its scale-up domain (one
    node, or an NVLink / ICI domain where a source gives one): `Accelerator.span_problem`, the rule
    `evaluate` applies too."""

    accelerators: tuple[str, ...] = ()
    precisions: tuple[str, ...] = ("bf16",)
    acquisitions: tuple[str, ...] = ACQUISITIONS
    providers: tuple[str, ...] | None = None
    tp: tuple[int, ...] = (1, 2, 4, 8)
    pp: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    vp: tuple[int, ...] = (1, 2, 4)
    ep: tuple[int, ...] = (1, 2, 4, 8, 16, 32, 64)
    zero: tuple[int, ...] = (0, 1, 2, 3)
    recompute: tuple[str, ...] = ("none", "selective", "full")
    micro_batch: tuple[int, ...] = (1, 2, 4)
    max_gpus: int = 16384
    counts: tuple[int, ...] | None = None
    owned: dict[str, int] = field(default_factory=dict)
    amortize: bool = False
    headroom: float | None = None

    def gpu_counts(self, gpus_per_node: int, owned: int = 0) -> list[int]:
        if self.counts is not None:
            return sorted(c for c in set(self.counts) if c <= self.max_gpus)
        out = {c for c in (1, 2, 4) if c < gpus_per_node}
        node = gpus_per_node
        k = 1
        while node * k <= self.max_gpus:
            out.add(node * k)
            if node * (3 * k // 2) <= self.max_gpus and k >= 2:
                out.add(node * (3 * k // 2))
            k *= 2
        if owned and owned <= self.max_gpus:
            out.add(owned)
        out.add(self.max_gpus - self.max_gpus % min(node, self.max_gpus))
        return sorted(c for c in out if c >= 1)


def layout_grid(job: TrainJob, acc, space: SearchSpace, owned: int = 0) -> pd.DataFrame:
    """Every valid (count, tp, pp, vp, ep, zero, recompute, micro_batch) for one accelerator,
    built as one numpy cross product and filtered with masks."""
    return pd.DataFrame(_grid_columns(job, acc, space, owned))


def _grid_columns(job: TrainJob, acc, space: SearchSpace, owned: int = 0) -> dict[str, np.ndarray]:
    """layout_grid's columns as numpy arrays (the table is built on arrays, a frame only at the end)."""
    m = job.model
    counts = [c for c in space.gpu_counts(acc.node, owned) if acc.span_problem(c) is None]
    eps = space.ep if m.is_moe else (1,)
    rc_codes = np.arange(len(space.recompute))
    axes = np.meshgrid(np.asarray(counts, dtype=np.int64), np.asarray(space.tp, dtype=np.int64),
                       np.asarray(space.pp, dtype=np.int64), np.asarray(space.vp, dtype=np.int64),
                       np.asarray(eps, dtype=np.int64), np.asarray(space.zero, dtype=np.int64), rc_codes,
                       np.asarray(space.micro_batch, dtype=np.int64), indexing="ij")
    count, tp, pp, vp, ep, zero, rc, mb = (a.ravel() for a in axes)
    ok = ((m.heads % tp == 0) & (count % (tp * pp) == 0) & (pp <= m.layers) & (tp <= acc.domain)
          & ((vp == 1) | ((pp > 1) & (m.layers % (pp * vp) == 0))))
    dp = np.where(ok, count // np.maximum(tp * pp, 1), 0)
    ok &= (dp * mb <= job.global_batch_seqs)
    if m.is_moe:
        ok &= (dp % ep == 0) & (m.experts % ep == 0)
    idx = np.flatnonzero(ok)
    return {"count": count[idx], "tp": tp[idx], "pp": pp[idx], "vp": vp[idx], "dp": dp[idx], "ep": ep[idx],
            "zero": zero[idx], "recompute": np.asarray(space.recompute, dtype=object)[rc[idx]],
            "micro_batch": mb[idx]}


def evaluate_grid(job: TrainJob, acc, precision: str, grid: pd.DataFrame, headroom: float) -> pd.DataFrame:
    """The formulas over a whole grid at once; adds memory, fit and days columns."""
    cols = {c: grid[c].values for c in grid.columns}
    return pd.DataFrame(_evaluate_columns(job, acc, precision, cols, headroom))


def _evaluate_columns(job: TrainJob, acc, precision: str, g: dict[str, np.ndarray],
                      headroom: float) -> dict[str, np.ndarray]:
    eff = catalog.efficiency_for(acc.id, job.kernels).matmul_efficiency  # 16-bit; training_terms scales FP8 and the stack
    t = training_terms(job, acc, precision, g["tp"], g["pp"], g["vp"], g["dp"], g["zero"], g["recompute"],
                       g["micro_batch"], eff, headroom, g["ep"])
    n = len(g["tp"])
    full = lambda x, dtype: np.broadcast_to(np.asarray(x, dtype=dtype), (n,)).copy()  # noqa: E731
    return {**g, "memory_gib": full(t.memory.total, float) / 2**30,
            "fits": full(t.fits, bool) & (full(t.effective_batch, float) <= BATCH_ROUNDING * job.global_batch_seqs),
            "days": full(t.days, float), "tokens_s_gpu": full(t.tokens_s_gpu, float)}


def usable(acc, precision: str, job: TrainJob | None = None) -> bool:
    return (acc.peak_tflops(precision) is not None and acc.memory_gib is not None
            and (job is None or method_allows(job, precision))
            and catalog.efficiency(acc.id) is not None)


def nothing_to_plan(job: TrainJob, space: SearchSpace) -> GpuplanError:
    """Why a table came out empty: the input's fault (no accelerator in the space runs the precision
    or the method asked for; exit 2) or no candidate holds the model (Infeasible; exit 3)."""
    accs = [catalog.accelerator(a) for a in space.accelerators]
    named = catalog.listed([a.id for a in accs])
    precisions = ",".join(space.precisions)
    if not any(acc.peak_tflops(p) is not None for acc in accs for p in space.precisions):
        have = sorted({p for acc in accs for p in PRECISIONS if acc.peak_tflops(p) is not None})
        return GpuplanError("precision", precisions, f"no accelerator in the search space ({named}) has a "
                            f"published {' or '.join(space.precisions)} peak"
                            + (f"; try --precision {','.join(have)}" if have else ""))
    if not any(method_allows(job, p) for p in space.precisions):
        return GpuplanError("precision", precisions, f"--method {job.method} computes in 16 bits: allow bf16 "
                            "or fp16")
    if not any(usable(acc, p, job) for acc in accs for p in space.precisions):
        return GpuplanError("gpus", named, "no accelerator in the search space has a published memory size and "
                            f"a calibrated efficiency at {precisions}; see `gpuplan catalog`")
    return Infeasible("model", job.model.id, f"no accelerator in the search space can hold this model at "
                      f"{job.seq_len:,} tokens per sequence (activations grow with the sequence: try a shorter "
                      "--seq-len; or more GPUs with --max-gpus, or other accelerators)")


def _fastest_per_group(ev: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Per (count, TP) of one accelerator and precision, the fastest row (ties: lower ZeRO stage,
    less recomputation, shallower PP, VP 1, smaller EP, smaller micro-batch). Cost and time both
    grow with days inside such a group for every acquisition mode (cloud hours, energy and
    colocation of bought or owned GPUs), so this row is the group's best under any limit."""
    rc = np.array([RECOMPUTE_ORDER[r] for r in ev["recompute"]], dtype=np.int64)
    order = np.lexsort((ev["micro_batch"], ev["ep"], ev["vp"], ev["pp"], rc, ev["zero"], ev["days"]))
    key = ev["count"][order] * (int(ev["tp"].max()) + 1) + ev["tp"][order]
    _, first = np.unique(key, return_index=True)
    keep = order[np.sort(first)]                 # each group's first row in that order, in that order
    return {c: v[keep] for c, v in ev.items()}


_TABLES: dict[str, tuple[pd.DataFrame, dict[str, int]]] = {}
TABLE_CACHE = 4  # whatif / pareto / robustness points that change only limits reuse the table


def _state_key(job: TrainJob, space: SearchSpace) -> str:
    """Everything a table depends on: the job, the space, and the catalog as this command sees it
    (scenario layers, the user's site values, the price market, the parts the user named)."""
    from recommender import prices

    return repr((job.model_dump_json(), repr(space), repr(catalog._LAYERS), repr(catalog._ASSUMING[-1]),
                 prices.market(), sorted(prices._NAMED[-1]), id(catalog._cloud_prices())))


def table(job: TrainJob, space: SearchSpace) -> tuple[pd.DataFrame, dict[str, int]]:
    """All fitting, non-dominated candidates with cost, days, power; and counts for the report.
    The last few tables are kept: a query that changes only limits gets a copy of the same table."""
    key = _state_key(job, space)
    if key not in _TABLES:
        if len(_TABLES) >= TABLE_CACHE:
            _TABLES.pop(next(iter(_TABLES)))
        _TABLES[key] = _build_table(job, space)
    df, stats = _TABLES[key]
    return df.copy(), dict(stats)


def _build_table(job: TrainJob, space: SearchSpace) -> tuple[pd.DataFrame, dict[str, int]]:
    a = catalog.assumption
    headroom = a("memory_headroom") if space.headroom is None else space.headroom
    pue = a("pue")
    frames, stats = [], {"tuples": 0, "fitting": 0}
    for acc_id in space.accelerators:
        acc = catalog.accelerator(acc_id)
        owned = space.owned.get(acc.id, 0)
        grid = None
        for precision in space.precisions:
            if not usable(acc, precision, job):
                continue
            if grid is None:
                grid = _grid_columns(job, acc, space, owned)
            ev = _evaluate_columns(job, acc, precision, grid, headroom)
            n = len(ev["fits"])
            stats["tuples"] += n * len(space.acquisitions)
            fits = ev.pop("fits")
            ev = {c: v[fits] for c, v in ev.items()}
            n = len(ev["count"])
            stats["fitting"] += n * len(space.acquisitions)
            if not n:
                continue
            ev = _fastest_per_group(ev)  # the same row wins for every acquisition: prune first
            n = len(ev["count"])
            count = ev["count"]
            for acq in space.acquisitions:
                options = pricing_options(acc, acq, space.providers) or [None]
                cost, pick = cheapest_offer(options, acc, count, ev["days"], space.amortize, owned)
                extra = count > owned
                lead = options[0].lead_time_days if options[0] is not None else 0.0
                # providers as pandas infers them part by part (str, or object where every one is None)
                provider = pd.Series([None if options[k] is None else options[k].provider for k in pick])
                acquisition = np.full(n, acq, dtype=object)
                if owned:
                    acquisition[~extra] = "owned"
                    provider[~extra] = "owned"
                frames.append({**ev, "accelerator": np.full(n, acc.id, dtype=object),
                               "vendor": np.full(n, acc.vendor, dtype=object),
                               "precision": np.full(n, precision, dtype=object), "acquisition": acquisition,
                               "provider": provider, "cost": cost,
                               "owned": np.minimum(count, owned), "lead_days": np.where(extra, lead, 0.0),
                               "power_kw": (np.full(n, np.nan) if acc.tdp_w is None
                                            else count * acc.tdp_w / 1000 * pue)})
    if not frames:
        return pd.DataFrame(), stats
    cols = {c: np.concatenate([f[c] for f in frames]) for c in frames[0] if c != "provider"}
    provider = pd.concat([f["provider"] for f in frames], ignore_index=True)
    df = pd.DataFrame(cols)
    df.insert(list(frames[0]).index("provider"), "provider", provider)
    df["total_days"] = df.days + df.lead_days
    # identical owned-only rows appear once per acquisition mode: keep one
    df = df.drop_duplicates(subset=["accelerator", "precision", "acquisition", "count", "tp", "pp", "vp", "ep",
                                    "zero", "recompute", "micro_batch"])
    df["_rc"] = df.recompute.map(RECOMPUTE_ORDER)
    df = df.sort_values(["days", "zero", "_rc", "pp", "vp", "ep", "micro_batch"], kind="mergesort")
    df = df.drop(columns=["_rc"]).reset_index(drop=True)
    stats["candidates"] = len(df)
    return df, stats
