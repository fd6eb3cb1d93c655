"""One serving replica as a queue: continuous batching with chunked prefill, a slot cap, and the
latency percentiles it gives under a demand.

The engine modelled is vLLM V1's default scheduler (and TensorRT-LLM's in-flight batching with
chunked context): every step runs one decode token for each of the n running sequences and fills
the rest of a token budget (max_num_batched_tokens) with prompt chunks of admitted requests; at
most B sequences run at once (max_num_seqs); a request waits in a FIFO queue for a free slot. A
step's time is the replica's roofline with the chunk's tokens added to its compute:

    T(n, c) = max(C(n) + k c, M(n)) + F(n)

C, M, F: the decode step's compute, memory and fixed (communication, per-layer overhead) seconds
at n running sequences (recommender.formulas.serving.decode_stage_time, times the pipeline
depth); k: seconds of replica time per prompt token (its prefill compute and communication).
With prompts arriving at r tokens/s and a chunk per step of c = r T, the fixed point is

    T = max((C + F) / (1 - k r), M + F)                                    (k r < 1)

The queue is a birth-death chain on the number of requests in the replica (Kleinrock 1975,
"Queueing Systems" Vol. 1, Sec. 3.1): output lengths are geometric with mean O (each running
sequence finishes at a step with probability 1/O), so n running sequences leave at rate
n / (O T(n)); arrivals are Poisson at rate lambda (open loop) or come from U users who think for
an exponential Z seconds between requests, (U - n) / Z (closed loop; the machine-repairman
model, Kleinrock Sec. 3.9). An arrival sees the chain's stationary state (PASTA; for the closed
loop the arrival theorem, weights pi(n) (U - n)).

Latency of a request that finds n others (FCFS):
- n < B: admitted at once; TTFT = the step in progress (T(n), its full length: conservative) +
  ceil(P / (budget - n)) steps of T(n + 1) to prefill its P prompt tokens in chunks.
- n >= B: it waits for n - B + 1 departures at the full-slot rate mu_B = B / (O T_B), an Erlang
  time (open loop: the geometric mixture is exponential with rate mu_B - lambda), then prefills.
- TPOT: a decode token is produced in a step of T(n) with probability proportional to
  pi(n) n / T(n); the percentile of TPOT is taken over tokens (conservative against the
  per-request average that benchmarks report, which smooths the step-to-step variation).
  Prompts arriving at state n add their chunks to its steps at the arrival rate there (a
  mean-field rate; where they exceed the budget the step runs a full chunk).
- End-to-end at percentile p: TTFT_p + (O_p - 1) TPOT_p, O_p the output length's p-quantile
  (a sum of quantiles: conservative).

Everything is vectorized over rows (replica types) and states.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

QUEUE_STATES = 256       # closed loop: states kept above the slot cap (beyond: counted as misses)
NO_TARGET_LOAD = 0.95    # with no latency target, a replica is loaded to this share of saturation
LENGTH_DISTS = ("exponential", "fixed")


@dataclass
class Steps:
    """Per-row decode terms at n = 0..S running sequences (seconds) and the prompt cost."""

    compute: np.ndarray      # (R, S + 1)
    memory: np.ndarray
    fixed: np.ndarray
    per_token: np.ndarray    # (R,) seconds of replica time per prompt token
    slots: np.ndarray        # (R,) B, the slot cap
    budget: np.ndarray       # (R,) tokens per step


@dataclass
class Workload:
    prompt: float
    output: float
    percentile: float
    closed: bool
    think_s: float = 0.0
    length_dist: str = "exponential"

    @property
    def output_quantile(self) -> float:
        """The output length's p-quantile: O (fixed) or the geometric quantile (exponential)."""
        if self.length_dist == "fixed" or self.output <= 1:
            return self.output
        return float(np.ceil(np.log1p(-self.percentile) / np.log1p(-1.0 / self.output)))

    @property
    def mean_age(self) -> float:
        """Tokens a running sequence has generated, on average at a random moment: O for
        geometric lengths (memoryless), O / 2 for fixed ones."""
        return self.output if self.length_dist == "exponential" else self.output / 2.0

    @property
    def age_sd(self) -> float:
        return self.output if self.length_dist == "exponential" else self.output / np.sqrt(12.0)


