"""One serving replica as a queue: continuous batching with chunked prefill, a slot cap, and the
latency percentiles it gives under a demand.

The engine modelled is vLLM V1's default scheduler (and TensorRT-LLM's in-flight batching with
chunked context): every step runs one decode token for each of the n running sequences and fills
the rest of a token budget (max_num_batched_tokens) with prompt chunks of admitted requests; at
most B sequences run at once (max_num_seqs); a request waits in a FIFO queue for a free slot. A
step's time is the replica's roofline with the chunk's tokens added to its compute:

    T(n, c) = max(C(n) + k c, M(n)) + F(n)

C, M, F: the decode step's GEMM compute, weight read and fixed (attention's kernel, communication,
per-layer overhead) seconds at n running sequences (recommender.formulas.serving.decode_stage_time,
times the pipeline depth); k: seconds of replica time per prompt token (its prefill compute and communication).
With prompts arriving at r tokens/s and a chunk per step of c = r T, the fixed point is

    T = max((C + F) / (1 - k r), M + F)                                    (k r < 1)

The queue is a birth-death chain on the number of requests in the replica (Kleinrock 1975,
"Queueing Systems" Vol. 1, Sec. 3.1): output lengths are geometric with mean O (each running
sequence finishes at a step with probability 1/O), so n running sequences leave at rate
n / (O T(n)); arrivals are Poisson at rate lambda (open loop) or come from U users who think for
an exponential Z seconds between requests, (U - n) / Z (closed loop; the machine-repairman
model, Kleinrock Sec. 3.9). An arrival sees the chain's stationary state (PASTA; for the closed
loop the arrival theorem, weights pi(n) (U - n)). chain() adds the variance of bursty step
times to both rates. In a closed loop a state's steps carry the prompts that brought the replica
there (Poisson(n / O) a step, replacement_step) and a step's arrivals grow with its length only
as the thinking users' clocks allow (step_arrivals).

At a few occupancy points, bursts() follows the prompt backlog a step starts with as a Markov
chain (what the token budget's room cannot take is carried to the next step). From it:
- TTFT (ttft_cdf): the rest of the step an arrival lands in, then the steps that process the
  backlog ahead of it and its own prompt at the room per step; an arrival that finds every slot
  busy first waits for a departure (Erlang at the full-slot rate; exponential with rate
  mu_B - lambda in an open loop).
- TPOT (tpot_law): per request, the sum of its k step times from the step after its prompt
  finished: exact on a grid for k <= K_EXACT, a normal with the chain's moments beyond.
- End-to-end at percentile p: TTFT_p + (O_p - 1) x mean TPOT, O_p the output length's
  p-quantile (a sum of quantiles: conservative).
capacity() is the largest load at which every given target holds (the root of margin()).

Everything is vectorized over rows (replica types) and states.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
import threading

import numpy as np

from recommender.formulas.serving import spec_tokens_per_step

FEW_PROMPTS = 12         # expected_step: exact Poisson prompt counts below a quarter of this mean
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
    # (R,) budget tokens a running sequence takes per step; None: 1 (speculative decoding's rows,
    # in per-token steps: the k + 1 verified tokens over the E tokens a step yields)
    decode_tokens: np.ndarray | None = None
    # (R,) seconds added to every TTFT after the replica's own (a disaggregated pool's KV hand-off);
    # None: 0
    delay: np.ndarray | None = None
    # terms computed once per (row, workload) and shared by every subset rows() takes (memo());
    # the arrays above are never changed in place, which this relies on
    _memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _root: "Steps | None" = field(default=None, repr=False, compare=False)   # the Steps rows() cut these from
    _at: np.ndarray | None = field(default=None, repr=False, compare=False)  # and their rows there

    @property
    def per_seq(self) -> np.ndarray:
        return np.ones(len(self.slots)) if self.decode_tokens is None else self.decode_tokens

    def rows(self, idx, width: int | None = None) -> "Steps":
        """The rows idx (an index array or a slice of rows), every field alike; width: only the
        states 0..width-1 of the per-state terms."""
        cols = slice(None) if width is None else slice(0, width)
        dt = None if self.decode_tokens is None else self.decode_tokens[idx]
        root = self if self._root is None else self._root
        at = (np.arange(len(self.slots)) if self._at is None else self._at)[idx]
        return Steps(self.compute[idx][:, cols], self.memory[idx][:, cols], self.fixed[idx][:, cols],
                     self.per_token[idx], self.slots[idx], self.budget[idx], dt,
                     None if self.delay is None else self.delay[idx], _root=root, _at=np.atleast_1d(at))

    def memo(self, key, make) -> tuple:
        """make(self), a tuple of per-row arrays ((R,) or (R, S + 1)) whose every row depends on
        that row alone and whose state n does not depend on how many states are kept: each row
        computed once on the Steps these rows were cut from (the rows asked for that it does not
        hold yet), and shared with every other cut of it. Safe across threads."""
        root = self if self._root is None else self._root
        need = np.arange(len(self.slots)) if self._at is None else self._at
        with _MEMO_LOCK:
            entry = root._memo.setdefault(key, [None, np.zeros(len(root.slots), dtype=bool)])
            missing = np.unique(need[~entry[1][need]])
        if len(missing):
            part = make(root.rows(missing))
            with _MEMO_LOCK:
                if entry[0] is None:
                    entry[0] = tuple(np.empty((len(root.slots),) + a.shape[1:], dtype=a.dtype) for a in part)
                for a, p in zip(entry[0], part):
                    a[missing] = p
                entry[1][missing] = True
        width = self.compute.shape[1]
        return tuple(a[need] if a.ndim == 1 else a[need, :width] for a in entry[0])


_MEMO_LOCK = threading.Lock()


@dataclass
class Workload:
    prompt: float
    output: float
    percentile: float
    closed: bool
    think_s: float = 0.0
    length_dist: str = "exponential"
    # speculative decoding, for the rows whose Steps.decode_tokens exceed 1 (per-token steps):
    # draft_tokens k drafted per engine step, each accepted with probability `accept`
    draft_tokens: int = 0
    accept: float | tuple[float, ...] = 0.0      # one rate, or one per drafted position
    # the percentile TTFT is held at, where it differs from TPOT's (a disaggregated decode pool:
    # its share of the fleet's TTFT at 1 - (1 - p) / 2, serving.disaggregated_roles)
    ttft_percentile: float | None = None
    # closed loop: states kept above the slot cap (the Steps' width must hold them); an evaluation
    # of more users than slots + QUEUE_STATES on one replica widens it to every user
    queue_states: int = QUEUE_STATES

    @property
    def ttft_p(self) -> float:
        return self.percentile if self.ttft_percentile is None else self.ttft_percentile

    @property
    def spec_gain_pmf(self) -> np.ndarray:
        """P(G = g), g = 1..k + 1: tokens a sequence gains in one speculative step (accepted drafts
        until the first rejection, plus the target's own token): P(G > g) = a_1 ... a_g."""
        k = self.draft_tokens
        a = np.broadcast_to(np.asarray(self.accept, dtype=float), (k,))
        above = np.concatenate([[1.0], np.cumprod(a), [0.0]])       # P(G > g), g = 0..k + 1
        return above[:-1] - above[1:]

    @property
    def spec_gain(self) -> float:
        """E[G], the tokens a step yields (formulas.serving.spec_tokens_per_step)."""
        return float(spec_tokens_per_step(self.accept, self.draft_tokens))

    @property
    def spec_var(self) -> float:
        g = np.arange(1, self.draft_tokens + 2)
        return float((self.spec_gain_pmf * g * g).sum() - self.spec_gain ** 2)

    def spec_steps_pmf(self, tokens: int | None = None) -> np.ndarray:
        """(tokens, K_EXACT): P(K = j + 1 | m = i + 1), K the engine steps a sequence needs for m
        more tokens (the first j with G_1 + ... + G_j >= m); a row's mass short of 1 is K > K_EXACT."""
        pg = self.spec_gain_pmf
        tokens = K_EXACT if tokens is None else tokens
        top = tokens + 1
        dist = np.zeros(top)
        dist[0] = 1.0                                  # S_0 = 0
        below = [np.cumsum(dist)[:tokens]]             # P(S_j < m), m = 1..tokens
        for _ in range(K_EXACT):
            nxt = np.zeros(top)
            for g, p in enumerate(pg, start=1):
                nxt[g:] += dist[:top - g] * p
            dist = nxt
            below.append(np.cumsum(dist)[:tokens])
        below = np.array(below)                        # (K_EXACT + 1, tokens): [j, m - 1]
        return (below[:-1] - below[1:]).T              # [m - 1, j - 1] = P(S_(j-1) < m) - P(S_j < m)

    def spec_exact_tokens(self) -> int:
        """The most tokens m whose engine steps stay within K_EXACT but for SPEC_BEYOND of
        their mass (at most SPEC_TOKENS_MAX): the span of _tpot_tail_law's exact mixture."""
        pk = self.spec_steps_pmf(SPEC_TOKENS_MAX)
        ok = 1.0 - pk.sum(axis=1) <= SPEC_BEYOND
        return int(np.argmin(ok)) if not ok.all() else SPEC_TOKENS_MAX

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
    phi = np.minimum(kr, 0.95)
    shape = np.broadcast_shapes(np.shape(c), np.shape(mem), np.shape(t))
    gap = np.broadcast_to(c - mem, shape)           # compute over memory time with no prompt
    for _ in range(3):
        a = arrivals * t
        mu = gap + prompt_s * a                     # the mean of X - mem
        sd = prompt_s * np.sqrt(a / (1.0 - phi ** 2))   # the count's variance as in bursts()
        with np.errstate(divide="ignore", invalid="ignore"):
            d = mu / sd
            excess = np.where(sd > 0, sd * np.exp(-0.5 * d * d) / np.sqrt(2 * np.pi) + mu * normal_cdf(d),
                              np.maximum(mu, 0.0))
        excess = np.nan_to_num(excess, nan=0.0, posinf=np.inf)
        # few prompts per step (a memory-bound step that a rare prompt lengthens): the Poisson
        # count itself (its first FEW_PROMPTS terms), not its normal approximation
        few = a < FEW_PROMPTS / 4
        if few.any():
            af = np.where(few, a, 0.0)
            pk = np.exp(-af)
            acc = pk * np.maximum(gap, 0.0)
            for m in range(1, FEW_PROMPTS):
                pk = pk * (af / m)
                acc = acc + pk * np.maximum(gap + prompt_s * m, 0.0)
            excess = np.where(few, acc, excess)
        t = mem + excess + f
    full = np.maximum(c + room_s, mem) + f
    return np.where((kr >= 1.0) | (kr * t > room_s), np.maximum(full, t * 0 + full), t)


def step_time(s: Steps, w: Workload, arrivals):
    """Mean step at every state n = 0..S for prompt arrivals (requests/s) per state (R, S + 1)."""
    k = s.per_token[:, None]
    n = np.arange(s.compute.shape[1])[None, :]
    room = np.maximum(s.budget[:, None] - (n if s.decode_tokens is None else s.decode_tokens[:, None] * n), 0.0)
    return expected_step(s.compute, s.memory, s.fixed, k * w.prompt, arrivals, k * room)


def full_slot_step(s: Steps, w: Workload):
    """T_B, the mean step with all B slots busy and requests waiting: each step ends B / O
    sequences on average (geometric lengths: Poisson(B / O) of them, whatever the step's length)
    and the next step carries that many new prompts: T_B = E[max(C_B + k min(P M, room), M_B)] + F_B."""
    return replacement_step(s, w, s.slots[:, None].astype(float))[:, 0]


def replacement_step(s: Steps, w: Workload, occ) -> np.ndarray:
    """The mean step at occupancies occ (R, W) when every sequence a step ends is replaced by a new
    prompt in the next step: Poisson(n / O) prompts per step, capped by the token budget's room
    (where the prompts of n / O arrivals per step exceed the room, the room sets the pace: every
    step is full and room / P requests start per step instead of n / O)."""
    occ = np.asarray(occ, dtype=float)
    rows = np.arange(len(s.slots))[:, None]
    lo = np.clip(np.floor(occ).astype(int), 0, s.compute.shape[1] - 1)
    c, m, f = s.compute[rows, lo], s.memory[rows, lo], s.fixed[rows, lo]
    room = np.maximum(s.budget[:, None] - s.per_seq[:, None] * occ, 1.0)
    k = s.per_token[:, None, None]
    j = np.arange(K_PROMPTS)[None, None, :]
    t = np.maximum(c[..., None] + k * np.minimum(w.prompt * j, room[..., None]), m[..., None]) + f[..., None]
    pm = poisson_pmf(occ / w.output, K_PROMPTS)
    pm[..., -1] += np.maximum(1 - pm.sum(axis=-1), 0.0)
    full = np.maximum(c + s.per_token[:, None] * room, m) + f
    return np.maximum((pm * t).sum(axis=-1), full * w.prompt * occ / (w.output * room))


@dataclass
class State:
    """The chain at one load per row."""

    pi: np.ndarray          # (R, S + 1) stationary probabilities (open: states >= B lumped at B)
    seen: np.ndarray        # (R, S + 1) what an arrival sees
    tail: np.ndarray        # (R,) open: P(n >= B); closed: mass lost beyond the kept states
    step: np.ndarray        # (R, S + 1) T(n) (n >= B: T_B)
    mu_b: np.ndarray        # (R,) departures/s with every slot busy
    load: np.ndarray        # (R,) lambda or U
    throughput: np.ndarray  # (R,) requests/s served (unstable: mu_B, every slot busy)
    stable: np.ndarray      # (R,) bool
    admit: np.ndarray       # (R, S + 1) requests/s entering service in state n
    peak: np.ndarray        # (R,) the most requests/s any occupancy serves (all slots busy, or fewer
                            # where a compute-bound step grows faster than the sequences it serves)


def _key(w: Workload) -> tuple:
    return tuple(getattr(w, f.name) for f in fields(w))


def _chain_terms(s: Steps, w: Workload, load) -> tuple:
    """chain()'s per-state terms but the arrivals: T_B, mu_B, the mean step T(n), the prompts
    a step carries, the departure rates and the burst variance added to both rates (load: the
    open loop's arrival rate; a closed loop's terms do not depend on it)."""
    r_, width = s.compute.shape
    n = np.arange(width)[None, :].astype(float)
    b = s.slots[:, None].astype(float)
    t_b = full_slot_step(s, w)
    mu_b = s.slots / (w.output * t_b)
    if not w.closed:
        prompts = np.broadcast_to(np.asarray(load, dtype=float)[:, None], (r_, width))
    top = min(int(s.slots.max()) + 1, width)        # states above every slot cap step at T_B
    head = s.rows(slice(None), top)
    step = np.broadcast_to(t_b[:, None], (r_, width)).copy()
    if w.closed:
        # steps at n < B carry the prompts that brought the replica to n: in a stationary chain
        # the entries into n per second spent there are its departures, n / (O T(n)) (detailed
        # balance), so each step carries Poisson(n / O) prompts, as at the slot cap. Not the
        # (U - n) / Z of the state itself: with a short think time a state below U lasts an
        # instant and its arrivals land in the next state's steps
        step[:, :top] = replacement_step(head, w, np.minimum(n[:, :top], b))
        with np.errstate(divide="ignore", invalid="ignore"):
            prompts = np.where(n < b, np.minimum(n, b) / (w.output * step), mu_b[:, None])
    else:
        step[:, :top] = step_time(head, w, np.where(n[:, :top] < b, prompts[:, :top], 0.0))
    step = np.where(n >= b, t_b[:, None], step)
    occ = np.minimum(n, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        death = np.where(n >= 1, occ / (w.output * step), 0.0)
        # step times vary with the prompts each step carries (autocorrelated: a long step gathers
        # more prompts for the next), so departures come in bursts: the variance a birth-death
        # chain misses. Added to both rates (the drift kept, the diffusion matched): n / O
        # departures per step over steps of variance kP^2 a / (1 - phi^2), lag correlation phi,
        # make (n / O)^2 var (1 + phi) / ((1 - phi) T^3) more variance per second
        kp = (s.per_token * w.prompt)[:, None]
        arr = np.where(n < b, prompts, mu_b[:, None])
        phi = np.clip(kp * arr * in_time_share(w, step), 0.0, 0.95)
        var = kp * kp * arr * step / (1.0 - phi * phi)
        extra = np.nan_to_num((occ / w.output) ** 2 * var * (1 + phi) / ((1 - phi) * step ** 3), nan=0.0)
    return t_b, mu_b, step, prompts, death, extra


def chain(s: Steps, w: Workload, load) -> State:
    load = np.asarray(load, dtype=float)
    r_, width = s.compute.shape
    n = np.arange(width)[None, :].astype(float)
    b = s.slots[:, None].astype(float)
    if w.closed:
        # the steps, departures and their bursts do not depend on the users: once per rows
        t_b, mu_b, step, prompts, death, extra = s.memo(("chain", _key(w)), lambda s_: _chain_terms(s_, w, None))
        z = max(w.think_s, 1e-3)
        birth = np.maximum(load[:, None] - n, 0.0) / z            # arrival rate in state n
    else:
        t_b, mu_b, step, prompts, death, extra = _chain_terms(s, w, load)
        birth = prompts
    with np.errstate(divide="ignore", invalid="ignore"):
        up, down = birth + 0.5 * extra, death + 0.5 * extra
        logr = np.log(up[:, :-1]) - np.log(down[:, 1:])           # log w(n) / w(n-1), n = 1..S
    logr = np.where(np.isnan(logr), -np.inf, logr)
    logw = np.concatenate([np.zeros((r_, 1)), np.cumsum(logr, axis=1)], axis=1)
    if not w.closed:
        logw = np.where(n <= b, logw, -np.inf)
    else:   # the states kept: up to B + queue_states whatever the padding, and at most the users
        logw = np.where((n <= b + w.queue_states) & (n <= load[:, None] + 1e-9), logw, -np.inf)
    top = np.max(np.where(np.isfinite(logw), logw, -np.inf), axis=1, keepdims=True)
    wts = np.exp(logw - top)
    rows = np.arange(r_)
    if w.closed:
        end = np.minimum(s.slots + w.queue_states, width - 1)
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
            thr = np.where(stable, (pi * np.nan_to_num(death)).sum(axis=1) + tail_p * mu_b, mu_b)   # requests/s served
    else:
        seen = pi
        thr = np.where(stable, load, mu_b)      # overloaded: every slot busy, the queue growing
    admit = np.where(n < b, prompts, mu_b[:, None])
    peak = np.maximum(np.nanmax(np.where(np.isfinite(death), death, 0.0), axis=1), mu_b)
    return State(pi, seen, tail_p, step, mu_b, load, thr, stable, admit, peak)


K_PROMPTS = 16          # prompts per step the step-level mixtures count (beyond: negligible)
SUBLEVELS = 2           # backlog levels per prompt in bursts() for prompts over FINE_PROMPT tokens
FINE_PROMPT = 1024      # above it a prompt may not fit the room a 2,048-token budget leaves (the same
                        # for every row, so that a row's figures do not depend on the rows beside it)
K_EXACT = 16            # per-request TPOT: exact Poisson sums up to this many decode steps
SPEC_TOKENS_MAX = 64    # speculative rows: the exact mixture over the steps K spans at most this many tokens,
SPEC_BEYOND = 1e-3      # and the tokens whose K exceeds K_EXACT with at most this chance (counted as a miss)
_LGAMMA = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 4096)))])


