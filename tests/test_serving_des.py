"""Fleets the serving planner returns, run in a discrete-event simulation (tests/serving_sim.py).

The simulation shares nothing with the planner's queue model but the replica's step-time terms:
requests arrive (Poisson, or users who think between requests), wait for a slot, have their
prompts chunked into token-budget steps beside the running decodes, and leave after a geometric
number of output tokens. Each part of a fleet is simulated as one of its replicas at the share
of the demand the planner gives it (in proportion to capacity, whole users in a closed loop).

Must hold (issue 14): the fleet meets its TTFT and TPOT targets at the stated percentile over
all its requests; and, for fleets of 3 or more replicas, the same demand on one replica fewer
(of the part that carries the most load) does not (the plan is tight, not padded).

"Meets" allows TOL: where every slot is busy the TPOT percentile is the full-slot step itself,
which does not fall with the load, so the capacity margin does not move it; there the model's
step is 0.2% short of the simulation's (7b-closed-a100: 29.94 ms planned, 30.01 ms simulated,
the same on six seeds, sd 0.007 ms).
"""

from __future__ import annotations

import functools
import math

import pytest

from recommender import catalog
from recommender.serve_planner import ServeLimits, ServeSpace, plan_serving, serve_efficiency
from recommender.serving import ServeWorkload, replica_steps

from serving_sim import Replica, simulate, weighted_quantile

REQUESTS = 30000
TOL = 0.01       # see the module docstring

# (name, workload, accelerators): chat, RAG-length and over-budget prompts, a small-memory part,
# open and closed loops, p99 and p90
FLEETS = [
    ("8b-open-h100", dict(model="llama-3-8b", prompt_tokens=512, output_tokens=256, rate_rps=300.0,
                          ttft_s=1.0, tpot_s=0.03), ("h100-sxm",)),
    ("70b-closed-b200", dict(model="llama-3-70b", prompt_tokens=512, output_tokens=256, users=1000,
                             think_time_s=3.0, ttft_s=1.0, tpot_s=0.05), ("b200",)),
    ("7b-closed-a100", dict(model="mistral-7b", prompt_tokens=1000, output_tokens=200, users=1000,
                            think_time_s=10.0, ttft_s=0.5, tpot_s=0.03), ("a100-80g",)),
    ("7b-long-prompts-l40s", dict(model="qwen2.5-7b", prompt_tokens=3000, output_tokens=500, rate_rps=12.0,
                                  ttft_s=2.0, tpot_s=0.03), ("l40s",)),
    ("13b-open-l4", dict(model="llama-2-13b", prompt_tokens=256, output_tokens=128, rate_rps=45.0,
                         ttft_s=1.0, tpot_s=0.08), ("l4",)),
    ("70b-p90-h100", dict(model="llama-3-70b", prompt_tokens=2000, output_tokens=300, users=300,
                          think_time_s=5.0, ttft_s=2.0, tpot_s=0.04, percentile=0.9), ("h100-sxm",)),
    ("8b-p90-open-l40s", dict(model="llama-3-8b", prompt_tokens=1000, output_tokens=300, rate_rps=35.0,
                              ttft_s=1.0, tpot_s=0.04, percentile=0.9), ("l40s",)),
    # prefix caching: a 1,500-token system prompt cached for 90% of requests (the simulation draws
    # hits request by request; the queue model uses the mean prompt computed, 650 tokens)
    ("8b-prefix-cache-h100", dict(model="llama-3-8b", prompt_tokens=2000, output_tokens=200, rate_rps=500.0,
                                  ttft_s=0.5, tpot_s=0.03, prefix_tokens=1500, prefix_hit=0.9), ("h100-sxm",)),
    # speculative decoding (the planner prices every replica with and without it; the simulation
    # draws each sequence's accepted tokens step by step): a 1B draft model, an EAGLE head in a
    # closed loop, prompt-lookup n-grams
    ("70b-spec-draft-h200", dict(model="llama-3-70b", prompt_tokens=512, output_tokens=256, rate_rps=16.0,
                                 ttft_s=1.0, tpot_s=0.02, draft="llama-3.2-1b", draft_accept=0.7), ("h200",)),
    ("70b-spec-eagle-closed-h100", dict(model="llama-3-70b", prompt_tokens=512, output_tokens=256, users=660,
                                        think_time_s=3.0, ttft_s=1.0, tpot_s=0.03, draft="eagle", draft_accept=0.75,
                                        draft_tokens=3), ("h100-sxm",)),
    ("8b-spec-ngram-h100", dict(model="llama-3-8b", prompt_tokens=1000, output_tokens=300, rate_rps=100.0,
                                ttft_s=1.0, tpot_s=0.01, draft="ngram", draft_accept=0.5), ("h100-sxm",)),
]
# A miss the model is known for (docs/SERVING.md): with prefix caching at a partial hit rate,
# prompts are a mixture (500 or 2,000 tokens computed) that the model, which knows one length,
# runs at E[X^2] / E[X] (962) to be safe: the mean (650) let the planned fleet miss p99 TPOT by
# 6%; this plans more replicas than the simulation needs: padded. (The closed loop at p90,
# 70b-p90-h100, was padded by about 14% until serving took training's compute rule on
# 2026-12-07; with attention as its own kernel its fleet is tight.)
PADDED = {"8b-prefix-cache-h100"}