def expected_step(c, mem, f, prompt_s, arrivals, room_s):
    """E[T] for steps T = max(c + prompt_s M, mem) + f carrying M prompts of prompt_s seconds
    each, M with mean arrivals T and the variance of the step chain in bursts(), a / (1 - phi^2):
    the fixed point, with E[max(X, mem)] for X normal with that mean and variance (E[max(X, m)] = m + sd phi(d) + (mu - m) Phi(d), d = (mu - m) / sd). Prompt
    work beyond what the token budget leaves (room_s seconds of it) is capped there."""
    kr = prompt_s * arrivals
    with np.errstate(divide="ignore", invalid="ignore"):
        t = np.maximum(np.where(kr < 1.0, (c + f) / (1.0 - kr), np.inf), mem + f)   # the mean-field start
    t = np.where(np.isfinite(t), t, np.maximum(c + room_s, mem) + f)
    for _ in range(3):
        a = arrivals * t
        mu = c + prompt_s * a
        phi = np.minimum(prompt_s * arrivals, 0.95)
        sd = prompt_s * np.sqrt(a / (1.0 - phi ** 2))   # the count's variance as in bursts()
        with np.errstate(divide="ignore", invalid="ignore"):
            d = (mu - mem) / sd
            excess = np.where(sd > 0, sd * np.exp(-0.5 * d * d) / np.sqrt(2 * np.pi) + (mu - mem) * normal_cdf(d),
                              np.maximum(mu - mem, 0.0))
        t = mem + np.nan_to_num(excess, nan=0.0, posinf=np.inf) + f
    full = np.maximum(c + room_s, mem) + f
    return np.where((prompt_s * arrivals >= 1.0) | (prompt_s * arrivals * t > room_s), np.maximum(full, t * 0 + full), t)


def step_time(s: Steps, w: Workload, arrivals):
    """Mean step at every state n = 0..S for prompt arrivals (requests/s) per state (R, S + 1)."""
    k = s.per_token[:, None]
    room = np.maximum(s.budget[:, None] - np.arange(s.compute.shape[1])[None, :], 0.0)
    return expected_step(s.compute, s.memory, s.fixed, k * w.prompt, arrivals, k * room)


def full_slot_step(s: Steps, w: Workload):
    """T_B, the mean step with all B slots busy and requests waiting: each step ends B / O
    sequences on average (geometric lengths: Poisson(B / O) of them, whatever the step's length)
    and the next step carries that many new prompts: T_B = E[max(C_B + k min(P M, room), M_B)] + F_B."""
    b = s.slots
    rows = np.arange(len(b))
    c, m, f = s.compute[rows, b], s.memory[rows, b], s.fixed[rows, b]
    room = np.maximum(s.budget - b, 1.0)
    j = np.arange(K_PROMPTS)[None, :]
    t = np.maximum(c[:, None] + s.per_token[:, None] * np.minimum(w.prompt * j, room[:, None]), m[:, None]) + f[:, None]
    pm = poisson_pmf(b / w.output, K_PROMPTS)
    pm[:, -1] += np.maximum(1 - pm.sum(axis=1), 0.0)
    return (pm * t).sum(axis=1)


@dataclass
class State:
    """The chain at one load per row."""

    pi: np.ndarray          # (R, S + 1) stationary probabilities (open: states >= B lumped at B)
    seen: np.ndarray        # (R, S + 1) what an arrival sees
    tail: np.ndarray        # (R,) open: P(n >= B); closed: mass lost beyond the kept states
    step: np.ndarray        # (R, S + 1) T(n) (n >= B: T_B)
    mu_b: np.ndarray        # (R,) departures/s with every slot busy
    load: np.ndarray        # (R,) lambda or U
    throughput: np.ndarray  # (R,) requests/s served
    stable: np.ndarray      # (R,) bool
    admit: np.ndarray       # (R, S + 1) requests/s entering service in state n