def _log_factorials(k: int) -> np.ndarray:
    """log j! for j = 0..k-1 (the table grown where a closed loop keeps more states than it holds)."""
    global _LGAMMA
    if k > len(_LGAMMA):
        _LGAMMA = np.concatenate([[0.0], np.cumsum(np.log(np.arange(1, 2 * k)))])
    return _LGAMMA[:k]


def poisson_pmf(mean, k: int) -> np.ndarray:
    """(..., k) P(M = 0..k-1) for M ~ Poisson(mean)."""
    mean = np.clip(np.nan_to_num(np.asarray(mean, dtype=float), nan=0.0, posinf=1e15), 1e-300, 1e15)[..., None]
    j = np.arange(k)
    return np.exp(-mean + j * np.log(mean) - _log_factorials(k))


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
    """Steps at a replica's typical occupancy, by the prompt backlog they start with: arrivals are
    Poisson, so a step of length T gathers A ~ Poisson(rate T) new prompts for the next one, and
    a step processes at most the token budget's room of the backlog, carrying the rest over (the
    mean of the chain above hides these bursts, which set the tails of TTFT and TPOT)."""

    t: np.ndarray       # (R, L) step seconds at backlog level x (x P / sub prompt tokens)
    rate: np.ndarray    # (R,) prompts/s entering steps (admissions)
    mean: np.ndarray    # (R,) mean step
    pm: np.ndarray      # (R, L) share of steps at level x
    left: np.ndarray    # (R, L) levels of backlog a step at level x leaves (what its room could not take)
    full: np.ndarray    # (R,) a step filling the whole room
    room: np.ndarray    # (R,) prompt tokens a step can take
    var: np.ndarray     # (R,) variance of the step time
    phi: np.ndarray     # (R,) lag-one autocorrelation of step times
    stable: np.ndarray  # (R,) the prompts arriving fit in the room steps leave
    trans: np.ndarray   # (R, L, L) the backlog chain's transitions
    chunk: np.ndarray   # (R, L) prompt tokens a step at level x processes
    sub: int            # levels per prompt: SUBLEVELS for long prompts, else 1
    arrive: np.ndarray  # (R, L) mean prompts arriving during a step at level x (step_arrivals)