@functools.lru_cache(maxsize=None)
def planned(name: str):
    _, wl, gpus = next(f for f in FLEETS if f[0] == name)
    w = ServeWorkload(**{**wl, "model": catalog.model(wl["model"])})
    # aggregated fleets: disaggregated ones are simulated in tests/test_disaggregated.py
    result = plan_serving(w, ServeLimits(acquisitions=("on_demand",)), ServeSpace(accelerators=gpus, disaggregate="off"),
                          top=1)
    assert result.status == "optimal" and result.plans
    return w, result.plans[0]


def replica(w: ServeWorkload, part) -> Replica:
    acc = catalog.accelerator(part.accelerator)
    # the engine's own steps: with speculative decoding the simulation draws each step's accepted
    # tokens itself (the planner's per-token steps are what it checks)
    s = replica_steps(w, acc, part.precision, part.kv_precision, [part.tp], [part.pp], [part.batch],
                      serve_efficiency(acc.id), spec=part.speculative, per_token_steps=False)
    return Replica(s.compute[0], s.memory[0], s.fixed[0], float(s.per_token[0]), int(s.slots[0]), int(s.budget[0]),
                   draft_tokens=w.draft_tokens if part.speculative else 0,
                   accept=w.draft_accept if part.speculative else 0.0)


def shares(w: ServeWorkload, parts: list[tuple[object, int]]) -> list[float]:
    """Each replica's load: the demand in proportion to capacity (whole users in a closed loop,
    as the planner and a least-loaded balancer split it)."""
    total = sum(p.capacity_per_replica * r for p, r in parts)
    out = [p.capacity_per_replica * w.demand / total for p, _ in parts]
    return [float(math.ceil(x - 1e-9)) for x in out] if w.closed else out


def simulate_fleet(w: ServeWorkload, parts: list[tuple[object, int]], seed: int = 0) -> dict[str, float]:
    """The fleet's TTFT and TPOT at the percentile over all its requests: one replica per part
    simulated at its share, its samples weighted by the requests that part serves."""
    samples, weights = [], []
    for (part, r), load in zip(parts, shares(w, parts)):
        if r == 0:
            continue
        kw = dict(users=load, think_s=w.think_time_s) if w.closed else dict(rate=load)
        sm = simulate(replica(w, part), w.prompt_tokens, w.output_tokens, requests=REQUESTS,
                      length_dist=w.length_dist, seed=seed, prefix_tokens=w.prefix_tokens, prefix_hit=w.prefix_hit,
                      **kw)
        rate = len(sm.steps) and len(sm.ttft) / sm.steps.sum()     # requests/s this replica served
        samples.append(sm)
        weights.append(r * rate)
    return {c: weighted_quantile([getattr(s, c) for s in samples], weights, w.percentile) for c in ("ttft", "tpot")}


@pytest.mark.parametrize("name", [f[0] for f in FLEETS])
def test_planned_fleet_meets_its_targets_in_simulation(name):
    w, plan = planned(name)
    got = simulate_fleet(w, [(p, p.replicas) for p in plan.parts])
    assert got["ttft"] <= w.ttft_s * (1 + TOL) and got["tpot"] <= w.tpot_s * (1 + TOL), (plan.parts, got)


@pytest.mark.parametrize("name", [pytest.param(f[0], marks=pytest.mark.xfail(strict=True, reason="padded (see PADDED)"))
                                  if f[0] in PADDED else f[0] for f in FLEETS])
def test_one_replica_fewer_misses_a_target(name):
    w, plan = planned(name)
    if plan.replicas < 3:
        pytest.skip(f"{plan.replicas} replicas")
    main = max(range(len(plan.parts)), key=lambda j: plan.parts[j].replicas * plan.parts[j].capacity_per_replica)
    fewer = [(p, p.replicas - (j == main)) for j, p in enumerate(plan.parts)]
    got = simulate_fleet(w, [(p, r) for p, r in fewer if r > 0])
    assert got["ttft"] > w.ttft_s * (1 + TOL) or got["tpot"] > w.tpot_s * (1 + TOL), (plan.parts, got)