def chain(s: Steps, w: Workload, load) -> State:
    load = np.asarray(load, dtype=float)
    r_, width = s.compute.shape
    n = np.arange(width)[None, :].astype(float)
    b = s.slots[:, None].astype(float)
    t_b = full_slot_step(s, w)
    mu_b = s.slots / (w.output * t_b)
    if w.closed:
        z = max(w.think_s, 1e-3)
        birth = np.maximum(load[:, None] - n, 0.0) / z            # arrival rate in state n
    else:
        birth = np.broadcast_to(load[:, None], (r_, width))
    step = step_time(s, w, np.where(n < b, birth, 0.0))
    step = np.where(n >= b, t_b[:, None], step)
    occ = np.minimum(n, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        death = np.where(n >= 1, occ / (w.output * step), 0.0)
        logr = np.log(birth[:, :-1]) - np.log(death[:, 1:])       # log w(n) / w(n-1), n = 1..S
    logr = np.where(np.isnan(logr), -np.inf, logr)
    logw = np.concatenate([np.zeros((r_, 1)), np.cumsum(logr, axis=1)], axis=1)
    if not w.closed:
        logw = np.where(n <= b, logw, -np.inf)
    else:   # the states kept: up to B + QUEUE_STATES whatever the padding
        logw = np.where(n <= b + QUEUE_STATES, logw, -np.inf)
    top = np.max(np.where(np.isfinite(logw), logw, -np.inf), axis=1, keepdims=True)
    wts = np.exp(logw - top)
    rows = np.arange(r_)
    if w.closed:
        end = np.minimum(s.slots + QUEUE_STATES, width - 1)
        last = wts[rows, end]
        ratio = np.maximum(load - end, 0.0) / (max(w.think_s, 1e-3) * mu_b)
        with np.errstate(divide="ignore", invalid="ignore"):
            tail = np.where(last == 0, 0.0, np.where(ratio < 1, last * ratio / (1 - ratio), np.inf))
        stable = np.isfinite(tail) & np.isfinite(step[rows, s.slots])
    else:
        rho = load / mu_b
        stable = (rho < 1) & np.isfinite(step[:, 0])
        at_b = wts[rows, s.slots]
        with np.errstate(divide="ignore", invalid="ignore"):
            lump = np.where(stable, at_b / (1 - rho), np.inf)
        wts[rows, s.slots] = np.where(stable, lump, 0.0)
        tail = np.zeros(r_)
    total = wts.sum(axis=1) + np.where(np.isfinite(tail), tail, 0.0)
    total = np.where(stable & (total > 0), total, 1.0)
    pi = wts / total[:, None]
    tail_p = np.where(stable, (tail / total) if w.closed else pi[rows, s.slots], 1.0)
    if w.closed:
        seen = pi * np.maximum(load[:, None] - n, 0.0)
        norm = seen.sum(axis=1) + tail_p * 0.0
        seen = seen / np.where(norm > 0, norm, 1.0)[:, None]
        with np.errstate(invalid="ignore"):
            thr = np.where(stable, (pi * death).sum(axis=1), 0.0)
    else:
        seen = pi
        thr = np.where(stable, load, 0.0)
    admit = np.where(n < b, birth, mu_b[:, None])
    return State(pi, seen, tail_p, step, mu_b, load, thr, stable, admit)


K_PROMPTS = 16          # prompts per step the step-level mixtures count (beyond: negligible)
K_EXACT = 16            # per-request TPOT: exact Poisson sums up to this many decode steps
_LGAMMA = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 4096)))])


def poisson_pmf(mean, k: int) -> np.ndarray:
    """(..., k) P(M = 0..k-1) for M ~ Poisson(mean)."""
    mean = np.maximum(np.asarray(mean, dtype=float), 1e-300)[..., None]
    j = np.arange(k)
    return np.exp(-mean + j * np.log(mean) - _LGAMMA[:k])


def normal_cdf(x):
    """Standard normal CDF (Abramowitz and Stegun 7.1.26 for erf; |error| < 1.5e-7)."""
    x = np.clip(np.nan_to_num(np.asarray(x, dtype=float), nan=0.0), -40.0, 40.0)
    z = np.abs(x) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * z)
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-z * z)
    return 0.5 * (1.0 + np.sign(x) * erf)


@dataclass
class Bursts:
    """Steps at a replica's typical occupancy, by how many prompts they carry: arrivals are
    Poisson, so a step of mean length T carries M ~ Poisson(rate T) new prompts (the mean of the
    chain above hides these bursts, which set the tails of TTFT and TPOT)."""

    t: np.ndarray       # (R, K) step seconds with m = 0..K-1 prompts
    rate: np.ndarray    # (R,) prompts/s entering steps (admissions)
    mean: np.ndarray    # (R,) mean step
    pm: np.ndarray      # (R, K) share of steps with m prompts


