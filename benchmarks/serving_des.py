"""The serving queue model against a discrete-event simulation of the same replica.

    python benchmarks/serving_des.py            # the table (about a minute)
    python benchmarks/serving_des.py --write    # also rewrite it in docs/SERVING.md

For each case the one-configuration evaluator (the path of `gpuplan serve --gpu ...`) picks the
slot cap, and the queue model gives the replica's edge: the most load (users or requests/s) at
which it says the TTFT and TPOT targets hold at the percentile (the planner then keeps
serve_capacity_margin of it free). The step-by-step simulation in tests/serving_sim.py
(no chain, no mean field: only the replica's step-time terms are shared) then runs that replica
at that load, and at 1.15 times it, and reports the same percentiles over 40,000 requests. The
capacity error is the model's against the simulation's own (the largest load at which the
simulation meets both targets, by bisection to 1%): positive means the model would load a
replica more than it can take (a fleet too small by that share).
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "benchmarks"))
sys.path.insert(0, str(ROOT / "tests"))

from serving_sim import Replica, simulate  # noqa: E402

from doc_table import show  # noqa: E402
from recommender import catalog  # noqa: E402
from recommender.formulas import queueing as qm  # noqa: E402
from recommender.serve_planner import serve_efficiency  # noqa: E402
from recommender.serving import ServeLayout, ServeWorkload, evaluate_serving, replica_steps  # noqa: E402

DOC = ROOT / "docs" / "SERVING.md"
START, END = "<!-- des-table:start -->", "<!-- des-table:end -->"
REQUESTS = 40000

# (label, workload, layout): chat, RAG-length prompts, long prompts beyond the token budget,
# small-memory parts where requests queue for a slot, fixed lengths, another percentile
CASES = [
    ("70B chat, closed loop", dict(model="llama-3-70b", prompt_tokens=512, output_tokens=256, users=1000,
                                   think_time_s=3.0, ttft_s=1.0, tpot_s=0.05),
     dict(accelerator="b200", tp=1, precision="fp8", kv_precision="fp8")),
    ("8B chat, open loop", dict(model="llama-3-8b", prompt_tokens=512, output_tokens=256, rate_rps=50.0,
                                ttft_s=1.0, tpot_s=0.03),
     dict(accelerator="h100-sxm", tp=1, precision="fp8", kv_precision="fp8")),
    ("7B, 1k prompts, closed", dict(model="mistral-7b", prompt_tokens=1000, output_tokens=200, users=300,
                                    think_time_s=10.0, ttft_s=0.5, tpot_s=0.03),
     dict(accelerator="a100-80g", tp=4, precision="bf16", kv_precision="bf16")),
    ("7B, 3k prompts > budget", dict(model="qwen2.5-7b", prompt_tokens=3000, output_tokens=500, rate_rps=4.0,
                                     ttft_s=2.0, tpot_s=0.03),
     dict(accelerator="l40s", tp=2, precision="fp8", kv_precision="fp8")),
    ("13B on L4, open", dict(model="llama-2-13b", prompt_tokens=256, output_tokens=128, rate_rps=10.0,
                             ttft_s=1.0, tpot_s=0.08),
     dict(accelerator="l4", tp=2, precision="fp8", kv_precision="fp8")),
    ("8B on L4, slot queueing", dict(model="llama-3-8b", prompt_tokens=1000, output_tokens=300, rate_rps=2.0,
                                     ttft_s=2.0, tpot_s=0.1),
     dict(accelerator="l4", tp=1, precision="bf16", kv_precision="bf16")),
    ("8B, fixed lengths", dict(model="llama-3-8b", prompt_tokens=512, output_tokens=256, rate_rps=50.0,
                               ttft_s=1.0, tpot_s=0.03, length_dist="fixed"),
     dict(accelerator="h100-sxm", tp=1, precision="fp8", kv_precision="fp8")),
    ("70B, 2k prompts, p90", dict(model="llama-3-70b", prompt_tokens=2000, output_tokens=300, users=400,
                                  think_time_s=5.0, ttft_s=2.0, tpot_s=0.04, percentile=0.9),
     dict(accelerator="h100-sxm", tp=2, precision="fp8", kv_precision="fp8")),
    # speculative decoding: a small draft model, an EAGLE head, prompt-lookup n-grams
    ("70B + 1B draft, open", dict(model="llama-3-70b", prompt_tokens=512, output_tokens=256, rate_rps=4.0,
                                  ttft_s=1.0, tpot_s=0.02, draft="llama-3.2-1b", draft_accept=0.7),
     dict(accelerator="h200", tp=1, precision="fp8", kv_precision="fp8", speculative=True)),
    ("70B + EAGLE, closed", dict(model="llama-3-70b", prompt_tokens=512, output_tokens=256, users=300,
                                 think_time_s=3.0, ttft_s=1.0, tpot_s=0.03, draft="eagle", draft_accept=0.75,
                                 draft_tokens=3),
     dict(accelerator="h100-sxm", tp=2, precision="fp8", kv_precision="fp8", speculative=True)),
    ("70B + EAGLE, falling acceptance", dict(model="llama-3-70b", prompt_tokens=512, output_tokens=256,
                                             rate_rps=6.0, ttft_s=1.0, tpot_s=0.02, draft="eagle",
                                             draft_accept=(0.85, 0.7, 0.55, 0.4)),
     dict(accelerator="h200", tp=2, precision="fp8", kv_precision="fp8", speculative=True)),
    ("8B + n-gram, open", dict(model="llama-3-8b", prompt_tokens=1000, output_tokens=300, rate_rps=20.0,
                               ttft_s=1.0, tpot_s=0.01, draft="ngram", draft_accept=0.5, draft_tokens=4),
     dict(accelerator="h100-sxm", tp=1, precision="fp8", kv_precision="fp8", speculative=True)),
]


def run_case(label: str, wl: dict, layout: dict) -> dict:
    w = ServeWorkload(**{**wl, "model": catalog.model(wl["model"])})
    lay = ServeLayout(**layout, replicas=1)
    ev = evaluate_serving(w, lay)
    acc = catalog.accelerator(lay.accelerator)
    spec = lay.speculative
    args = (w, acc, lay.precision, lay.kv_precision, [lay.tp], [lay.pp], [ev.batch], serve_efficiency(acc.id))
    s = replica_steps(*args, spec=spec)
    # the queue model's edge, before the planner's serve_capacity_margin
    cap = float(qm.capacity(s, w.queue, ttft=w.ttft_s, tpot=w.tpot_s)[0])
    at = evaluate_serving(w, lay.model_copy(update={"batch": ev.batch}), load=cap)
    # the simulation runs the engine's own steps and draws each step's accepted tokens itself
    e = replica_steps(*args, spec=spec, per_token_steps=False)
    rep = Replica(e.compute[0], e.memory[0], e.fixed[0], float(e.per_token[0]), int(e.slots[0]), int(e.budget[0]),
                  draft_tokens=w.draft_tokens if spec else 0, accept=w.draft_accept if spec else 0.0)
    p = w.percentile

    def des(load):
        kw = dict(users=round(load), think_s=w.think_time_s) if w.closed else dict(rate=load)
        sm = simulate(rep, w.prompt_tokens, w.output_tokens, requests=REQUESTS, length_dist=w.length_dist, **kw)
        return float(np.quantile(sm.ttft, p)), float(np.quantile(sm.tpot, p))

    def des_meets(load):
        ttft, tpot = des(load)
        return ttft <= w.ttft_s and tpot <= w.tpot_s

    out = {"label": label, "w": w, "ev": ev, "cap": cap, "model_ttft": at.ttft_ms, "model_tpot": at.tpot_ms}
    for key, load in (("des", cap), ("over", cap * 1.15)):
        out[f"{key}_ttft"], out[f"{key}_tpot"] = (x * 1e3 for x in des(load))
    # the simulation's own capacity: the largest load it meets both targets at (bisection to 1%)
    lo, hi = (cap, cap * 1.15) if out["des_ttft"] <= w.ttft_s * 1e3 and out["des_tpot"] <= w.tpot_s * 1e3 else (0.0, cap)
    while des_meets(hi) and hi < 8 * cap:
        lo, hi = hi, hi * 1.15
    while hi - lo > 0.01 * hi and (not w.closed or hi - lo > 1):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if des_meets(mid) else (lo, mid)
    out["des_cap"] = lo
    return out


def table(rows: list[dict]) -> str:
    lines = ["| case | replica | targets | edge model / DES | error | TTFT model / DES ms | "
             "TPOT model / DES ms | DES at 1.15x load |",
             "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        w, ev = r["w"], r["ev"]
        unit = "users" if w.closed else "req/s"
        pct = f"p{round(w.percentile * 100)}"
        targets = f"{pct} TTFT {w.ttft_s * 1e3:g}, TPOT {w.tpot_s * 1e3:g} ms"
        err = lambda a, b: f"{(a - b) / b * 100:+.0f}%"  # noqa: E731
        over = []
        if r["over_ttft"] > w.ttft_s * 1e3:
            over.append(f"TTFT {r['over_ttft']:,.0f}")
        if r["over_tpot"] > w.tpot_s * 1e3:
            over.append(f"TPOT {r['over_tpot']:.1f}")
        lines.append(
            f"| {r['label']} | {ev.accelerator} TP{ev.tp} {ev.precision}, {ev.batch} slots | {targets} | "
            f"{r['cap']:,.1f} / {r['des_cap']:,.1f} {unit} | {err(r['cap'], r['des_cap'])} | "
            f"{r['model_ttft']:,.0f} / {r['des_ttft']:,.0f} | {r['model_tpot']:.1f} / {r['des_tpot']:.1f} | "
            f"{'misses: ' + ', '.join(over) if over else 'still meets'} |")
    return "\n".join(lines)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--write", action="store_true", help="rewrite the table in docs/SERVING.md")
    ap.add_argument("--only", default="", help="run only the cases whose label contains this")
    args = ap.parse_args()
    if args.write and args.only:
        raise SystemExit("--write rewrites the whole table: run it without --only")
    rows = [run_case(*c) for c in CASES if args.only in c[0]]
    show(table(rows), args.write, DOC, START, END)


if __name__ == "__main__":
    main()