def _at(arr, x):
    """arr (R, W) at fractional column x (R,), linearly interpolated."""
    r_, width = arr.shape
    i = np.clip(np.floor(x).astype(int), 0, width - 2)
    f = np.clip(x - i, 0.0, 1.0)
    rows = np.arange(r_)
    return arr[rows, i] * (1 - f) + arr[rows, i + 1] * f


def in_time_share(w: Workload, mean_step) -> np.ndarray:
    """d E[A] / d T over rate: how much a step's prompt arrivals grow with its length. Open loop:
    1 (Poisson in time). Closed loop: the arrivals come from the users thinking, m = rate Z of
    them, each sending after an exponential Z, and from the answers steps end, so a longer step
    gathers only the thinkers whose clocks ring in it: the slope is exp(-T / Z) (1 when Z >> T,
    0 when Z << T: then the next step meets the last one's departures whatever its length)."""
    t = np.asarray(mean_step, dtype=float)
    if not w.closed:
        return np.ones_like(t)
    return np.exp(-t / max(w.think_s, 1e-9))


def _departure_step(w: Workload, rate, occupancy) -> np.ndarray:
    """The mean step T at which `occupancy` running sequences end `rate` of them a second:
    occupancy / (O rate) (0 where nothing arrives)."""
    rate = np.asarray(rate, dtype=float)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(rate > 0, np.asarray(occupancy, dtype=float) / (w.output * rate), 0.0)


def step_arrivals(w: Workload, rate, occupancy, t) -> np.ndarray:
    """Mean prompts arriving during steps of length t (R, L) at `rate` prompts/s and `occupancy`
    running. Open loop: rate t. Closed loop: rate T at the mean step T = occupancy / (O rate)
    (the step at which that many departures a step make that rate), with the slope
    in_time_share() between: rate (T + Z (exp(-T / Z) - exp(-t / Z)))."""
    rate = np.asarray(rate, dtype=float)
    if not w.closed:
        return rate[:, None] * t
    mean_t = _departure_step(w, rate, occupancy)[:, None]
    z = max(w.think_s, 1e-9)
    return rate[:, None] * np.maximum(mean_t + z * (np.exp(-mean_t / z) - np.exp(-t / z)), 0.0)


