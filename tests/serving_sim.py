"""A discrete-event simulation of one serving replica, step by step, as the engine runs it.

Independent of the queueing model (recommender.formulas.queueing): no chain, no mean field.
Each engine step
  1. admits waiting requests (FIFO) while fewer than B sequences run;
  2. runs one decode token for every sequence past its prefill, and fills the rest of the token
     budget with prompt chunks of the admitted requests, oldest first;
  3. takes T = max(C(n) + k c, M(n)) + F(n) seconds (n sequences running, c prompt tokens): the
     replica's roofline terms, the only thing shared with the planner.
A request's first token comes at the end of the step that finishes its prompt; each later step
gives it one more token. TTFT = first token - arrival; TPOT = (last - first) / (tokens - 1), per
request, as serving benchmarks report it. Arrivals are Poisson (open loop) or users who think an
exponential time between a response and their next request (closed loop).

Speculative decoding (Replica.draft_tokens k > 0): each step every decoding sequence verifies k
drafted tokens and takes its budget's k + 1 tokens; it gains 1..k + 1 tokens, drawn per sequence
and step (each drafted token accepted with probability `accept`, or the position's own rate,
until the first rejection, then the target's own token), and finishes once it has its output
length. The step's terms are the engine's whole step (draft passes and the verifying pass), not
the planner's per-token steps.
"""

from __future__ import annotations

import heapq
from collections import deque
from dataclasses import dataclass

import numpy as np


@dataclass
class Replica:
    compute: np.ndarray   # seconds at n = 0..B running
    memory: np.ndarray
    fixed: np.ndarray
    per_token: float
    slots: int
    budget: int
    draft_tokens: int = 0   # speculative decoding: tokens drafted per step (0: off)
    accept: float | tuple = 0.0   # the chance each drafted token is accepted (or one per position)


@dataclass
class Samples:
    ttft: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray
    length: np.ndarray   # output tokens of each TPOT sample
    wait: np.ndarray     # seconds each request queued for a slot (TTFT's order)
    busy: np.ndarray     # running sequences at each step (time-weighted by step length)
    steps: np.ndarray    # each step's length
    # per request, in TTFT's order: its index in the arrivals (a trace's order), arrival and
    # first-token times; and the index of each TPOT sample (disaggregated fleets chain replicas)
    ids: np.ndarray | None = None
    arrived_at: np.ndarray | None = None
    first_at: np.ndarray | None = None
    tpot_ids: np.ndarray | None = None