def _at(arr, x):
    """arr (R, W) at fractional column x (R,), linearly interpolated."""
    r_, width = arr.shape
    i = np.clip(np.floor(x).astype(int), 0, width - 2)
    f = np.clip(x - i, 0.0, 1.0)
    rows = np.arange(r_)
    return arr[rows, i] * (1 - f) + arr[rows, i + 1] * f


def bursts(s: Steps, w: Workload, occupancy, rate) -> Bursts:
    """Steps at `occupancy` running sequences with prompts arriving at `rate`: the number of
    prompts a step carries is the Markov chain M' ~ Poisson(rate T(M)) (a long step gathers more
    arrivals for the next one), solved for its stationary distribution."""
    c, m_, f = (_at(x, occupancy) for x in (s.compute, s.memory, s.fixed))
    room = np.maximum(s.budget - occupancy, 1.0)
    m = np.arange(K_PROMPTS)[None, :]
    chunk = np.minimum(w.prompt * m, room[:, None])
    t = np.maximum(c[:, None] + s.per_token[:, None] * chunk, m_[:, None]) + f[:, None]
    trans = poisson_pmf(rate[:, None] * t, K_PROMPTS)                   # (R, M, M')
    trans[:, :, -1] += np.maximum(1 - trans.sum(axis=2), 0.0)
    # stationary: pm (P - I) = 0 with sum(pm) = 1 (the last balance equation replaced)
    lhs = np.swapaxes(trans, 1, 2) - np.eye(K_PROMPTS)[None]
    lhs[:, -1, :] = 1.0
    rhs = np.zeros((len(t), K_PROMPTS))
    rhs[:, -1] = 1.0
    pm = np.clip(np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0], 0.0, None)
    pm = pm / pm.sum(axis=1, keepdims=True)
    return Bursts(t, rate, (pm * t).sum(axis=1), pm)


OCCUPANCY_POINTS = 4    # the occupancy distribution as this many equal-weight quantile points


def _points(s: Steps, st: State, seen: bool):
    """Occupancy quantile points (R, J) of what an arrival finds (seen, plus itself) or what a
    decode token sees (token-weighted), with the prompt arrival rate there: a request's latency
    is taken at one such point (occupancy moves slower than a step)."""
    r_, width = st.pi.shape
    n = np.arange(width)[None, :]
    occ = np.minimum(n, s.slots[:, None])
    if seen:
        wt, value = st.seen, np.minimum(n + 1, s.slots[:, None])
    else:
        wt, value = st.pi * occ, occ
    cum = np.cumsum(wt, axis=1)
    cum = cum / np.maximum(cum[:, -1:], 1e-300)
    qs = (np.arange(OCCUPANCY_POINTS) + 0.5) / OCCUPANCY_POINTS
    idx = np.stack([np.argmax(cum >= q - 1e-12, axis=1) for q in qs], axis=1)   # (R, J)
    occ_j = np.take_along_axis(np.broadcast_to(value, (r_, width)), idx, axis=1).astype(float)
    rate_j = np.take_along_axis(st.admit, idx, axis=1)
    return np.maximum(occ_j, 1.0), rate_j


def _expand(s: Steps, j: int) -> Steps:
    rep = lambda x: np.repeat(x, j, axis=0)  # noqa: E731
    return Steps(rep(s.compute), rep(s.memory), rep(s.fixed), rep(s.per_token), rep(s.slots), rep(s.budget))


def _point_bursts(s: Steps, w: Workload, st: State, seen: bool) -> Bursts:
    """Bursts at each occupancy point, rows (R * J)."""
    occ, rate = _points(s, st, seen)
    return bursts(_expand(s, occ.shape[1]), w, occ.ravel(), rate.ravel())


def _wait_cdf(s: Steps, w: Workload, st: State, slack) -> np.ndarray:
    """P(queued for a slot and the wait <= slack), slack (R, J)."""
    r_, width = st.pi.shape
    rows = np.arange(r_)
    pos = np.maximum(slack, 0.0)
    if not w.closed:
        return st.seen[rows, s.slots][:, None] * np.where(slack > 0, -np.expm1(-(st.mu_b - st.load)[:, None] * pos), 0.0)
    q = min(width - int(s.slots.min()), QUEUE_STATES + 1)
    idx = s.slots[:, None] + np.arange(q)[None, :]
    seen_q = np.where(idx < width, np.take_along_axis(st.seen, np.minimum(idx, width - 1), axis=1), 0.0)
    out = np.zeros(slack.shape)
    for j in range(slack.shape[1]):   # a wait for j + 1 departures at mu_B: P(Poisson(mu_B s) > j)
        surv = 1.0 - np.cumsum(poisson_pmf(st.mu_b * pos[:, j], q), axis=1)
        out[:, j] = np.where(slack[:, j] > 0, (seen_q * np.clip(surv, 0.0, 1.0)).sum(axis=1), 0.0)
    return out