def bursts(s: Steps, w: Workload, occupancy, rate) -> Bursts:
    """Steps at `occupancy` running sequences with prompts arriving at `rate`: the backlog of prompt
    tokens a step starts with is the Markov chain X' = max(X - room, 0) + P A, A ~ Poisson(rate
    T(X)) (a long step gathers more arrivals for the next one; what the budget's room cannot take
    waits for the next step), on levels of P / sub tokens (a fractional carry split between
    the two nearest levels, so that the backlog's mean is kept), solved for its stationary
    distribution."""
    c, m_, f = (_at(x, occupancy) for x in (s.compute, s.memory, s.fixed))
    r_ = len(c)
    room = np.maximum(s.budget - s.per_seq * occupancy, 1.0)
    sub = SUBLEVELS if w.prompt > FINE_PROMPT else 1                    # a prompt may span steps: finer
    levels = K_PROMPTS * sub
    u = max(w.prompt, 1e-9) / sub                                       # tokens per level
    x = np.arange(levels)[None, :]
    k = s.per_token[:, None]
    chunk = np.minimum(x * u, room[:, None])
    t = np.maximum(c[:, None] + k * chunk, m_[:, None]) + f[:, None]
    left = np.maximum(x - room[:, None] / u, 0.0)                       # (R, L) levels carried over
    lo = np.floor(left).astype(np.int64)
    hi_w = left - lo
    n_a = K_PROMPTS + 1
    arrive = step_arrivals(w, rate, occupancy, t)
    pa = poisson_pmf(arrive, n_a)                                       # (R, L, A)
    # each (row, level, arrivals) sends its mass to the two levels around what it leaves (one sum)
    base = (np.arange(r_)[:, None, None] * levels + np.arange(levels)[None, :, None]) * levels
    dest = lo[:, :, None] + sub * np.arange(n_a)[None, None, :]
    idx = np.concatenate([(base + np.minimum(dest, levels - 1)).ravel(), (base + np.minimum(dest + 1, levels - 1)).ravel()])
    wts = np.concatenate([(pa * (1.0 - hi_w)[:, :, None]).ravel(), (pa * hi_w[:, :, None]).ravel()])
    trans = np.bincount(idx, weights=wts, minlength=r_ * levels * levels).reshape(r_, levels, levels)
    trans[:, :, -1] += np.maximum(1.0 - trans.sum(axis=2), 0.0)
    # stationary: pm (P - I) = 0 with sum(pm) = 1 (the last balance equation replaced)
    lhs = np.swapaxes(trans, 1, 2) - np.eye(levels)[None]
    lhs[:, -1, :] = 1.0
    rhs = np.zeros((r_, levels))
    rhs[:, -1] = 1.0
    pm = np.clip(np.linalg.solve(lhs, rhs[:, :, None])[:, :, 0], 0.0, None)
    pm = pm / pm.sum(axis=1, keepdims=True)
    mean = (pm * t).sum(axis=1)
    dev = t - mean[:, None]
    var = (pm * dev * dev).sum(axis=1)
    lag1 = (pm * dev * np.einsum("rxy,ry->rx", trans, dev)).sum(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        phi = np.clip(np.where(var > 0, lag1 / var, 0.0), 0.0, 0.95)
    full = np.maximum(c + s.per_token * room, m_) + f
    stable = rate * w.prompt * full < room                              # the room keeps up with arrivals
    return Bursts(t, rate, mean, pm, left, full, room, var, phi, stable, trans, chunk, sub, arrive)


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
    return Steps(rep(s.compute), rep(s.memory), rep(s.fixed), rep(s.per_token), rep(s.slots), rep(s.budget),
                 None if s.decode_tokens is None else rep(s.decode_tokens), None if s.delay is None else rep(s.delay))


def _point_bursts(s: Steps, w: Workload, st: State, seen: bool) -> Bursts:
    """Bursts at each occupancy point, rows (R * J), in the engine's own steps (_engine_steps)."""
    occ, rate = _points(s, st, seen)
    return bursts(_engine_steps(_expand(s, occ.shape[1]), w), w, occ.ravel(), rate.ravel())


def _wait_cdf(s: Steps, w: Workload, st: State, slack) -> np.ndarray:
    """P(queued for a slot and the wait <= slack), slack (R, J)."""
    r_, width = st.pi.shape
    rows = np.arange(r_)
    pos = np.clip(slack, 0.0, 1e12)
    if not w.closed:
        # an overloaded replica (load above mu_B) never clears its queue: no wait is within the slack
        drain = np.maximum(st.mu_b - st.load, 0.0)[:, None]
        return st.seen[rows, s.slots][:, None] * np.where(slack > 0, -np.expm1(-drain * pos), 0.0)
    q = min(width - int(s.slots.min()), w.queue_states + 1)
    idx = s.slots[:, None] + np.arange(q)[None, :]
    seen_q = np.where(idx < width, np.take_along_axis(st.seen, np.minimum(idx, width - 1), axis=1), 0.0)
    # found j requests queued ahead: a wait for j + 1 departures at mu_B, done within s when
    # N ~ Poisson(mu_B s) > j: sum_j seen_j P(N > j) = E[C(N)], C(n) = sum_{j < n} seen_j
    below = np.concatenate([np.zeros((r_, 1)), np.cumsum(seen_q, axis=1)], axis=1)     # C(0..q)
    pm = poisson_pmf(st.mu_b[:, None] * pos, q)                                          # (R, J, q)
    tail = np.clip(1.0 - pm.sum(axis=2), 0.0, 1.0)                                       # P(N >= q)
    out = np.einsum("rjn,rn->rj", pm, below[:, :q]) + tail * below[:, q:]
    return np.where(slack > 0, out, 0.0)


def _drain(bu: Bursts, s_c: np.ndarray, s_m: np.ndarray, s_f: np.ndarray, k: np.ndarray, tokens) -> np.ndarray:
    """Seconds of the steps that process `tokens` prompt tokens (rows' leading axis, any trailing
    shape) at the room per step: full steps, then the one that takes the rest."""
    ex = (slice(None),) + (None,) * (np.ndim(tokens) - 1)
    room = bu.room[ex]
    n_full = np.maximum(np.ceil(tokens / room) - 1.0, 0.0)
    rest = tokens - n_full * room
    return n_full * bu.full[ex] + np.maximum(s_c[ex] + k[ex] * rest, s_m[ex]) + s_f[ex]


def _engine_scale(s: Steps, w: Workload) -> np.ndarray:
    """Per row, engine steps per per-token step: E on speculative rows (decode_tokens > 1), else 1."""
    if not w.draft_tokens or s.decode_tokens is None:
        return np.ones(len(s.slots))
    return np.where(s.decode_tokens > 1 + 1e-12, w.spec_gain, 1.0)


def _engine_steps(s: Steps, w: Workload) -> Steps:
    """The engine's own steps: a speculative row's per-token terms, budget and budget tokens per
    sequence times E (one engine step yields E tokens a sequence); other rows as they are. The
    chain (occupancy, queueing for slots) runs on per-token steps; the step-level tails (the
    prompt backlog, TTFT, TPOT) on these, as the engine takes them."""
    sc = _engine_scale(s, w)
    if (sc == 1.0).all():
        return s
    g = sc[:, None]
    return Steps(s.compute * g, s.memory * g, s.fixed * g, s.per_token, s.slots, s.budget * sc, s.per_seq * sc,
                 s.delay)


@dataclass
class TtftCtx:
    """What ttft_cdf needs that does not depend on t (one chain state; reused across t)."""

    ptime: np.ndarray    # (R J, L) time-weighted level of the step an arrival lands in
    pa: np.ndarray       # (R J, L, A) prompts arriving during it
    tm: np.ndarray       # (R J, L) its length
    own: np.ndarray      # (R J, L, A) until the arrival's prompt is done, after that step
    own_idle: np.ndarray  # (R J,) an arrival to an idle replica
    own_q: np.ndarray    # (R, L) a queued arrival, once admitted, at the busiest point
    pm_q: np.ndarray     # (R, L)
    ok: np.ndarray       # (R J,)
    idle: np.ndarray     # (R,)
    busy: np.ndarray     # (R,)


def ttft_ctx(s: Steps, w: Workload, st: State) -> TtftCtx:
    j = OCCUPANCY_POINTS
    r_ = len(s.slots)
    bu = _point_bursts(s, w, st, seen=True)
    occ, _ = _points(s, st, seen=True)
    sx = _engine_steps(_expand(s, j), w)
    c, m_, f = (_at(x, occ.ravel()) for x in (sx.compute, sx.memory, sx.fixed))
    u = max(w.prompt, 1e-9) / bu.sub
    n_a = K_PROMPTS
    n = np.arange(st.seen.shape[1])[None, :]
    idle = st.seen[:, 0]
    queued_p = (st.seen * (n >= s.slots[:, None])).sum(axis=1)
    busy = np.maximum(1.0 - idle - queued_p, 0.0)
    tm = bu.t
    ptime = bu.pm * tm
    ptime = ptime / ptime.sum(axis=1, keepdims=True)
    # the others arriving during the step an arrival lands in: in a closed loop the departures'
    # returns (step_arrivals), or, for the users whose think time outlasts a mean step (they
    # land at a random moment, not at a step's start), in proportion to its length
    mean_arrive = bu.arrive
    if w.closed:
        tbar = _departure_step(w, bu.rate, occ.ravel())[:, None]
        mean_arrive = np.maximum(bu.arrive, bu.rate[:, None] * tm * in_time_share(w, tbar))
    pa = poisson_pmf(mean_arrive, n_a)
    ahead = bu.left[:, :, None] * u + w.prompt * (1.0 + np.arange(n_a))[None, None, :]
    own = _drain(bu, c, m_, f, sx.per_token, ahead)
    own_idle = _drain(bu, c, m_, f, sx.per_token, np.full(r_ * j, float(w.prompt)))
    last = np.arange(r_) * j + (j - 1)
    own_q = _drain(bu, c, m_, f, sx.per_token, np.arange(bu.t.shape[1])[None, :] * u + w.prompt)[last]
    return TtftCtx(ptime, pa, tm, own, own_idle, own_q, bu.pm[last], bu.stable, idle, busy)


def ttft_cdf(s: Steps, w: Workload, st: State, t, ctx: TtftCtx | None = None) -> np.ndarray:
    """P(TTFT <= t) per row (t: (R,)).

    An arrival that finds a free slot lands in a step at backlog level x (time-weighted), waits
    out a uniform share of it, then its prompt is processed after what that step left and the A
    others that arrived meanwhile (A ~ Poisson(rate T(x))), at the room of each step; one that
    finds no slot waits for a departure (the chain) and then joins a step's backlog the same way.
    Step times at the occupancy points an arrival finds."""
    t = np.asarray(t, dtype=float)
    if s.delay is not None:
        t = t - s.delay
    r_ = len(t)
    j = OCCUPANCY_POINTS
    x = ctx if ctx is not None else ttft_ctx(s, w, st)
    tt = np.repeat(np.minimum(t, 1e12), j)
    with np.errstate(over="ignore", invalid="ignore"):
        frac = np.nan_to_num(np.clip((tt[:, None, None] - x.own) / x.tm[:, :, None], 0.0, 1.0), nan=0.0)
    g_busy = (x.ptime[:, :, None] * x.pa * frac).sum(axis=(1, 2))
    g_idle = (x.own_idle <= tt).astype(float)
    g_busy = np.where(x.ok, g_busy, 0.0).reshape(r_, j).mean(axis=1)
    g_idle = np.where(x.ok, g_idle, 0.0).reshape(r_, j).mean(axis=1)
    last = np.arange(r_) * j + (j - 1)
    f_q = (x.pm_q * _wait_cdf(s, w, st, t[:, None] - x.own_q)).sum(axis=1) * x.ok[last]
    out = x.idle * g_idle + x.busy * g_busy + f_q
    return np.where(st.stable, out, 0.0)


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


QUANTILE_ITERS = 30     # the percentiles' bisections: to 2^-30 of their bracket (a billionth of a second or so)
UNITS = 8               # the TPOT recursion's grid: units per step up to a heavy step (CAP_SD)
CAP_SD = 4.0            # the heavy step: a + CAP_SD sqrt(a) + 2 prompts (a: prompts per step)


@dataclass
class TpotLaw:
    """Per burst row, the law of a request's TPOT over its decode steps k (_decode_steps): for
    k <= K_EXACT the distribution of the sum of its step times on a grid (pmf over units of h
    above k decode-only steps; k = 1 and 2 exactly), beyond that a normal with the chain's mean
    and variance."""

    t0: np.ndarray       # (R,) decode-only step
    h: np.ndarray        # (R,) seconds per unit
    pmf: np.ndarray      # (R, K_EXACT, C) units of S_k - k t0, k = 1..K_EXACT
    mean: np.ndarray     # (R, nk) S_k for the long requests
    sd: np.ndarray       # (R, nk)
    ks: np.ndarray       # (nk,) decode steps
    wk: np.ndarray       # (nk,) their weights
    stable: np.ndarray   # (R,)
    q0: np.ndarray       # (R, L) the level of a request's first decode step
    t: np.ndarray        # (R, L) step seconds per level
    trans: np.ndarray    # (R, L, L)
    spec: np.ndarray | None = None   # (R,) speculative rows (per-token steps; _tpot_tail_law)
    spec_exact: tuple | None = None  # _tpot_tail_law's exact mixture: columns, rows, tokens, P(K | m), survivals


def _split(values, width: int):
    """Fractional grid positions as (floor, weight of floor + 1), clipped to the grid."""
    v = np.clip(values, 0.0, width - 1.0)
    lo = np.minimum(np.floor(v).astype(np.int64), width - 2)
    return lo, v - lo


def tpot_law(bu: Bursts, w: Workload) -> TpotLaw:
    """A request's first decode step follows the step that finished its prompt, picked in
    proportion to the prompt tokens steps process (pm x chunk): its backlog is what that step
    left plus what arrived during it, q0 = (pm chunk) P, heavier than an average step. From q0
    the backlog chain gives the distribution of the sum S_k of the request's k step times
    exactly, up to the grid: a forward recursion over (level, units so far), each step's excess
    over a decode-only step split between the two nearest units so that its mean is kept, the
    grid spanning UNITS units up to a heavy step (a + CAP_SD sqrt(a) + 2 prompts; a rarer,
    heavier step counts as that). Longer requests: the stationary mean plus that start's bias,
    and the variance of a sum of k steps with the chain's lag-one correlation phi taken as
    AR(1): Var = k var [(1 + phi) / (1 - phi) - 2 phi (1 - phi^k) / (k (1 - phi)^2)]."""
    r_, levels = bu.t.shape
    tl = bu.t
    t0 = tl[:, 0]
    a = bu.rate * bu.mean
    x_cap = np.minimum(np.ceil(bu.sub * (a + CAP_SD * np.sqrt(a) + 2.0)).astype(np.int64), levels - 1)
    h = np.maximum(tl[np.arange(r_), x_cap] - t0, 1e-12) / UNITS
    q0 = bu.pm * bu.chunk
    q0 = np.where(q0.sum(axis=1, keepdims=True) > 0, q0, bu.pm)
    q0 = np.einsum("rx,rxy->ry", q0 / q0.sum(axis=1, keepdims=True), bu.trans)
    width = UNITS * K_EXACT + 1
    lo, wh = _split((tl - t0[:, None]) / h[:, None], UNITS + 1)          # (R, L) each level's units
    # the recursion in Fourier space along the units (the K_EXACT steps' sums span exactly `width`
    # units, so the cyclic transform does not wrap): a step's split shift multiplies by its
    # transfer function, and the chain's transitions act on the levels as before
    turns = np.exp(-2j * np.pi * np.arange(UNITS + 1)[:, None] * np.arange(width // 2 + 1)[None, :] / width)
    shift = ((1.0 - wh)[:, :, None] * turns[lo] + wh[:, :, None] * turns[lo + 1]).astype(np.complex64)  # (R, L, W)
    # in single precision: probabilities of order 1e-2 and up matter (a percentile's tail), which
    # float32's 1e-7 keeps, at a fifth of the time of the double-precision recursion
    back = np.ascontiguousarray(np.swapaxes(bu.trans, 1, 2), dtype=np.float32)   # (R, z, y), contiguous for BLAS
    spec = np.empty((r_, K_EXACT, shift.shape[2]), dtype=np.complex64)
    f = q0[:, :, None].astype(np.float32) * shift
    spec[:, 0] = f.sum(axis=1)
    for i in range(1, K_EXACT):
        # the real transitions on the real and imaginary parts at once
        f = np.matmul(back, np.ascontiguousarray(f).view(np.float32)).view(np.complex64) * shift
        spec[:, i] = f.sum(axis=1)
    pmf = np.clip(np.fft.irfft(spec.astype(complex), n=width, axis=2), 0.0, None)   # (R, K_EXACT, C)
    ks, wk = _decode_steps(w)
    k = ks[None, :]
    e_last = t0 * K_EXACT + h * (pmf[:, -1, :] * np.arange(width)[None, :]).sum(axis=1)
    bias = e_last - K_EXACT * bu.mean
    phi = bu.phi[:, None]
    ar1 = (1 + phi) / (1 - phi) - 2 * phi * (1 - phi ** k) / (k * (1 - phi) ** 2)
    mean = k * bu.mean[:, None] + bias[:, None]
    sd = np.sqrt(np.maximum(k * bu.var[:, None] * ar1, 1e-300))
    return TpotLaw(t0, h, pmf, mean, sd, ks, wk, bu.stable, q0, tl, bu.trans)


def _tpot_tail_law(law: TpotLaw, t, w: Workload | None = None) -> np.ndarray:
    """P(TPOT > t) per row of the law (t: (R,)).

    Speculative rows (law.spec, the law in engine steps): a request's k tokens come from K engine
    steps, K random (the tokens a step yields vary, Workload.spec_gain_pmf), and its TPOT is
    S_K / k. For k up to Workload.spec_exact_tokens the law of K given k (spec_steps_pmf) mixes
    the exact sums of K_EXACT steps; beyond, the normal's mean and spread are over k / E steps
    (_points_law)."""
    ks = law.ks
    small = ks <= K_EXACT
    spec = law.spec if (w is not None and w.draft_tokens and law.spec is not None and law.spec.any()) else None
    over = 1.0 - normal_cdf((ks[None, :] * t[:, None] - law.mean) / law.sd)
    if small.any():
        kk = ks[small].astype(np.int64)
        thr = kk[None, :] * (t[:, None] - law.t0[:, None]) / law.h[:, None]        # (R, ns) units allowed
        c = np.arange(law.pmf.shape[2])[None, None, :]
        # each atom spread over [c - 1/2, c + 1/2]
        frac = np.clip(c - thr[:, :, None] + 0.5, 0.0, 1.0)
        over[:, small] = (law.pmf[:, kk - 1, :] * frac).sum(axis=2)
    # one and two decode steps: from the levels themselves, off the grid
    tt = t[:, None]
    for kk in (1, 2):
        col = np.flatnonzero(ks == kk)
        if not len(col):
            continue
        if kk == 1:
            p = (law.q0 * (law.t > tt)).sum(axis=1)
        else:
            long_ = (law.t[:, :, None] + law.t[:, None, :]) > 2 * tt[:, :, None]
            p = np.einsum("ry,ryz->r", law.q0, law.trans * long_)
        over[:, col[0]] = p if spec is None else np.where(spec, over[:, col[0]], p)
    if spec is not None and (law.spec_exact is None or len(law.spec_exact[0])):
        # P(S_K > t m) = sum_j P(K = j | m) P(S_j > t m), the survival of each exact sum S_j read
        # off its grid (each atom spread over [c - 1/2, c + 1/2], as above: linear between the
        # half-units); the mass of K > K_EXACT counted as over
        if law.spec_exact is None:
            cols = np.flatnonzero(ks <= w.spec_exact_tokens())
            rows = np.flatnonzero(spec)
            m = np.rint(ks[cols]).astype(np.int64)
            pk = w.spec_steps_pmf(int(m.max()))[m - 1] if len(m) else np.zeros((0, K_EXACT))   # (nc, K)
            surv = np.concatenate([np.cumsum(law.pmf[rows, :, ::-1], axis=2)[:, :, ::-1],
                                   np.zeros((len(rows), K_EXACT, 1))], axis=2)            # (r, K, C + 1)
            law.spec_exact = (cols, rows, m, pk, np.swapaxes(surv, 1, 2))                 # (r, C + 1, K)
        cols, rows, m, pk, sv = law.spec_exact
        n_c = law.pmf.shape[2]
        j = np.arange(1, K_EXACT + 1)[None, None, :]
        x = (m[None, :, None] * t[rows, None, None] - j * law.t0[rows, None, None]) / law.h[rows, None, None] + 0.5
        x = np.clip(x, 0.0, float(n_c))                                                   # (r, nc, K)
        lo = np.minimum(np.floor(x).astype(np.int64), n_c - 1)
        fr = x - lo
        s_lo = np.take_along_axis(sv, lo, axis=1)
        s_hi = np.take_along_axis(sv, lo + 1, axis=1)
        p_j = s_lo * (1.0 - fr) + s_hi * fr                                               # P(S_j > t m)
        over[np.ix_(rows, cols)] = (p_j * pk[None, :, :]).sum(axis=2) + (1.0 - pk.sum(axis=1))[None, :]
    over = np.where(law.stable[:, None], np.clip(over, 0.0, 1.0), 1.0)
    return (over * law.wk[None, :]).sum(axis=1) / law.wk.sum()


def _points_law(s: Steps, w: Workload, st: State) -> tuple[Bursts, TpotLaw]:
    """The TPOT law at each occupancy point (rows R * J). A long request sees the occupancy move
    while it decodes: over its k steps the point's offset from the mean decays as the occupancy
    relaxes (time constant tau: the mean sojourn O T, and in a closed loop the think time too,
    1 / tau = 1 / (O T) + 1 / Z), and averaging an Ornstein-Uhlenbeck process over a window of
    x = k T / tau keeps sqrt(2 (x - 1 + e^-x) / x^2) of it: the long requests' means are drawn
    that far toward the points' average."""
    j = OCCUPANCY_POINTS
    bu = _point_bursts(s, w, st, seen=False)
    law = tpot_law(bu, w)
    sc = np.repeat(_engine_scale(s, w), j)              # engine steps per token step: E or 1
    if (sc != 1.0).any():
        # speculative rows: k tokens take K engine steps, E[K] = k / E plus the last step's
        # overshoot (its constant taken where the exact law ends, at K_EXACT tokens), and K
        # varies (a renewal count: variance k var(G) / E^3), adding mean_step^2 var(K) to the
        # sum's variance
        law.spec = sc != 1.0
        rows = np.flatnonzero(law.spec)
        e, k = w.spec_gain, law.ks[None, :]
        overshoot = float(w.spec_steps_pmf()[-1] @ np.arange(1, K_EXACT + 1)) - K_EXACT / e
        n_steps = k / e + overshoot
        phi = bu.phi[rows, None]
        ar1 = (1 + phi) / (1 - phi) - 2 * phi * (1 - phi ** n_steps) / (n_steps * (1 - phi) ** 2)
        bias = law.mean[rows, :1] - bu.mean[rows, None] * law.ks[0]           # the start's bias (tpot_law)
        law.mean[rows] = n_steps * bu.mean[rows, None] + bias
        law.sd[rows] = np.sqrt(np.maximum(n_steps * bu.var[rows, None] * ar1
                                          + bu.mean[rows, None] ** 2 * k * w.spec_var / e ** 3, 1e-300))
    big = law.ks > K_EXACT
    if big.any():
        t_bar = (bu.mean / sc).reshape(-1, j).mean(axis=1)
        inv_tau = 1.0 / (w.output * t_bar) + (1.0 / max(w.think_s, 1e-3) if w.closed else 0.0)
        x = law.ks[None, big] * (t_bar * inv_tau)[:, None]                  # (R, nb)
        keep = np.sqrt(2.0 * (x - 1.0 + np.exp(-x)) / (x * x))
        m = law.mean[:, big].reshape(-1, j, big.sum())
        avg = m.mean(axis=1, keepdims=True)
        law.mean[:, big] = (avg + (m - avg) * keep[:, None, :]).reshape(-1, big.sum())
    return bu, law


def _tpot_tail(s: Steps, w: Workload, st: State, t) -> np.ndarray:
    """P(a request's TPOT > t), t (R,), mixed over the occupancy points a decode token sees."""
    _, law = _points_law(s, w, st)
    j = OCCUPANCY_POINTS
    return _tpot_tail_law(law, np.repeat(np.asarray(t, dtype=float), j), w).reshape(-1, j).mean(axis=1)


def tpot_quantile(s: Steps, w: Workload, st: State, iters: int = QUANTILE_ITERS) -> np.ndarray:
    """The p-quantile of per-request TPOT, by bisection on t."""
    bu, law = _points_law(s, w, st)
    j = OCCUPANCY_POINTS
    per_seq = _engine_steps(_expand(s, j), w).per_seq        # a step yields at most k + 1 tokens (1 without speculation)
    lo = (bu.t[:, 0] / per_seq).reshape(-1, j).min(axis=1) * (1 - 1e-9)
    hi = np.maximum(bu.t.max(axis=1), (law.mean / law.ks[None, :] + 6 * law.sd / law.ks[None, :]).max(axis=1))
    hi = hi.reshape(-1, j).max(axis=1) + 1e-9
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = _tpot_tail_law(law, np.repeat(mid, j), w).reshape(-1, j).mean(axis=1) <= 1.0 - w.percentile
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    return np.where(st.stable, hi, np.inf)


def mean_tpot(s: Steps, w: Workload, st: State) -> np.ndarray:
    bu = _point_bursts(s, w, st, seen=False)
    return (bu.mean / np.repeat(_engine_scale(s, w), OCCUPANCY_POINTS)).reshape(-1, OCCUPANCY_POINTS).mean(axis=1)


MARGIN_CLIP = 30.0      # margin(): |log| tail ratios beyond this are clipped (and overloaded rows get -it)


def margin(s: Steps, w: Workload, st: State, ttft=None, tpot=None, e2e=None) -> np.ndarray:
    """How far each row is inside its targets at the percentile p: the least over the targets
    given of log((1 - p) / P(miss)), P(miss) = P(TTFT > target), P(TPOT > target) or P(TTFT >
    the end-to-end budget) (>= 0: all met; about linear in the load near the edge, as tails fall
    off exponentially, which is what capacity()'s root finding wants). An unstable row's margin is
    -MARGIN_CLIP whatever its tails: they are computed for the stable rows only."""
    if not st.stable.all():
        out = np.full(len(s.slots), -MARGIN_CLIP)
        rows = np.flatnonzero(st.stable)
        if len(rows):
            out[rows] = margin(s.rows(rows), w, _state_rows(st, rows), ttft, tpot, e2e)
        return out
    out = np.full(len(s.slots), MARGIN_CLIP)
    allowed = 1.0 - w.percentile
    ratio = lambda miss, a=allowed: np.clip(np.log(a / np.maximum(miss, 1e-300)), -MARGIN_CLIP, MARGIN_CLIP)  # noqa: E731
    if ttft is not None:
        out = np.minimum(out, ratio(1.0 - ttft_cdf(s, w, st, np.full(len(out), ttft)), 1.0 - w.ttft_p))
    if tpot is not None:
        # where an earlier target is already missed the sign is settled: the TPOT law (the costly
        # part) is computed only for the other rows
        rows = np.flatnonzero(out >= -1e-9) if ttft is not None else np.arange(len(out))
        if len(rows):
            tail = _tpot_tail(s.rows(rows), w, _state_rows(st, rows), np.full(len(rows), tpot * (1 + 1e-12)))
            out[rows] = np.minimum(out[rows], ratio(tail))
    if e2e is not None:
        budget = e2e - (w.output_quantile - 1.0) * mean_tpot(s, w, st)
        miss = np.where(np.isfinite(budget), 1.0 - ttft_cdf(s, w, st, np.nan_to_num(budget)), 1.0)
        out = np.minimum(out, ratio(miss))
    return np.where(st.stable, out, -MARGIN_CLIP)


def meets(s: Steps, w: Workload, st: State, ttft=None, tpot=None, e2e=None) -> np.ndarray:
    return margin(s, w, st, ttft, tpot, e2e) >= -1e-9


def ttft_quantile(s: Steps, w: Workload, st: State, iters: int = QUANTILE_ITERS) -> np.ndarray:
    """The p-quantile of TTFT per row, by bisection on t (F is non-decreasing)."""
    ctx = ttft_ctx(s, w, st)
    hi = np.max(np.where(np.isfinite(st.step), st.step, 0.0), axis=1) * 4.0 + 1.0
    if s.delay is not None:
        hi = hi + s.delay
    return _quantile(lambda t: ttft_cdf(s, w, st, t, ctx), w.ttft_p, hi, st.stable, iters)


def _quantile(cdf, p: float, hi: np.ndarray, stable: np.ndarray, iters: int) -> np.ndarray:
    """The p-quantile per row of a non-decreasing cdf(t): hi grown 4x until it holds (up to 1e7 s:
    beyond, a replica that never catches up in practice, infinite), then bisection; inf where
    unstable."""
    while True:
        grow = (cdf(hi) < p) & stable & (hi <= 1e7)
        if not grow.any():
            break
        hi = np.where(grow, hi * 4.0, hi)
    lo = np.zeros(len(hi))
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        ok = cdf(mid) >= p
        hi, lo = np.where(ok, mid, hi), np.where(ok, lo, mid)
    hi = np.where(cdf(hi) >= p, hi, np.inf)
    return np.where(stable, hi, np.inf)


def saturation(s: Steps, w: Workload) -> np.ndarray:
    """Requests/s a replica serves with every slot busy."""
    return s.slots / (w.output * full_slot_step(s, w))


def _state_rows(st: State, idx) -> State:
    return State(*(getattr(st, f.name)[idx] for f in fields(State)))


def light_load(s: Steps, w: Workload) -> np.ndarray:
    """A load small enough that queueing is negligible (capacity()'s lower end): one user in a
    closed loop, 1e-6 of the most a replica can take in an open one."""
    if w.closed:
        return np.ones(len(s.slots))
    kp = s.per_token * w.prompt
    with np.errstate(divide="ignore"):
        return np.minimum(saturation(s, w), np.where(kp > 0, 1.0 / kp, np.inf)) * (1.0 - 1e-9) * 1e-6


CAPACITY_TOL = 1e-4     # capacity(): the bracket's width at the end, relative to its top


@dataclass
class Bracket:
    """capacity()'s search per row: the margin holds at lo, fails at hi (unless met_top: it holds
    at the bracket's top, the capacity) with the margins (g_lo, g_hi) there; ok_lo False: it
    fails even at light load (capacity 0)."""

    lo: np.ndarray
    hi: np.ndarray
    g_lo: np.ndarray
    g_hi: np.ndarray
    met_top: np.ndarray
    ok_lo: np.ndarray
    step: float            # 1: integer loads (a closed loop's users)

    def value(self) -> np.ndarray:
        return np.where(self.met_top, self.hi, np.where(self.ok_lo, self.lo, 0.0))

    def most(self) -> np.ndarray:
        """The most the capacity can be: hi where the margin holds there, else just below it."""
        below = self.hi - self.step if self.step else self.hi
        return np.where(self.met_top, self.hi, np.where(self.ok_lo, below, 0.0))

    def rows(self, idx) -> "Bracket":
        return Bracket(self.lo[idx], self.hi[idx], self.g_lo[idx], self.g_hi[idx], self.met_top[idx],
                       self.ok_lo[idx], self.step)

    def put(self, idx, other: "Bracket") -> None:
        """Rows idx replaced by other's (in place)."""
        for f in ("lo", "hi", "g_lo", "g_hi", "met_top", "ok_lo"):
            getattr(self, f)[idx] = getattr(other, f)

    @staticmethod
    def exact(value, step: float = 0.0) -> "Bracket":
        """A search already closed at `value` (no target to search for)."""
        value = np.array(value, dtype=float)
        yes = np.ones(len(value), dtype=bool)
        return Bracket(value, value.copy(), np.zeros(len(value)), np.zeros(len(value)), yes, yes.copy(), step)


def capacity(s: Steps, w: Workload, ttft=None, tpot=None, e2e=None, at_lo=None,
             tol: float = CAPACITY_TOL, start: Bracket | None = None, bracket: bool = False):
    """The largest load per row (requests/s; closed loop: users, an integer) at which every given
    target holds at the percentile; 0 where none does. The margin (margin()) falls as the load
    grows (the chain's occupancy and its steps grow with it), so the edge is its root: found by
    the Illinois variant of regula falsi on a bracket [met, missed] (each step kept at least 5%
    inside the bracket, so it shrinks as fast as bisection at worst; a geometric step while an end's
    margin is clipped), only on the rows not yet converged. Stops when the bracket is within tol
    of its top (closed loop: or one user wide). at_lo: the margins at light_load() where the caller
    has them (not recomputed). bracket: return the search's Bracket, which start= resumes (a coarse
    tol first, then the full one on the rows that matter: the same edge, as the margin falls)."""
    step = 1.0 if w.closed else 0.0
    hi, no_target = load_top(s, w)
    if ttft is None and tpot is None and e2e is None:
        out = Bracket.exact(no_target, step)
    else:
        g = lambda rows, x: margin(s.rows(rows), w, chain(s.rows(rows), w, x), ttft, tpot, e2e)  # noqa: E731
        if start is None:
            start = _bracket(g, light_load(s, w), hi, step, at_lo)
        out = _edge(g, start, tol)
    return out if bracket else out.value()


def load_top(s: Steps, w: Workload) -> tuple[np.ndarray, np.ndarray]:
    """capacity()'s upper end per row, and the load it gives a row with no target: open loop,
    just under saturation (or the prompt rate the replica's prefill alone can take) and
    NO_TARGET_LOAD of it; closed loop, the users that keep it saturated with every queue state
    filled, and NO_TARGET_LOAD of the users saturation serves."""
    mu = saturation(s, w)
    if w.closed:
        z = max(w.think_s, 0.0)
        return (np.floor(mu * z + s.slots + QUEUE_STATES) + 1.0,
                np.floor(NO_TARGET_LOAD * mu * (z + w.output * full_slot_step(s, w))))
    kp = s.per_token * w.prompt
    with np.errstate(divide="ignore"):
        hi = np.minimum(mu, np.where(kp > 0, 1.0 / kp, np.inf)) * (1.0 - 1e-9)
    return hi, NO_TARGET_LOAD * hi


def _bracket(g, lo, hi, step: float = 0.0, g_lo=None) -> Bracket:
    """The search's start on [lo, hi]; g_lo: the margins at lo, where known."""
    all_rows = np.arange(len(lo))
    g_lo = g(all_rows, lo) if g_lo is None else np.array(g_lo, dtype=float)
    g_hi = g(all_rows, hi)
    return Bracket(np.array(lo, dtype=float), np.array(hi, dtype=float), g_lo, g_hi, g_hi >= -1e-9,
                   g_lo >= -1e-9, step)


def _edge(g, br: Bracket, tol: float = CAPACITY_TOL) -> Bracket:
    """The root of the decreasing margins g(rows, x) per row in the bracket: the Illinois variant
    of regula falsi (see capacity()), until each bracket is within tol of its top (step 1:
    integer loads, one apart at least). Returns the narrowed bracket (a copy)."""
    lo, hi, g_lo, g_hi = br.lo.copy(), br.hi.copy(), br.g_lo.copy(), br.g_hi.copy()
    step = br.step
    r_ = len(lo)
    active = br.ok_lo & ~br.met_top & (hi - lo > np.maximum(tol * hi, step))
    side = np.zeros(r_, dtype=np.int64)          # Illinois: which end was kept last (+1 lo, -1 hi)
    while active.any():
        rows = np.flatnonzero(active)
        l_, h_, gl, gh = lo[rows], hi[rows], g_lo[rows], g_hi[rows]
        with np.errstate(divide="ignore", invalid="ignore"):
            x = h_ - gh * (h_ - l_) / (gh - gl)
        span = h_ - l_
        x = np.clip(np.nan_to_num(x, nan=0.5 * (l_ + h_)), l_ + 0.05 * span, h_ - 0.05 * span)
        # an end whose margin is clipped says nothing of the slope: step geometrically instead (the
        # edge is often orders of magnitude below the bracket's top), then the secant takes over
        clipped = (np.abs(gl) >= MARGIN_CLIP - 1e-9) | (np.abs(gh) >= MARGIN_CLIP - 1e-9)
        x = np.where(clipped & (l_ > 0), np.sqrt(np.maximum(l_, 1e-300) * h_), x)
        if step:
            x = np.clip(np.round(x), l_ + 1.0, h_ - 1.0)
        gx = g(rows, x)
        ok = gx >= -1e-9
        # Illinois: halve the margin of the end kept twice in a row
        keep_lo = ~ok
        lo[rows] = np.where(ok, x, l_)
        g_lo[rows] = np.where(ok, gx, np.where(side[rows] == 1, 0.5 * gl, gl))
        hi[rows] = np.where(ok, h_, x)
        g_hi[rows] = np.where(ok, np.where(side[rows] == -1, 0.5 * gh, gh), gx)
        side[rows] = np.where(keep_lo, 1, -1)
        active[rows] = hi[rows] - lo[rows] > np.maximum(tol * hi[rows], step)
    return Bracket(lo, hi, g_lo, g_hi, br.met_top, br.ok_lo, step)


@dataclass
class Figures:
    """A replica at one load: the percentile latencies and what it serves."""

    ttft: np.ndarray
    tpot: np.ndarray
    e2e: np.ndarray
    throughput: np.ndarray   # requests/s
    utilization: np.ndarray  # throughput / the most any occupancy serves (State.peak)
    busy_slots: np.ndarray   # mean running sequences
    wait_share: np.ndarray   # share of requests that queue for a slot

    def rows(self, idx) -> "Figures":
        return Figures(*(getattr(self, f.name)[idx] for f in fields(self)))


def figures(s: Steps, w: Workload, load) -> Figures:
    st = chain(s, w, np.asarray(load, dtype=float))
    ttft = ttft_quantile(s, w, st)
    tpot = tpot_quantile(s, w, st)
    e2e = ttft + (w.output_quantile - 1.0) * mean_tpot(s, w, st)
    n = np.arange(st.pi.shape[1])[None, :]
    busy = (st.pi * np.minimum(n, s.slots[:, None])).sum(axis=1)
    waits = (st.seen * (n >= s.slots[:, None])).sum(axis=1)
    util = np.where(st.stable, st.throughput / st.peak, np.nan)
    return Figures(ttft, tpot, e2e, st.throughput, util, busy, waits)


# A disaggregated prefill pool (serving.role_workload): replicas that only prefill. Nothing decodes
# there, so the engine is one FIFO server of prompt tokens: each step takes the token budget's
# worth of the backlog, oldest first, in T(c) = max(C + k c, M) + F seconds (C, M, F at one running
# sequence: the token a finished prompt samples). The birth-death chain above counts a request's
# time in its slot as decode steps, which a prefill-only replica does not have (its TTFT came out
# half the simulation's at 4,000-token prompts), so the pool has its own model: the backlog a step
# starts with, X' = max(X - B, 0) + P A with A ~ Poisson(lambda T(X)), solved exactly on
# PREFILL_LEVELS levels (a fractional level split between its two neighbours, so that the mean is
# kept; a backlog short of one level rounded up to it) spanning three times the backlog an arrival
# could still clear within the horizon (the TTFT target, else PREFILL_STEPS full steps): mass beyond
# the top level is a miss. Each row's figures depend on that row alone. Slots never bind while the engine may admit more prompts than a
# step takes (the planner keeps prefill replicas with at least ceil(B / P) + 1 slots).
PREFILL_LEVELS = 97
PREFILL_STEPS = 12
PREFILL_SPAN_PROMPTS = 32
PREFILL_SPAN_STEPS = 8
PREFILL_ARRIVALS = 160  # at most this many prompts counted per step (beyond: the chain's top level, and a miss)
PREFILL_POSITIONS = 4   # where in its step an arrival lands: K equal bins of the step


@dataclass
class PrefillCtx:
    own: np.ndarray       # (R, L, A) seconds from the end of the step an arrival lands in to its first token
    tm: np.ndarray        # (R, L) that step's length, at its backlog level
    ptime: np.ndarray     # (R, L) share of time in a step at each level (levels kept)
    pa: list              # K x (R, L, A) prompts that arrived before it in that step, at each of K positions
    idle: np.ndarray      # (R,) share of arrivals finding the engine idle
    own_idle: np.ndarray  # (R,) their TTFT
    stable: np.ndarray    # (R,)
    delay: np.ndarray     # (R,) Steps.delay: the KV hand-off after the first token


def _prefill_step(c, k, m, f, tokens):
    return np.maximum(c + k * tokens, m) + f


def prefill_saturation(s: Steps, w: Workload) -> np.ndarray:
    """Prompts/s a prefill-only replica processes with every step full (B tokens each)."""
    return s.budget / (w.prompt * _prefill_step(s.compute[:, 1], s.per_token, s.memory[:, 1], s.fixed[:, 1], s.budget))


def prefill_ctx(s: Steps, w: Workload, rate, horizon_s=None) -> PrefillCtx:
    """The prefill pool's backlog chain at `rate` prompts/s per row, and what its TTFT law needs up
    to horizon_s seconds (the TTFT target: the CDF is exact up to there)."""
    rate = np.broadcast_to(np.asarray(rate, dtype=float), (len(s.slots),))
    c, m, f, k, bud = s.compute[:, 1], s.memory[:, 1], s.fixed[:, 1], s.per_token, s.budget
    p, r_ = w.prompt, len(c)
    t_b = _prefill_step(c, k, m, f, bud)
    steps = PREFILL_STEPS if horizon_s is None else np.asarray(horizon_s) / t_b
    # (R,) tokens kept: three times what the horizon clears, at most what the load's backlog
    # reaches (PREFILL_SPAN_PROMPTS prompts or PREFILL_SPAN_STEPS full steps, more as the load nears
    # saturation, where the backlog's scale grows as 1 / (1 - load))
    rho = np.clip(rate / prefill_saturation(s, w), 0.0, 0.999)
    span = np.minimum((3.0 * np.ceil(steps) + 4.0) * bud + p,
                      np.maximum(PREFILL_SPAN_PROMPTS * p, PREFILL_SPAN_STEPS * bud) * np.maximum(1.0, 0.15 / (1.0 - rho)))
    levels = PREFILL_LEVELS
    u = span / (levels - 1)                                                     # (R,) tokens per level
    x = np.arange(levels)[None, :]
    t = _prefill_step(c[:, None], k[:, None], m[:, None], f[:, None], np.minimum(x * u[:, None], bud[:, None]))
    left = np.maximum(x - (bud / u)[:, None], 0.0)                             # (R, L) levels carried over
    # prompts arriving during a step: Poisson(rate T), counted up to twice what a full step of the
    # largest budget holds, plus 24 (at most PREFILL_ARRIVALS; the rest of the mass reaches the top
    # level in the chain, and misses in the TTFT law); the same count for every row of a workload
    # (budgets are vLLM's 2,048 or 8,192, or the user's for all), so that a row's figures do not
    # depend on the rows beside it
    n_a = int(np.clip(np.ceil(2.0 * max(8192.0, float(bud.max())) / p) + 24, 32, PREFILL_ARRIVALS))
    pa = poisson_pmf(rate[:, None] * t, n_a)                                   # (R, L, A)
    dest = left[:, :, None] + (p / u)[:, None, None] * np.arange(n_a)[None, None, :]
    # level 0 is the empty engine only: a backlog short of one level is rounded up to it
    dest = np.where(dest > 0, np.maximum(dest, 1.0), 0.0)
    lo = np.floor(dest).astype(np.int64)
    hw = dest - lo
    base = (np.arange(r_)[:, None, None] * levels + np.arange(levels)[None, :, None]) * levels
    idx = np.concatenate([(base + np.minimum(lo, levels - 1)).ravel(), (base + np.minimum(lo + 1, levels - 1)).ravel()])
    wts = np.concatenate([(pa * (1.0 - hw)).ravel(), (pa * hw).ravel()])
    trans = np.bincount(idx, weights=wts, minlength=r_ * levels * levels).reshape(r_, levels, levels)
    trans[:, :, -1] += np.maximum(1.0 - trans.sum(axis=2), 0.0)
    # level 0 (nothing left, nothing arrived): the engine falls idle until the next arrival, whose
    # step starts with its one prompt
    one = np.clip(p / u, 1.0, levels - 1.0)
    one_lo = np.floor(one).astype(np.int64)
    gone = trans[:, :, 0].copy()
    rows = np.arange(r_)
    trans[:, :, 0] = 0.0
    trans[:, 0, :] = 0.0
    for col, share in ((one_lo, 1.0 - (one - one_lo)), (np.minimum(one_lo + 1, levels - 1), one - one_lo)):
        trans[rows, :, col] += gone * share[:, None]
        trans[rows, 0, col] += share
    lhs = np.swapaxes(trans, 1, 2) - np.eye(levels)[None]
    lhs[:, -1, :] = 1.0
    rhs = np.zeros((r_, levels, 1))
    rhs[:, -1, 0] = 1.0
    pm = np.clip(np.linalg.solve(lhs, rhs)[:, :, 0], 0.0, None)
    pm[:, 0] = 0.0
    pm = pm / pm.sum(axis=1, keepdims=True)
    busy = (pm * t).sum(axis=1)
    with np.errstate(divide="ignore"):
        idle_s = (pm * gone).sum(axis=1) / np.maximum(rate, 1e-300)
    total = busy + idle_s
    ptime = pm * t / total[:, None]
    ptime[:, -1] = 0.0                                   # beyond the levels kept: counted as a miss
    # an arrival's first token: the steps that process what its step leaves, the prompts ahead of
    # it and its own, at B per step; the last of them also takes later arrivals' tokens (the mean
    # of one step's arrivals) where the budget has room
    col3 = (slice(None), None, None)
    ahead = (left * u[:, None])[:, :, None] + p * (np.arange(n_a)[None, None, :] + 1.0)
    n_full = np.maximum(np.ceil(ahead / bud[col3]) - 1.0, 0.0)
    rest = ahead - n_full * bud[col3]
    extra = p * rate[col3] * t[:, :, None]
    own = n_full * t_b[col3] + _prefill_step(c[col3], k[col3], m[col3], f[col3], np.minimum(bud[col3], rest + extra))
    n_idle = np.maximum(np.ceil(p / bud) - 1.0, 0.0)
    first = _prefill_step(c, k, m, f, np.minimum(bud, p))
    own_idle = n_idle * t_b + _prefill_step(c, k, m, f, np.minimum(bud, p - n_idle * bud + p * rate * first))
    stable = rate < prefill_saturation(s, w)
    delay = np.zeros(r_) if s.delay is None else s.delay
    # an arrival a share U into its step finds the prompts of that share ahead of it: Poisson(rate U T)
    mids = (np.arange(PREFILL_POSITIONS) + 0.5) / PREFILL_POSITIONS
    # (Poisson(m x) = Poisson(m) e^{m (1 - x)} x^k, no second exp over the counts, where e^-m
    # does not underflow)
    mean = rate[:, None, None] * t[:, :, None]
    if (mean < 500.0).all():
        before = [pa * np.exp(mean * (1.0 - x)) * x ** np.arange(n_a) for x in mids]
    else:
        before = [poisson_pmf(rate[:, None] * t * x, n_a) for x in mids]
    return PrefillCtx(own, t, ptime, before, idle_s / total, own_idle, stable, delay)


def prefill_cdf(ctx: PrefillCtx, t) -> np.ndarray:
    """P(TTFT <= t) per row: an arrival lands at a uniform point U of a step (time-weighted by
    level; U in K bins, each with the prompts that came before it, the rest of the step uniform
    within the bin) or finds the engine idle."""
    t = np.broadcast_to(np.asarray(t, dtype=float), ctx.idle.shape) - ctx.delay
    k = len(ctx.pa)
    busy = np.zeros(len(t))
    for j in range(k):
        # the rest of the step runs from (1 - (j + 1) / K) T to (1 - j / K) T within bin j
        with np.errstate(invalid="ignore"):
            frac = np.clip((t[:, None, None] - ctx.own - (1.0 - (j + 1.0) / k) * ctx.tm[:, :, None])
                           / (ctx.tm[:, :, None] / k), 0.0, 1.0)
        busy += (ctx.ptime[:, :, None] * ctx.pa[j] * frac).sum(axis=(1, 2)) / k
    out = ctx.idle * (ctx.own_idle <= t) + busy
    return np.where(ctx.stable, out, 0.0)


def prefill_quantile(ctx: PrefillCtx, p: float, iters: int = QUANTILE_ITERS) -> np.ndarray:
    """The p-quantile of a prefill pool's TTFT per row (inf where it is not reached within the
    context's horizon)."""
    hi = np.maximum(ctx.own_idle, ctx.tm.max(axis=1)) * 4.0 + ctx.delay
    return _quantile(lambda t: prefill_cdf(ctx, t), p, hi, ctx.stable, iters)


def prefill_capacity(s: Steps, w: Workload, ttft=None) -> np.ndarray:
    """The most prompts/s per row at which P(TTFT <= ttft) >= the TTFT percentile: the root of
    log((1 - p) / P(miss)) (falling with the rate) by _edge; 0 where even a lone prompt misses.
    No target: NO_TARGET_LOAD of saturation."""
    sat = prefill_saturation(s, w) * (1.0 - 1e-9)
    if ttft is None:
        return NO_TARGET_LOAD * sat
    allowed = 1.0 - w.ttft_p

    def g(rows, rate):
        miss = 1.0 - prefill_cdf(prefill_ctx(s.rows(rows), w, rate, ttft), ttft)
        return np.clip(np.log(allowed / np.maximum(miss, 1e-300)), -MARGIN_CLIP, MARGIN_CLIP)

    return _edge(g, _bracket(g, sat * 1e-6, sat.copy())).value()


def prefill_figures(s: Steps, w: Workload, load, horizon_s=None) -> Figures:
    """A prefill replica at `load` prompts/s: TTFT at the TTFT percentile (inf beyond horizon_s,
    the target: prefill_ctx); no decode (TPOT 0)."""
    load = np.broadcast_to(np.asarray(load, dtype=float), (len(s.slots),))
    ctx = prefill_ctx(s, w, load, horizon_s)
    ttft = prefill_quantile(ctx, w.ttft_p)
    zero = np.zeros(len(load))
    return Figures(ttft=ttft, tpot=zero, e2e=ttft, throughput=np.where(ctx.stable, load, 0.0),
                   utilization=np.where(ctx.stable, load / prefill_saturation(s, w), np.nan),
                   busy_slots=1.0 - ctx.idle, wait_share=zero)