def simulate(rep: Replica, prompt: int, output: float, rate: float | None = None, users: float | None = None,
             think_s: float = 0.0, length_dist: str = "exponential", requests: int = 20000,
             seed: int = 0, prefix_tokens: int = 0, prefix_hit: float = 0.0, trace=None,
             lengths=None) -> Samples:
    """`prefix_hit` of the requests (drawn one by one) find the first `prefix_tokens` of their
    prompt cached and prefill only the rest (the queue model uses the mean). trace: arrival times
    (sorted) instead of Poisson ones, with `lengths` their output lengths (else drawn); every
    request of the trace is counted (no warm-up), `requests` ignored."""
    rng = np.random.RandomState(seed)

    def out_len() -> int:
        if length_dist == "fixed":
            return int(round(output))
        return int(rng.geometric(1.0 / output))

    arrivals: list[tuple[float, int]] = []   # (time, user)
    if trace is not None:
        arrivals = [(float(x), -2) for x in trace]        # already a heap: sorted
        requests = len(arrivals)
    elif users is not None:
        n_users = int(round(users))
        for u in range(n_users):
            heapq.heappush(arrivals, (rng.exponential(think_s) if think_s > 0 else 0.0, u))
    else:
        heapq.heappush(arrivals, (rng.exponential(1.0 / rate), -1))
    waiting: deque = deque()
    prefilling: deque = deque()      # [request, prompt tokens left]
    decoding: list = []              # heap of (finish step, id)
    info: dict[int, list] = {}       # id -> [arrival, first, user, length]
    ttft, tpot, e2e, out_lengths, waits, busy, steps = [], [], [], [], [], [], []
    ids, arrived, firsts, tpot_ids = [], [], [], []
    t, step, rid, done = 0.0, 0, 0, 0
    warm = requests // 10 if trace is None else -1
    while done < requests + max(warm, 0):
        while arrivals and arrivals[0][0] <= t:
            at, u = heapq.heappop(arrivals)
            info[rid] = [at, None, u, int(lengths[rid]) if lengths is not None else out_len()]
            waiting.append(rid)
            rid += 1
            if u == -1:
                heapq.heappush(arrivals, (at + rng.exponential(1.0 / rate), -1))
        running = len(prefilling) + len(decoding)
        while waiting and running < rep.slots:
            r = waiting.popleft()
            info[r].append(t - info[r][0])
            hit = prefix_hit > 0 and rng.random_sample() < prefix_hit
            prefilling.append([r, prompt - prefix_tokens if hit else prompt])
            running += 1
        if running == 0:
            if not arrivals:
                break
            t = arrivals[0][0]
            continue
        n_dec = len(decoding)
        room = rep.budget - n_dec * (rep.draft_tokens + 1)
        chunk, finished_prefill = 0, []
        for item in prefilling:
            if room <= 0:
                break
            take = min(item[1], room)
            item[1] -= take
            room -= take
            chunk += take
            if item[1] == 0:
                finished_prefill.append(item[0])
        n = min(running, len(rep.compute) - 1)
        dt = max(rep.compute[n] + rep.per_token * chunk, rep.memory[n]) + rep.fixed[n]
        t += dt
        step += 1
        if done > warm:
            busy.append(running)
            steps.append(dt)
        if rep.draft_tokens:   # each sequence gains 1..k + 1 tokens: its remaining count falls by them
            if isinstance(rep.accept, tuple):     # position i accepted with a_i once those before were
                ok = rng.random((len(decoding), rep.draft_tokens)) < np.asarray(rep.accept)
                gained = 1 + np.cumprod(ok, axis=1).sum(axis=1)
            else:
                gained = np.minimum(rng.geometric(1.0 - rep.accept, size=len(decoding)), rep.draft_tokens + 1)
            decoding = [(left - g, r) for (left, r), g in zip(decoding, gained)]
            ended = [x for x in decoding if x[0] <= 0]
            decoding = [x for x in decoding if x[0] > 0]
            heapq.heapify(ended)
        else:
            ended = decoding
        while ended and ended[0][0] <= (0 if rep.draft_tokens else step):
            _, r = heapq.heappop(ended)
            at, first, u, length, _ = info.pop(r)
            done += 1
            if done > warm:
                tpot.append((t - first) / (length - 1))
                e2e.append(t - at)
                out_lengths.append(length)
                tpot_ids.append(r)
            if u >= 0:
                heapq.heappush(arrivals, (t + (rng.exponential(think_s) if think_s > 0 else 0.0), u))
        while prefilling and prefilling[0][1] == 0:
            prefilling.popleft()
        for r in finished_prefill:
            rec = info[r]
            rec[1] = t
            if done > warm:
                ttft.append(t - rec[0])
                waits.append(rec[4])
                ids.append(r)
                arrived.append(rec[0])
                firsts.append(t)
            if rec[3] <= 1:
                info.pop(r)
                done += 1
                if rec[2] >= 0:
                    heapq.heappush(arrivals, (t + (rng.exponential(think_s) if think_s > 0 else 0.0), rec[2]))
            elif rep.draft_tokens:
                decoding.append((rec[3] - 1, r))     # tokens still to come
            else:
                heapq.heappush(decoding, (step + rec[3] - 1, r))
    return Samples(np.array(ttft), np.array(tpot), np.array(e2e), np.array(out_lengths), np.array(waits),
                   np.array(busy), np.array(steps), np.array(ids), np.array(arrived), np.array(firsts),
                   np.array(tpot_ids))


def weighted_quantile(values: list[np.ndarray], weights: list[float], p: float) -> float:
    """The p-quantile of the union of samples, each set weighted (replicas per simulated one)."""
    v = np.concatenate(values)
    w = np.concatenate([np.full(len(x), wt / max(len(x), 1)) for x, wt in zip(values, weights)])
    order = np.argsort(v, kind="stable")
    cum = np.cumsum(w[order])
    return float(v[order][np.searchsorted(cum, p * cum[-1])])