def ttft_cdf(s: Steps, w: Workload, st: State, t) -> np.ndarray:
    """P(TTFT <= t) per row (t: (R,)).

    An arrival that finds a free slot lands in a step carrying m prompts (time-weighted), waits
    out a uniform share of it, then has its prompt in the next step with the A others that arrived
    meanwhile (A ~ Poisson(rate T(m))); one that finds no slot waits for a departure (the chain)
    and then shares a step the same way. Step times at the occupancy points an arrival finds."""
    t = np.asarray(t, dtype=float)
    r_ = len(t)
    j = OCCUPANCY_POINTS
    bu = _point_bursts(s, w, st, seen=True)
    k = K_PROMPTS
    rows = np.arange(r_)
    idle = st.seen[:, 0]
    n = np.arange(st.seen.shape[1])[None, :]
    queued_p = (st.seen * (n >= s.slots[:, None])).sum(axis=1)
    busy = np.maximum(1.0 - idle - queued_p, 0.0)
    tm = bu.t                                                       # (R J, K) current step with m prompts
    ptime = bu.pm * tm
    ptime = ptime / ptime.sum(axis=1, keepdims=True)
    pa = poisson_pmf(bu.rate[:, None] * tm, k)                      # (R J, K_m, K_A)
    own = np.concatenate([tm[:, 1:], tm[:, -1:]], axis=1)           # T(1 + A)
    tt = np.repeat(t, j)
    frac = np.clip((tt[:, None, None] - own[:, None, :]) / tm[:, :, None], 0.0, 1.0)
    g_busy = (ptime[:, :, None] * pa * frac).sum(axis=(1, 2)).reshape(r_, j).mean(axis=1)
    g_idle = (tm[:, 1] <= tt).astype(float).reshape(r_, j).mean(axis=1)
    top = s.slots - 1   # the last point is the busiest: queued arrivals prefill there
    last = np.arange(r_) * j + (j - 1)
    own_q, pq = own[last], bu.pm[last]
    f_q = (pq * _wait_cdf(s, w, st, t[:, None] - own_q)).sum(axis=1)
    del top, rows
    f = idle * g_idle + busy * g_busy + f_q
    return np.where(st.stable, f, 0.0)


def _decode_steps(w: Workload):
    """Decode steps per request (output length - 1) as quadrature nodes and weights: each of
    1..K_EXACT exactly, then log-spaced bins of the geometric tail."""
    if w.length_dist == "fixed" or w.output <= 1:
        return np.array([max(w.output - 1.0, 1.0)]), np.array([1.0])
    q = 1.0 / w.output
    kmax = float(np.ceil(np.log(1e-6) / np.log1p(-q)))
    exact = np.arange(1, K_EXACT + 1, dtype=float)
    wts = q * (1 - q) ** (exact - 1)
    if kmax <= K_EXACT:
        return exact, wts
    edges = np.unique(np.round(np.geomspace(K_EXACT + 0.5, kmax + 0.5, 48)))
    lo, hi = edges[:-1], edges[1:]
    mass = (1 - q) ** (lo - 0.5) - (1 - q) ** (hi - 0.5)       # P(k in (lo, hi])
    mid = np.sqrt(lo * hi)
    return np.concatenate([exact, mid]), np.concatenate([wts, mass])