def test_fleets_cover_open_and_closed_loops_and_three_or_more_replicas():
    kinds = {"open": 0, "closed": 0, "3+": 0, "models": set()}
    for name, _, _ in FLEETS:
        w, plan = planned(name)
        kinds["closed" if w.closed else "open"] += 1
        kinds["3+"] += plan.replicas >= 3
        kinds["models"].add(w.model.id)
    assert kinds["open"] >= 2 and kinds["closed"] >= 2 and kinds["3+"] >= 3 and len(kinds["models"]) >= 4, kinds


# closed loops with no or short think time (a benchmark's fixed concurrency: NIM's and genai-perf's
# tables): each user sends again as soon as (or soon after) its answer ends. Before 2026-12-07 the
# queue model met the prompts of such a loop at the rate of decode-only steps, in proportion to
# each step's length, and kept states beyond the users: p99 TTFT 7.4 s against the simulation's
# 0.83 s at 25 users, unbounded at 40, TPOT up to 9 times the simulation's
NO_THINK = [(25, 0.0, 5000, 500), (40, 0.0, 2000, 200), (40, 0.1, 2000, 200), (40, 0.5, 2000, 200),
            (40, 2.0, 2000, 200)]


@pytest.mark.parametrize("users,think,prompt,output", NO_THINK)
def test_closed_loop_without_think_time_matches_simulation(users, think, prompt, output):
    """Llama-3.3-70B on H100 TP2 FP8, as many slots as users, think times from 0 to 2 s: the queue
    model's p99 TTFT and TPOT are never more than 10% below the simulation's nor above 1.6 times
    them, and its throughput is within 5% (TTFT 7.4 s against 0.83 s at 25 users before the fix)."""
    import numpy as np

    from recommender.formulas import queueing as qm

    w = ServeWorkload(model=catalog.model("llama-3.3-70b"), prompt_tokens=prompt, output_tokens=output,
                      users=users, think_time_s=think, ttft_s=10.0, tpot_s=1.0)
    acc = catalog.accelerator("h100-sxm")
    args = (w, acc, "fp8", "fp8", [2], [1], [users], serve_efficiency(acc.id))
    f = qm.figures(replica_steps(*args), w.queue, np.array([float(users)]))
    e = replica_steps(*args, per_token_steps=False)
    rep = Replica(e.compute[0], e.memory[0], e.fixed[0], float(e.per_token[0]), int(e.slots[0]), int(e.budget[0]))
    sm = simulate(rep, prompt, output, users=users, think_s=think, requests=20000)
    ttft, tpot = np.quantile(sm.ttft, 0.99), np.quantile(sm.tpot, 0.99)
    served = len(sm.e2e) / (sm.arrived_at.max() - sm.arrived_at.min())   # requests/s after the warm-up
    assert 0.9 * ttft <= f.ttft[0] <= 1.6 * ttft
    assert 0.9 * tpot <= f.tpot[0] <= 1.6 * tpot
    assert f.throughput[0] == pytest.approx(served, rel=0.05)


@pytest.mark.xfail(strict=True, reason="convoys of fixed-length requests in a closed loop (docs/SERVING.md)")
def test_fixed_length_closed_loop_convoys_are_a_known_miss():
    """40 users, fixed 200-token answers, 0.5 s think time: requests admitted together finish and
    return together and queue their prompts behind each other again; the simulation's p99 TTFT
    (4.2 s) is 4.6 times the model's (0.93 s). Kept as an expected failure so that a model that
    learns convoys shows up here, and `serve` warns of it in its note."""
    import numpy as np

    from recommender.formulas import queueing as qm

    w = ServeWorkload(model=catalog.model("llama-3.3-70b"), prompt_tokens=2000, output_tokens=200, users=40,
                      think_time_s=0.5, length_dist="fixed", ttft_s=10.0, tpot_s=1.0)
    acc = catalog.accelerator("h100-sxm")
    args = (w, acc, "fp8", "fp8", [2], [1], [40], serve_efficiency(acc.id))
    f = qm.figures(replica_steps(*args), w.queue, np.array([40.0]))
    e = replica_steps(*args, per_token_steps=False)
    rep = Replica(e.compute[0], e.memory[0], e.fixed[0], float(e.per_token[0]), int(e.slots[0]), int(e.budget[0]))
    sm = simulate(rep, 2000, 200, users=40, think_s=0.5, length_dist="fixed", requests=20000)
    assert f.ttft[0] >= 0.9 * np.quantile(sm.ttft, 0.99)


def test_serve_warns_of_convoys_where_a_closed_loop_has_fixed_lengths():
    from recommender.serve_planner import queue_note

    kw = dict(model=catalog.model("llama-3.3-70b"), prompt_tokens=2000, output_tokens=200)
    assert "convoys" in queue_note(ServeWorkload(**kw, users=40, think_time_s=0.5, length_dist="fixed"))
    assert "convoys" not in queue_note(ServeWorkload(**kw, users=40, think_time_s=0.5))
    assert "convoys" not in queue_note(ServeWorkload(**kw, rate_rps=4.0, length_dist="fixed"))