def _tpot_tail_bursts(bu: Bursts, w: Workload, t) -> np.ndarray:
    """P(TPOT > t) per burst row: a request with k decode steps waits k T0 + kp M_k, M_k the
    prompts sharing its steps (mean k a): the step time linearized at a prompt's full cost kp
    (what a second or third prompt in one step adds), T0 set so that the mean step is kept."""
    a = bu.rate * bu.mean
    kp = np.maximum(bu.t[:, 2] - bu.t[:, 1], bu.t[:, 1] - bu.t[:, 0])     # a prompt's full cost
    t0 = bu.mean - kp * a                                                # the mean kept
    # prompts beget prompts: a step longer by kp gathers rate kp (phi) more arrivals for the
    # next one, so the counts are an autocorrelated chain: marginal variance a / (1 - phi^2), lag
    # correlation phi, and over k steps Var = k s2 [(1 + phi) / (1 - phi) - 2 phi (1 - phi^k) /
    # (k (1 - phi)^2)] (the AR(1) sum); the count is taken negative binomial with that variance
    phi = np.clip(bu.rate * kp, 0.0, 0.95)[:, None]
    ks, wk = _decode_steps(w)
    k = ks[None, :]
    var_ratio = ((1 + phi) / (1 - phi) - 2 * phi * (1 - phi ** k) / (k * (1 - phi) ** 2)) / (1 - phi ** 2)
    var_ratio = np.maximum(var_ratio, 1.0 + 1e-9)
    x = k * (t[:, None] - t0[:, None]) / np.maximum(kp, 1e-300)[:, None]            # prompts allowed
    # its first decode step follows the step that carried its own prompt (a longer one), which
    # gathered rate E[T(1 + M)] arrivals rather than a
    own = np.concatenate([bu.t[:, 1:], bu.t[:, -1:]], axis=1)
    first = bu.rate * (bu.pm * own).sum(axis=1)
    mu = k * a[:, None] + (first - a)[:, None]
    sd = np.sqrt(np.maximum(mu * var_ratio, 1e-300))
    over = 1.0 - normal_cdf((np.floor(np.minimum(x, 1e12)) + 0.5 - mu) / sd)
    small = ks <= K_EXACT
    if small.any():
        jj = np.arange(4 * K_PROMPTS)
        m_s, v_s = np.maximum(mu[:, small], 1e-12), var_ratio[:, small]
        r = m_s / (v_s - 1.0)                                                       # NB size
        prob = m_s / (r + m_s)
        ratio = (jj[None, None, :-1] + r[:, :, None]) / (jj[None, None, :-1] + 1.0) * prob[:, :, None]
        with np.errstate(divide="ignore", under="ignore"):
            log0 = r * np.log1p(-prob)
        pmf = np.exp(log0)[:, :, None] * np.concatenate([np.ones(ratio.shape[:2] + (1,)),
                                                         np.cumprod(ratio, axis=2)], axis=2)
        cdf = (pmf * (jj[None, None, :] <= np.floor(np.minimum(x[:, small], 1e9))[:, :, None])).sum(axis=2)
        over[:, small] = 1.0 - cdf
    over = np.where(x < 0, 1.0, np.clip(over, 0.0, 1.0))
    over = np.where((kp <= 0)[:, None], (x < 0).astype(float), over)
    return (over * wk[None, :]).sum(axis=1) / wk.sum()


def _tpot_tail(s: Steps, w: Workload, st: State, t) -> np.ndarray:
    """P(a request's TPOT > t), t (R,), mixed over the occupancy points a decode token sees."""
    bu = _point_bursts(s, w, st, seen=False)
    j = OCCUPANCY_POINTS
    return _tpot_tail_bursts(bu, w, np.repeat(np.asarray(t, dtype=float), j)).reshape(-1, j).mean(axis=1)


def tpot_quantile(s: Steps, w: Workload, st: State, iters: int = 40) -> np.ndarray:
    """The p-quantile of per-request TPOT, by bisection on t."""
    bu = _point_bursts(s, w, st, seen=False)
    j = OCCUPANCY_POINTS
    lo = bu.t[:, 0].reshape(-1, j).min(axis=1) * (1 - 1e-9)
    hi = bu.t[:, -1].reshape(-1, j).max(axis=1) + 1e-9
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = _tpot_tail_bursts(bu, w, np.repeat(mid, j)).reshape(-1, j).mean(axis=1) <= 1.0 - w.percentile
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.where(st.stable, hi, np.inf)


def tpot_ok(s: Steps, w: Workload, st: State, target: float) -> np.ndarray:
    return st.stable & (_tpot_tail(s, w, st, np.full(len(s.slots), target * (1 + 1e-12)))
                        <= 1.0 - w.percentile + 1e-12)


def mean_tpot(s: Steps, w: Workload, st: State) -> np.ndarray:
    bu = _point_bursts(s, w, st, seen=False)
    return bu.mean.reshape(-1, OCCUPANCY_POINTS).mean(axis=1)


def meets(s: Steps, w: Workload, st: State, ttft=None, tpot=None, e2e=None) -> np.ndarray:
    ok = st.stable.copy()
    if ttft is not None:
        ok &= ttft_cdf(s, w, st, np.full(len(ok), ttft)) >= w.percentile - 1e-12
    if tpot is not None:
        ok &= tpot_ok(s, w, st, tpot)
    if e2e is not None:
        budget = e2e - (w.output_quantile - 1.0) * mean_tpot(s, w, st)
        ok &= np.isfinite(budget) & (ttft_cdf(s, w, st, budget) >= w.percentile - 1e-12)
    return ok


def ttft_quantile(s: Steps, w: Workload, st: State, iters: int = 48) -> np.ndarray:
    """The p-quantile of TTFT per row, by bisection on t (F is non-decreasing)."""
    r_ = len(s.slots)
    hi = np.max(np.where(np.isfinite(st.step), st.step, 0.0), axis=1) * 4.0 + 1.0
    while True:
        bad = ttft_cdf(s, w, st, hi) < w.percentile
        if not (bad & st.stable).any() or (hi > 1e7).all():
            break
        hi = np.where(bad, hi * 4.0, hi)
    lo = np.zeros(r_)
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = ttft_cdf(s, w, st, mid) >= w.percentile
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.where(st.stable, hi, np.inf)


def saturation(s: Steps, w: Workload) -> np.ndarray:
    """Requests/s a replica serves with every slot busy."""
    return s.slots / (w.output * full_slot_step(s, w))


def capacity(s: Steps, w: Workload, ttft=None, tpot=None, e2e=None, iters: int = 26, rel: float = 0.0) -> np.ndarray:
    """The largest load per row (requests/s; closed loop: users, an integer) at which every given
    target holds at the percentile; 0 where none does. Bisection: the chain's occupancy grows
    with the load, so each target's test is monotone in it. rel > 0: stop once the bracket is
    within that share of its top (a coarse answer, a feasible load below the largest)."""
    mu = saturation(s, w)
    if w.closed:
        z = max(w.think_s, 0.0)
        if ttft is None and tpot is None and e2e is None:
            return np.floor(NO_TARGET_LOAD * mu * (z + w.output * full_slot_step(s, w)))
        lo = np.zeros(len(mu))
        hi = np.floor(mu * z + s.slots + QUEUE_STATES) + 1.0
        while np.any((hi - lo > 1) & (hi - lo > rel * hi)):
            mid = np.floor((lo + hi) / 2.0)
            ok = meets(s, w, chain(s, w, mid), ttft, tpot, e2e)
            lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
        return lo
    kp = s.per_token * w.prompt
    with np.errstate(divide="ignore"):
        hi = np.minimum(mu, np.where(kp > 0, 1.0 / kp, np.inf)) * (1.0 - 1e-9)
    if ttft is None and tpot is None and e2e is None:
        return NO_TARGET_LOAD * hi
    lo = np.zeros(len(mu))
    for _ in range(iters):
        if rel > 0 and np.all(hi - lo <= rel * hi):
            break
        mid = 0.5 * (lo + hi)
        ok = meets(s, w, chain(s, w, mid), ttft, tpot, e2e)
        lo, hi = np.where(ok, mid, lo), np.where(ok, hi, mid)
    ok = meets(s, w, chain(s, w, lo), ttft, tpot, e2e) & (lo > 0)
    return np.where(ok, lo, 0.0)


@dataclass
class Figures:
    """A replica at one load: the percentile latencies and what it serves."""

    ttft: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray
    throughput: np.ndarray   # requests/s
    utilization: np.ndarray  # throughput / saturation
    busy_slots: np.ndarray   # mean running sequences
    wait_share: np.ndarray   # share of requests that queue for a slot


def figures(s: Steps, w: Workload, load) -> Figures:
    st = chain(s, w, np.asarray(load, dtype=float))
    ttft = ttft_quantile(s, w, st)
    tpot = tpot_quantile(s, w, st)
    e2e = ttft + (w.output_quantile - 1.0) * mean_tpot(s, w, st)
    n = np.arange(st.pi.shape[1])[None, :]
    busy = (st.pi * np.minimum(n, s.slots[:, None])).sum(axis=1)
    waits = (st.seen * (n >= s.slots[:, None])).sum(axis=1)
    util = np.where(st.stable, st.throughput / saturation(s, w), np.nan)
    return Figures(ttft, tpot, e2e, st.throughput, util, busy, waits)
