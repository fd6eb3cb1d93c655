"""Serving: the workload and one replica's configuration, the shared vectorized terms, and the
one-configuration evaluator that `gpuplan serve --gpu ...` and the serving planner's re-check use.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Literal
from statistics import NormalDist

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

from recommender import catalog
from recommender.errors import GpuplanError
from recommender.evaluate import Pricing, job_cost, link_rates, matmul_efficiency, pricing
from recommender.formulas import cost as costf
from recommender.formulas import performance
from recommender.formulas import queueing as qm
from recommender.formulas import serving as sv
from recommender.formulas.compute import _scalar
from recommender.formulas.memory import GIB
from recommender.spec import Accelerator, ModelSpec, Strict

HOURS_PER_DAY = 24.0
PERCENTILES = {"p50": 0.50, "p90": 0.90, "p95": 0.95, "p99": 0.99}
KV_BLOCK_TOKENS = 16   # vLLM's default KV block: a sequence wastes half a block on average


class ServeWorkload(Strict):
    """What is served: prompt and output lengths (means), demand, latency targets (at a
    percentile), the engine's scheduler limits, horizon."""

    model: ModelSpec
    prompt_tokens: int = Field(gt=0)
    output_tokens: int = Field(gt=0)
    rate_rps: float | None = Field(None, gt=0)       # open loop: Poisson requests/s; None = offline
    users: int | None = Field(None, gt=0)            # closed loop: users who think between requests
    think_time_s: float = Field(0.0, ge=0)
    ttft_s: float | None = Field(None, gt=0)
    tpot_s: float | None = Field(None, gt=0)
    e2e_s: float | None = Field(None, gt=0)
    percentile: float = Field(0.99, gt=0, lt=1)
    length_dist: str = "exponential"                 # output lengths: exponential (geometric) or fixed
    token_budget: int | None = Field(None, ge=16)    # max_num_batched_tokens; None: the engine default
    max_seqs: int | None = Field(None, ge=1)         # max_num_seqs cap; None: the engine default
    # the KV the engine holds for a running request: "paged" (vLLM: the tokens so far, preempting on
    # overflow) or "full" (TensorRT-LLM's default GUARANTEED_NO_EVICT capacity scheduler: a request
    # is admitted only when its prompt + output's KV can be reserved, so none is ever evicted)
    kv_reserve: Literal["paged", "full"] = "paged"
    horizon_days: float = Field(365.0, gt=0)
    # prefix caching (vLLM automatic prefix caching, on by default in V1): the first prefix_tokens of
    # a prompt are shared (a system prompt), and prefix_hit of requests find them in the cache
    prefix_tokens: int = Field(0, ge=0)
    prefix_hit: float = Field(0.0, ge=0, le=1)
    # speculative decoding (vLLM's speculative_config): a draft proposes draft_tokens tokens per
    # step, the target verifies them in one pass, each accepted with probability draft_accept.
    # draft: a catalog model sharing the target's tokenizer, "eagle" (an EAGLE head: one decoder
    # layer of the target's width on its hidden states, the target's LM head), or "ngram"
    # (prompt lookup, no draft model). The planner then prices every replica with and without it.
    draft: str | None = None
    draft_tokens: int = Field(4, ge=1, le=16)
    draft_accept: float | tuple[float, ...] | None = None   # one rate, or one per drafted position
    # disaggregated prefill/decode (role_workload): what this workload's replicas do. "both":
    # the usual engine; "prefill": prompts only (output_tokens 1: the first token, then the KV cache
    # leaves for a decode replica); "decode": requests whose prompt KV arrives by transfer, so no
    # prefill compute, the first token from the first decode step. ttft_percentile: the TTFT's own
    # percentile where it differs from TPOT's (each pool's share of the fleet's TTFT)
    role: Literal["both", "prefill", "decode"] = "both"
    ttft_percentile: float | None = Field(None, gt=0, lt=1)

    @model_validator(mode="after")
    def _speculative(self) -> "ServeWorkload":
        if self.draft is None:
            if self.draft_accept is not None:
                raise GpuplanError("draft-accept", self.draft_accept, "give the draft too (--draft MODEL|eagle|ngram)")
            return self
        if self.draft_accept is None:
            raise GpuplanError("draft", self.draft, "give the draft's acceptance rate per token (--draft-accept 0.7): "
                               "it depends on the draft and on your traffic, and no default would be honest")
        rates = self.draft_accept if isinstance(self.draft_accept, tuple) else (self.draft_accept,)
        if not all(0 < a < 1 for a in rates):
            raise GpuplanError("draft-accept", accept_text(self.draft_accept),
                               "each rate must be a share strictly between 0 and 1, e.g. 0.7")
        if isinstance(self.draft_accept, tuple) and len(rates) != self.draft_tokens:
            raise GpuplanError("draft-accept", accept_text(self.draft_accept),
                               f"give one rate per drafted position ({len(rates)} rates for {self.draft_tokens} "
                               "drafted tokens), or a single rate")
        d = self.draft_model()
        if d is not None and d.vocab != self.model.vocab:
            raise GpuplanError("draft", self.draft, f"its vocabulary ({d.vocab:,} tokens) is not the target's "
                               f"({self.model.vocab:,}): a draft must share the target's tokenizer")
        return self

    def draft_model(self) -> ModelSpec | None:
        """The draft's architecture: a catalog model, an EAGLE head (one dense decoder layer of the
        target, with the target's embedding and LM head), or None for n-gram lookup."""
        if self.draft in (None, "ngram"):
            return None
        if self.draft == "eagle":
            m = self.model
            return m.model_copy(update={"id": f"{m.id}-eagle", "name": f"EAGLE head of {m.name}", "layers": 1,
                                        "experts": 0, "experts_per_token": 0, "shared_experts": 0, "moe_ffn": None,
                                        "dense_layers": 0})
        return catalog.model(self.draft)

    @property
    def tokens_per_step(self) -> float:
        """Tokens a sequence gains per speculative step (formulas.serving.spec_tokens_per_step)."""
        return float(sv.spec_tokens_per_step(self.draft_accept, self.draft_tokens)) if self.draft else 1.0

    @model_validator(mode="after")
    def _demand(self) -> "ServeWorkload":
        if self.rate_rps is not None and self.users is not None:
            raise GpuplanError("rate", self.rate_rps, "give either --rate or --users, not both")
        if self.length_dist not in qm.LENGTH_DISTS:
            raise GpuplanError("length-dist", self.length_dist, f"must be one of {', '.join(qm.LENGTH_DISTS)}")
        if self.prefix_tokens >= self.prompt_tokens:
            raise GpuplanError("prefix-tokens", self.prefix_tokens, f"the shared prefix must be shorter than the "
                               f"{self.prompt_tokens}-token prompt")
        if self.prefix_hit > 0 and not self.prefix_tokens:
            raise GpuplanError("prefix-hit", self.prefix_hit, "give the shared prefix's length too (--prefix-tokens)")
        return self

    @property
    def cached_tokens(self) -> float:
        """Prompt tokens per request, on average, served from the prefix cache: neither computed in
        prefill nor held as a copy of their own (vLLM APC: cached blocks are shared, by reference)."""
        return self.prefix_hit * self.prefix_tokens

    @property
    def prefill_tokens(self) -> float:
        """Prompt tokens a request's prefill computes, on average: the prompt less its cached prefix."""
        return self.prompt_tokens - self.cached_tokens

    @property
    def queue_prompt_tokens(self) -> float:
        """The prompt length the queue model runs on. It treats prompts as one length; with a partial
        hit rate they are a mixture (P - prefix or P), whose work per step varies more than the mean's.
        The length E[X^2] / E[X] matches the mixture's work variance per arrival and overstates its
        mean (conservative): with 90% hits of a 1,500-token prefix on 2,000-token prompts the mean is
        650 and this 962; the mean alone let a planned fleet miss p99 TPOT by 6% in the step-by-step
        simulation (tests/test_serving_des.py) before serving took training's compute rule."""
        if not 0 < self.prefix_hit < 1:
            return self.prefill_tokens
        hit, miss = self.prompt_tokens - self.prefix_tokens, self.prompt_tokens
        second = self.prefix_hit * hit ** 2 + (1 - self.prefix_hit) * miss ** 2
        return second / self.prefill_tokens

    @property
    def closed(self) -> bool:
        return self.users is not None

    @property
    def demand(self) -> float | None:
        """What the fleet must cover: users (closed loop) or requests/s (open loop)."""
        return float(self.users) if self.closed else self.rate_rps

    @property
    def context(self) -> int:
        """Tokens a sequence of mean length holds in the KV cache at its end."""
        return self.prompt_tokens + self.output_tokens

    @property
    def queue(self) -> qm.Workload:
        # a decode replica's request enters with its prompt's KV resident: one token's step room
        prompt = 1.0 if self.role == "decode" else float(self.queue_prompt_tokens)
        return qm.Workload(prompt=prompt, output=float(self.output_tokens),
                           percentile=self.percentile, closed=self.closed, think_s=self.think_time_s,
                           length_dist=self.length_dist, draft_tokens=self.draft_tokens if self.draft else 0,
                           accept=self.draft_accept or 0.0, ttft_percentile=self.ttft_percentile)

    @property
    def mean_decode_context(self) -> float:
        """Context a decode step attends to, averaged over the running sequences: the prompt plus
        the tokens generated so far (queueing.Workload.mean_age)."""
        return self.prompt_tokens + self.queue.mean_age

    def resident_tokens(self, slots):
        """KV tokens per running sequence with paged KV (vLLM's PagedAttention): prompt + generated
        so far, plus half a block, plus the percentile's margin on the sum over the slots (a normal
        approximation: z sd / sqrt(slots) per sequence), so the cache overflows (and the engine
        preempts) at most (1 - p) of the time. With kv_reserve "full", prompt + output (TensorRT-LLM's
        GUARANTEED_NO_EVICT reservation) plus half a block. A cached prefix is held once per
        replica, not per sequence: its share of a sequence is prefix / slots."""
        q = self.queue
        z = NormalDist().inv_cdf(self.percentile)
        n = np.maximum(np.asarray(slots, dtype=float), 1.0)
        shared = self.prefix_tokens / n if self.prefix_hit > 0 else 0.0
        if self.kv_reserve == "full":   # every request's prompt + output reserved (the output at its
            # length, or at the percentile's for varying lengths: the longest answer planned for)
            return self.prefill_tokens + shared + q.output_quantile + KV_BLOCK_TOKENS / 2.0 + np.zeros_like(n)
        return (self.prefill_tokens + shared + q.mean_age + KV_BLOCK_TOKENS / 2.0 + z * q.age_sd / np.sqrt(n))


class ServeLayout(Strict):
    """One replica configuration (and optionally how many replicas and what batch)."""

    accelerator: str
    tp: int = Field(1, ge=1)
    pp: int = Field(1, ge=1)
    precision: str = "bf16"
    kv_precision: str = "bf16"
    batch: int | None = Field(None, ge=1)      # None: the largest meeting the targets
    replicas: int | None = Field(None, ge=1)   # None: enough for the demand (1 if offline)
    acquisition: str = "on_demand"
    provider: str | None = None
    speculative: bool = False                  # speculative decoding with the workload's draft

    @model_validator(mode="after")
    def _known(self) -> "ServeLayout":
        for f in ("precision", "kv_precision"):
            if getattr(self, f) not in sv.SERVE_PRECISIONS:
                raise GpuplanError(f.replace("_", "-"), getattr(self, f),
                                   f"must be one of {', '.join(sv.SERVE_PRECISIONS)}")
        return self

    @property
    def gpus_per_replica(self) -> int:
        return self.tp * self.pp


def bw(acc: Accelerator, span):
    """GB/s a GPU reaches inside a group of `span` GPUs (training's link rule, shared)."""
    intra, inter = link_rates(acc)
    return performance.link_bandwidth(span, acc.domain, intra or 0.0, inter or 0.0) / sv.GB


# disaggregated prefill/decode: the decode pool's first token (the hand-off, a wait for a slot, the
# rest of a step and its own) may take DECODE_STEPS x the TPOT target (without one, DECODE_SHARES
# of the TTFT target), at most half the TTFT target; the prefill pool has the rest. The solver
# picks one split per fleet.
DECODE_STEPS = (3.0, 6.0)
DECODE_SHARES = (0.1, 0.25)


def decode_budgets(w: ServeWorkload) -> tuple[float, ...]:
    """The splits of the TTFT target offered to a disaggregated fleet: the decode pool's share (s)."""
    if w.ttft_s is None:
        return ()
    raw = [k * w.tpot_s for k in DECODE_STEPS] if w.tpot_s is not None else [f * w.ttft_s for f in DECODE_SHARES]
    return tuple(sorted({min(b, 0.5 * w.ttft_s) for b in raw}))


def kv_transfer_s(w: ServeWorkload, acc: Accelerator) -> float | None:
    """Seconds one prompt's KV cache (16-bit: an 8-bit cache takes half) takes over one GPU's
    published inter-node link of `acc` (a replica's TP shards travel on their own NICs in
    parallel: one GPU's is the slow case); None where no network figure is published."""
    bw = acc.inter_node_bw_gb_s
    if not bw:
        return None
    return float(sv.kv_transfer_time(w.model, w.prompt_tokens, 2.0, bw, catalog.assumption("comm_efficiency")))


def role_workload(w: ServeWorkload, role: str, level: int) -> ServeWorkload:
    """What one pool of a disaggregated fleet must do at split `level`: the decode pool's share of
    the TTFT target is decode_budgets(w)[level], the prefill pool's the rest (no TTFT target: none).
    The fleet's TTFT is the prefill pool's TTFT, the KV hand-off, then the decode pool's wait for a
    slot and first step: each pool holds its share at 1 - (1 - p) / 2 (by the union bound the sum
    then holds at p, whatever their dependence), its TTFT counting the hand-off at its own link
    (replica_steps' Steps.delay: the pair's transfer, at the slower of the two links, is at most the
    sum). TPOT is the decode pool's at p. Only parts with an RDMA-class link take a role
    (serve_planner._replica_types, disagg_min_link_gb_s)."""
    budgets = decode_budgets(w)
    ttft = None if not budgets else (budgets[level] if role == "decode" else w.ttft_s - budgets[level])
    p2 = 1.0 - (1.0 - w.percentile) / 2.0
    common = dict(role=role, ttft_s=ttft, e2e_s=None, draft=None, draft_accept=None)
    if role == "prefill":
        return w.model_copy(update=common | dict(output_tokens=1, length_dist="fixed", tpot_s=None, percentile=p2))
    return w.model_copy(update=common | dict(ttft_percentile=p2))


def accept_text(accept) -> str:
    """Acceptance as the user wrote it: 0.7, or 0.8,0.7,0.6 per drafted position."""
    return ",".join(f"{a:g}" for a in accept) if isinstance(accept, tuple) else f"{accept:g}"


def engine_limits(w: ServeWorkload, acc: Accelerator) -> tuple[int, int]:
    """(max_num_seqs, max_num_batched_tokens): the workload's, else vLLM V1's OpenAI-server
    defaults (vllm/engine/arg_utils.py, EngineArgs.get_batch_defaults: 1024 and 8192 on GPUs of at
    least 70 GiB other than A100, else 256 and 2048)."""
    a = catalog.assumption
    big = acc.memory_gib is not None and acc.memory_gib >= 70 and not acc.id.startswith("a100")
    seqs = int(a("engine_max_seqs_large" if big else "engine_max_seqs"))
    budget = int(a("engine_token_budget_large" if big else "engine_token_budget"))
    return (w.max_seqs or seqs), (w.token_budget or budget)


def replica_memory(w: ServeWorkload, acc: Accelerator, precision: str, kv_precision: str, tp, pp, slots,
                   spec: bool = False):
    """Bytes per GPU with `slots` sequences resident: weights, paged KV for the tokens actually
    held (ServeWorkload.resident_tokens), one step's activations over the token budget, overhead.
    spec: with speculative decoding, also the draft's weights and KV cache (at the target's
    precisions, split over the same TP) and the target's KV for the k drafted tokens of each
    sequence; a step's activations and logits span the k + 1 tokens each sequence verifies."""
    a = catalog.assumption
    budget = engine_limits(w, acc)[1]
    slots = np.asarray(slots)
    resident = w.resident_tokens(slots)
    extra_w = extra_kv = 0.0
    step = np.maximum(budget, slots)
    if spec:
        k, kvb = w.draft_tokens, sv.KV_BYTES[kv_precision]
        d = w.draft_model()
        extra_kv = slots * k * w.model.kv_bytes_per_token(kvb) / np.asarray(pp) / np.asarray(sv.kv_shards(w.model, tp))
        if d is not None:
            extra_w = (sv.block_params(d) * sv.WEIGHT_BYTES[precision] / np.asarray(tp) if w.draft == "eagle"
                       else np.asarray(sv.weight_bytes(d, precision, tp, 1)))
            extra_kv = extra_kv + slots * resident * d.kv_bytes_per_token(kvb) / np.asarray(sv.kv_shards(d, tp))
        step = np.maximum(budget, slots * (k + 1))
    return sv.serve_memory(w.model, precision, kv_precision, slots, resident, tp, pp,
                           a("framework_overhead_gib"), a("allocator_fragmentation"),
                           step_tokens=step, extra_weights=extra_w, extra_kv=extra_kv,
                           sampled=slots * (w.draft_tokens + 1) if spec else None)


SLOT_GRID = 8192   # slot_cap(): up to this many slots, every count is tried at once


def slot_cap(w: ServeWorkload, acc: Accelerator, precision: str, kv_precision: str, tp, pp, headroom: float,
             spec: bool = False):
    """The most sequences a replica may run at once: the largest whose paged KV cache fits (exact:
    every count tried, or bisection on the monotone memory beyond SLOT_GRID), at most max_num_seqs, and at most what the token budget
    holds with the prompts of the sequences that replace finishing ones, B (d + E P / O) <= budget
    (d budget tokens per running sequence and E tokens gained per step: 1 and 1, or k + 1 and
    spec_tokens_per_step with speculative decoding). 0: not even the weights fit."""
    tp, pp = np.broadcast_arrays(np.atleast_1d(tp), np.atleast_1d(pp))
    seqs, budget = engine_limits(w, acc)
    limit = acc.memory_gib * GIB * (1.0 - headroom)
    def fits(t, p, n):
        return np.asarray(replica_memory(w, acc, precision, kv_precision, t, p, n, spec).total) <= limit

    if seqs <= SLOT_GRID:
        # every slot count at once (rows x 1..max_num_seqs): the fitting ones are a prefix, as the
        # memory grows with the slots
        ok = fits(tp[:, None], pp[:, None], np.arange(1, seqs + 1)[None, :])
        lo = np.broadcast_to(ok, (len(tp), seqs)).sum(axis=1).astype(np.int64)
    else:                        # a huge --max-seqs: bisection
        lo = np.zeros(tp.shape, dtype=np.int64)
        hi = np.full(tp.shape, seqs, dtype=np.int64)
        while np.any(lo < hi):
            mid = (lo + hi + 1) // 2
            ok = fits(tp, pp, mid)
            lo = np.where(ok & (lo < hi), mid, lo)
            hi = np.where(~ok & (lo < hi), mid - 1, hi)
    if w.role == "prefill":      # no decodes share the budget: the KV cache and max_num_seqs bound it
        return lo
    d, e = (w.draft_tokens + 1, w.tokens_per_step) if spec else (1, 1)
    prompt = 1 if w.role == "decode" else w.queue_prompt_tokens
    prefill_bound = max(int(budget * w.output_tokens // (d * w.output_tokens + e * prompt)), 1)
    return np.minimum(lo, prefill_bound)


def _hardware(acc: Accelerator, precision: str, tp, pp, efficiency: float) -> tuple[dict, dict, dict]:
    """The roofline's terms for a replica of (tp, pp): peak, efficiencies and links (hw),
    communication (comm), attention's own peak and efficiency (att). The compute rule is
    training's (evaluate.matmul_efficiency): GEMMs at the calibrated matmul efficiency, scaled for
    FP8 by the measured FP8/BF16 ratio; attention's math at its own fitted share of that
    efficiency, of the 16-bit peak (FlashAttention-style kernels)."""
    a = catalog.assumption
    peak = acc.peak_tflops(sv.MATH[precision])
    comm = dict(comm_efficiency=a("comm_efficiency"), allreduce_latency_s=a("allreduce_latency_us") * 1e-6)
    att = dict(attention_tflops=acc.peak_tflops("bf16") or acc.peak_tflops("fp16") or peak,
               attention_efficiency=efficiency * a("attention_efficiency_ratio"))
    hw = dict(peak_tflops=peak, efficiency=matmul_efficiency(efficiency, precision), memory_bw_gb_s=acc.memory_bw_gb_s,
              bw_efficiency=a("memory_bw_efficiency"), tp_bw_gb_s=np.maximum(bw(acc, tp), 1e-9),
              pp_bw_gb_s=np.maximum(bw(acc, np.asarray(tp) * np.asarray(pp)), 1e-9))
    return hw, comm, att


def decode_terms(w: ServeWorkload, acc: Accelerator, precision: str, kv_precision: str, n, tp, pp,
                 efficiency: float, spec: bool = False) -> sv.PassTime:
    """One decode step of one stage at n running sequences (a speculative step verifies k + 1
    tokens of each), on this replica's hardware terms (_hardware)."""
    hw, comm, att = _hardware(acc, precision, tp, pp, efficiency)
    k = w.draft_tokens if spec else 0
    return sv.decode_stage_time(w.model, precision, kv_precision, n, w.mean_decode_context, tp, pp, **hw, **comm,
                                layer_overhead_s=catalog.assumption("decode_layer_overhead_us") * 1e-6,
                                tokens_per_seq=k + 1, **att)


def replica_steps(w: ServeWorkload, acc: Accelerator, precision: str, kv_precision: str, tp, pp, slots,
                  efficiency: float, width: int | None = None, spec: bool = False,
                  per_token_steps: bool = True) -> qm.Steps:
    """The queue model's step terms for rows (tp, pp, slots): decode compute / memory / fixed
    seconds at n = 0..width-1 running sequences (a replica step is PP stage steps), and seconds of
    replica time per prompt token (its prefill compute and communication, spread over the stages).

    spec (speculative decoding, PP 1): an engine step is k draft decode steps (in `fixed`: the
    draft's own roofline, at the target's TP) then one target pass verifying k + 1 tokens per
    sequence (compute and communication for n (k + 1) tokens, the KV read once); the draft's
    prefill adds to the prompt's cost per token. A step yields E = spec_tokens_per_step tokens
    per sequence on average, so the queue model, which counts one token per step, runs on
    per-token steps (per_token_steps): compute, memory and fixed over E, the token budget over
    E, and each running sequence taking (k + 1) / E of it (decode_tokens); the prompt's seconds
    per token and the tokens/s the room admits are unchanged. per_token_steps=False: the
    engine's own steps (the simulation's terms)."""
    a = catalog.assumption
    m = w.model
    tp, pp, slots = (np.atleast_1d(np.asarray(x)) for x in (tp, pp, slots))
    if width is None:
        width = int(slots.max()) + 1 + (qm.QUEUE_STATES if w.closed else 0)
    t2, p2 = tp[:, None], pp[:, None]
    hw, comm, att = _hardware(acc, precision, t2, p2, efficiency)
    n = np.maximum(np.arange(width), 1)[None, :].astype(float)
    overhead = a("decode_layer_overhead_us") * 1e-6
    k = w.draft_tokens if spec else 0
    dec = decode_terms(w, acc, precision, kv_precision, n, t2, p2, efficiency, spec)
    pre = sv.prefill_time(m, precision, w.prompt_tokens, t2, p2, **hw, **comm, **att)
    shape = (len(tp), width)
    full = lambda x: np.broadcast_to(np.asarray(x, dtype=float), shape).copy()  # noqa: E731
    per_token = (np.asarray(pre.compute) + np.asarray(pre.tp_comm) + np.asarray(pre.pp_comm)) / w.prompt_tokens / p2
    fixed = p2 * (np.asarray(dec.tp_comm) + dec.pp_comm + dec.overhead + dec.attention)
    draft = w.draft_model() if spec else None
    if draft is not None:
        hw1 = {**hw, "pp_bw_gb_s": hw["tp_bw_gb_s"]}
        dd = sv.decode_stage_time(draft, precision, kv_precision, n, w.mean_decode_context, t2, 1, **hw1, **comm,
                                  layer_overhead_s=overhead, **att)
        fixed = fixed + k * np.asarray(dd.total)
        dp = sv.prefill_time(draft, precision, w.prompt_tokens, t2, 1, **hw1, **comm, **att)
        per_token = per_token + (np.asarray(dp.compute) + np.asarray(dp.tp_comm)) / w.prompt_tokens
    budget = np.full(len(tp), float(engine_limits(w, acc)[1]))
    compute, memory, fixed = full(p2 * dec.compute), full(p2 * dec.memory), full(fixed)
    per_token = np.broadcast_to(per_token, (len(tp), 1))[:, 0].astype(float)
    delay = None
    if w.role == "prefill":      # nothing decodes: every step is the one-sequence step plus its chunk
        compute, memory, fixed = (np.repeat(x[:, 1:2], width, axis=1) for x in (compute, memory, fixed))
    elif w.role == "decode":     # the prompt's KV arrives by transfer: no prefill compute here
        per_token = np.zeros(len(tp))
    if w.role != "both":         # each pool charges the KV hand-off at its own link (role_workload)
        delay = np.full(len(tp), kv_transfer_s(w, acc))
    if not spec:
        return qm.Steps(compute=compute, memory=memory, fixed=fixed, per_token=per_token,
                        slots=slots.astype(np.int64), budget=budget, delay=delay)
    e = w.tokens_per_step if per_token_steps else 1.0
    return qm.Steps(compute=compute / e, memory=memory / e, fixed=fixed / e, per_token=per_token,
                    slots=slots.astype(np.int64), budget=budget / e,
                    decode_tokens=np.full(len(tp), (k + 1) / e))


def stack_steps(parts: list[qm.Steps]) -> qm.Steps:
    """Rows of several accelerators in one Steps, padded to the widest (edge values repeated)."""
    width = max(p.compute.shape[1] for p in parts)
    pad = lambda x: np.pad(x, ((0, 0), (0, width - x.shape[1])), mode="edge")  # noqa: E731
    return qm.Steps(compute=np.concatenate([pad(p.compute) for p in parts]),
                    memory=np.concatenate([pad(p.memory) for p in parts]),
                    fixed=np.concatenate([pad(p.fixed) for p in parts]),
                    per_token=np.concatenate([p.per_token for p in parts]),
                    slots=np.concatenate([p.slots for p in parts]),
                    budget=np.concatenate([p.budget for p in parts]),
                    decode_tokens=(None if all(p.decode_tokens is None for p in parts) else
                                   np.concatenate([p.per_seq for p in parts])),
                    delay=(None if all(p.delay is None for p in parts) else
                           np.concatenate([np.zeros(len(p.slots)) if p.delay is None else p.delay for p in parts])))


TARGETS = (("ttft", "ttft_s"), ("tpot", "tpot_s"), ("e2e", "e2e_s"))


def light_load(w: ServeWorkload, s: qm.Steps) -> np.ndarray:
    """A load small enough that queueing is negligible: the best latencies a replica reaches."""
    if w.role == "prefill":
        return qm.prefill_saturation(s, w.queue) * 1e-6
    return qm.light_load(s, w.queue)


def figures(w: ServeWorkload, s: qm.Steps, load) -> qm.Figures:
    """The latency percentiles and throughput of rows s at `load` (a prefill pool's own model)."""
    if w.role == "prefill":
        return qm.prefill_figures(s, w.queue, load, w.ttft_s)
    return qm.figures(s, w.queue, load)


def targets_met(w: ServeWorkload, s: qm.Steps, load) -> dict[str, np.ndarray]:
    """Per target given: does each row meet it at `load` (at the percentile)?"""
    if w.role == "prefill":
        q = w.queue
        ok = (qm.prefill_cdf(qm.prefill_ctx(s, q, load, w.ttft_s), w.ttft_s) >= q.ttft_p
              if w.ttft_s is not None else None)
        return {} if ok is None else {"ttft": ok}
    return {name: m >= -1e-9 for name, m in target_margins(w, s, load).items()}


def target_margins(w: ServeWorkload, s: qm.Steps, load) -> dict[str, np.ndarray]:
    """Per target given: each row's margin at `load` (queueing.margin; >= 0: met), not for a
    prefill pool (its own model)."""
    st = qm.chain(s, w.queue, load)
    return {name: qm.margin(s, w.queue, st, **{name: getattr(w, f)})
            for name, f in TARGETS if getattr(w, f) is not None}


def capacities(w: ServeWorkload, s: qm.Steps, kinds: np.ndarray | None = None
               ) -> tuple[np.ndarray, dict[str, np.ndarray], np.ndarray]:
    """Each row's capacity (users or requests/s per replica) under the targets it can meet at all
    (a row that misses one even at light load is sized by the others and marked as missing it),
    less serve_capacity_margin of it, which targets each row can meet, and its edge (the
    capacity before the margin, which edge_holds() confirms)."""
    edge, light = _edges(w, s, kinds)
    return _kept(w, edge), light, edge


def _joint_margin(margins: dict[str, np.ndarray], met: dict, n: int) -> np.ndarray:
    """The least margin of the targets that size a row (those it meets at light load; met: per
    target, per row or one for all rows) over n rows: +inf where none does."""
    joint = np.full(n, np.inf)
    for name, m in margins.items():
        joint = np.where(met[name], np.minimum(joint, m), joint)
    return joint


def _edges(w: ServeWorkload, s: qm.Steps, kinds: np.ndarray | None = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """capacities() before the margin: the most load at which each row's targets hold (with
    kinds, best_slots()'s replica types: exact only on the rows that may be their type's pick;
    the others' at most 2% low, never enough to be picked; in a closed loop the caps that
    _slot_twins settles get the edge of the cap that settled them, which is exact)."""
    if w.role == "prefill":      # its own model (queueing.prefill_capacity)
        light = targets_met(w, s, light_load(w, s))
        cap = qm.prefill_capacity(s, w.queue, w.ttft_s)
        return (np.where(light["ttft"], cap, 0.0) if light else cap), light
    if w.role == "decode" and w.ttft_s is not None and w.tpot_s is not None:
        # each margin falls with the load, so the joint edge is the lesser of the two: TPOT's (the
        # costly law, the same for every split of the TTFT target) first, remembered across splits;
        # then TTFT's edge only on the rows that miss TTFT there
        # (a decode row that misses TPOT even at light load cannot be a decode pool's: capacity 0)
        cap, light = _decode_tpot_edges(w.model_copy(update=dict(ttft_s=None)), s)
        cap = np.where(light["tpot"], cap, 0.0)
        ttft_only = w.model_copy(update=dict(tpot_s=None))
        light = light | targets_met(ttft_only, s, light_load(w, s))
        at_cap = targets_met(ttft_only, s, np.where(cap > 0, cap, light_load(w, s)))["ttft"]
        redo = np.flatnonzero(~at_cap & light["ttft"] & light["tpot"])
        if len(redo):
            cap[redo] = np.minimum(cap[redo], _edges(ttft_only, s.rows(redo))[0])
        return cap, light
    from concurrent.futures import ThreadPoolExecutor

    n_rows = len(s.slots)
    # closed loop: a replica type's slot caps share their margins up to the fewest of them (below,
    # _slot_twins), so the light-load margins come from each type's row with the fewest slots
    shared = kinds is not None and w.closed
    if shared:
        groups = [rows[np.argsort(s.slots[rows], kind="stable")] for rows in _groups(kinds)]
        kind_of = np.empty(n_rows, dtype=np.int64)
        for k, rows in enumerate(groups):
            kind_of[rows] = k
        reps = np.array([rows[0] for rows in groups], dtype=np.int64)
    else:
        reps = np.arange(n_rows)
    halves = [h for h in (reps[: len(reps) // 2], reps[len(reps) // 2:]) if len(h)]
    with ThreadPoolExecutor(max_workers=2) as pool:   # independent rows on two threads, as below
        parts = list(pool.map(lambda rows: target_margins(w, s.rows(rows), light_load(w, s.rows(rows))), halves))
    at_light = {name: np.concatenate([p[name] for p in parts]) for name in parts[0]} if parts else {}
    if shared:
        at_light = {name: m[kind_of] for name, m in at_light.items()}
    light = {name: m >= -1e-9 for name, m in at_light.items()}
    names = list(light)
    keys = np.zeros(len(s.slots), dtype=np.int64)
    for j, name in enumerate(names):
        keys |= light[name].astype(np.int64) << j
    # rows grouped by the targets they can meet and by the size of their state space (padding
    # small replicas to the largest's states would cost more than it saves)
    keys = keys * 64 + np.ceil(np.log2(s.slots + 1.0)).astype(np.int64)
    # a search starts from the joint margin at light load (capacity()'s lower end): the least of
    # the targets' a row can meet there (none: no search)
    joint = _joint_margin(at_light, light, n_rows)
    found = qm.Bracket.exact(np.zeros(len(s.slots)), 1.0 if w.closed else 0.0)   # each row's search so far

    def group(key, idx):
        rows = idx[keys[idx] == key]
        width = int(s.slots[rows].max()) + 1 + (qm.QUEUE_STATES if w.closed else 0)
        kw = {name: getattr(w, f"{name}_s") for j, name in enumerate(names) if key >> 6 >> j & 1}
        return rows, s.rows(rows, width), kw

    def search(key, idx, tol, resume):
        rows, sr, kw = group(key, idx)
        at_lo = joint[rows] if kw and not resume else None
        return rows, qm.capacity(sr, w.queue, at_lo=at_lo, tol=tol, bracket=True,
                                 start=found.rows(rows) if resume else None, **kw)

    def run(idx, tol, resume=False):
        # the groups are independent and their numpy work releases the GIL: two threads (the
        # budget's 2-core machine) cut the README serve query's table from 4.2 to 3.2 s, same answer
        with ThreadPoolExecutor(max_workers=2) as pool:
            for rows, br in pool.map(lambda k: search(k, idx, tol, resume), np.unique(keys[idx])):
                found.put(rows, br)

    def margins_at(idx, x):
        """The joint margin of rows idx at loads x, as the searches see it (the same groups)."""
        out = np.empty(len(idx))

        def one(key):
            sel = keys[idx] == key
            _, sr, kw = group(key, idx)
            return sel, qm.margin(sr, w.queue, qm.chain(sr, w.queue, x[sel]), **kw)

        with ThreadPoolExecutor(max_workers=2) as pool:
            for sel, m in pool.map(one, np.unique(keys[idx])):
                out[sel] = m
        return out

    every = np.arange(len(s.slots))
    if kinds is None:
        run(every, qm.CAPACITY_TOL)
        return found.value(), light
    twin_of = np.arange(n_rows)
    if shared:
        targeted = (keys >> 6) > 0
        twin_of = _slot_twins(w, s, groups, targeted, joint, found, margins_at)
    alive = np.flatnonzero(twin_of == every)
    # a coarse search first; then the full one only on the rows that may still be their
    # kind's pick (best_slots: no other row's capacity surely above theirs after the margin)
    run(alive, COARSE_TOL, resume=shared)
    met = _met(light, len(every))
    low, most = _kept(w, found.value()), _kept(w, found.most())
    open_ = np.zeros(len(every), dtype=bool)
    for rows in _groups(kinds):
        open_[_contenders(w, np.intersect1d(rows, alive), met, low, most)] = True
    run(np.flatnonzero(open_), qm.CAPACITY_TOL, resume=True)
    return found.value()[twin_of], light


def _slot_twins(w: ServeWorkload, s: qm.Steps, groups, targeted, joint, found: qm.Bracket,
                margins_at) -> np.ndarray:
    """A closed loop's start for each replica type's slot caps b_1 < b_2 < ..., and the caps that
    need no search. With U users and U <= b, no user ever waits for a slot and the states above U
    are never reached, so every cap b >= U gives the same margin at U: the caps share their
    margins up to the fewest of them. So the margin at b_1 (one evaluation) settles the edge of
    every cap if it fails there: all have the edge of b_1, below b_1, and b_1 is the pick (the
    fewest slots of equal capacities); else each cap's edge is at least b_1, and b_2 is tried the
    same way on the others. Sets `found` (met at lo, missed at hi or unknown: then evaluated at
    capacity()'s top) for every searched row and returns, per row, the row whose edge it has
    (itself where it is searched). Rows with no target (their own capacity) are left to the search."""
    n = len(s.slots)
    twin_of = np.arange(n)
    hi, _ = qm.load_top(s, w.queue)
    lo, g_lo = light_load(w, s).astype(float), np.where(targeted, joint, 0.0)
    top, g_top = hi.astype(float), np.zeros(n)
    known = np.zeros(n, dtype=bool)            # the margin at `top` is known (a failing cap's)
    open_kinds = [rows[targeted[rows]] for rows in groups]
    rank = 0
    while open_kinds:
        open_kinds = [rows for rows in open_kinds if len(rows) > rank]
        cand = np.array([rows[rank] for rows in open_kinds], dtype=np.int64)
        if not len(cand):
            break
        b = s.slots[cand].astype(float)
        at_b = g_lo[cand].copy()                # b = lo: the margin is known
        ask = np.flatnonzero(b > lo[cand])
        if len(ask):
            at_b[ask] = margins_at(cand[ask], b[ask])
        still = []
        for rows, bi, gi in zip(open_kinds, b, at_b):
            if gi >= -1e-9:     # met at b: every cap from this one on reaches b
                lo[rows[rank:]], g_lo[rows[rank:]] = bi, gi
                still.append(rows)
            else:               # missed at b: the caps above it have its edge
                row = rows[rank]
                top[row], g_top[row], known[row] = bi, gi, True
                twin_of[rows[rank + 1:]] = row
        open_kinds = still
        rank += 1
    searched = np.flatnonzero(targeted & (twin_of == np.arange(n)))
    ask = searched[~known[searched]]
    if len(ask):
        g_top[ask] = margins_at(ask, top[ask])
    br = qm.Bracket(lo[searched], top[searched], g_lo[searched], g_top[searched], g_top[searched] >= -1e-9,
                    g_lo[searched] >= -1e-9, 1.0)
    found.put(searched, br)
    return twin_of


COARSE_TOL = 0.02   # _edges: the first search's width, before the rows that may be picked are refined


def _met(light: dict[str, np.ndarray], n: int) -> np.ndarray:
    """How many of the targets each row can meet."""
    return sum(v.astype(int) for v in light.values()) if light else np.zeros(n, dtype=int)


def _contenders(w: ServeWorkload, rows: np.ndarray, met, low, most) -> np.ndarray:
    """The rows of one replica type that may be its pick (best_slots): the most targets met, and a
    capacity that may reach the best's (at most `most`, at least `low`; equal within _tie)."""
    top = rows[met[rows] == met[rows].max()]
    return top[most[top] >= low[top].max() * (1.0 - _tie(w))]


def _tie(w: ServeWorkload) -> float:
    """Capacities this close (relative) count as equal when best_slots() picks a slot cap: twice
    the root search's precision in an open loop (each edge is found within it, below); a closed
    loop's are whole users, found exactly."""
    return 0.0 if w.closed else 2.0 * qm.CAPACITY_TOL


def _kept(w: ServeWorkload, cap: np.ndarray) -> np.ndarray:
    """capacities()'s capacity kept of an edge: less the model's margin (whole users in a closed loop)."""
    # the queue model's own error (benchmarks/serving_des.py): keep a margin of the edge free
    kept = cap * (1.0 - catalog.assumption("serve_capacity_margin"))
    return np.floor(kept + 1e-9) if w.closed else kept


_TPOT_EDGES: dict[str, tuple] = {}


def _decode_tpot_edges(w: ServeWorkload, s: qm.Steps):
    """_edges() of decode rows under their TPOT target alone, remembered for the last few
    (workload, rows): the splits of the TTFT target in one query share them."""
    import hashlib

    h = hashlib.sha1(w.model_dump_json().encode())
    for x in (s.compute, s.memory, s.fixed, s.per_token, s.slots, s.budget):
        h.update(np.ascontiguousarray(x).tobytes())
    key = h.hexdigest()
    if key not in _TPOT_EDGES:
        if len(_TPOT_EDGES) >= 8:
            _TPOT_EDGES.pop(next(iter(_TPOT_EDGES)))
        _TPOT_EDGES[key] = _edges(w, s)
    cap, light = _TPOT_EDGES[key]
    return cap.copy(), dict(light)


def best_slots(w: ServeWorkload, s: qm.Steps, types: np.ndarray):
    """For each replica type (rows sharing a `types` id, several slot caps each): the row with
    the most targets it can meet, then the most capacity (equal within the search's precision,
    _tie), then the fewest slots (the same rule
    for the planner's table and the one-configuration evaluator). Returns the rows kept, their
    capacities, the targets they can meet and their edges (capacities())."""
    groups = _groups(types)
    if w.demand is None:
        keep = np.array([rows[np.argmax(s.slots[rows])] for rows in groups])
        return keep, np.zeros(len(keep)), {}, np.zeros(len(keep))
    cap, light, edge = capacities(w, s, types)
    met = _met(light, len(cap))
    # the most targets, then the most capacity (ties within _tie), then the fewest slots
    keep = np.array([min(_contenders(w, rows, met, cap, cap), key=lambda i: (s.slots[i], -cap[i]))
                     for rows in groups])
    return keep, cap[keep], {k: v[keep] for k, v in light.items()}, edge[keep]


def edge_holds(w: ServeWorkload, s: qm.Steps, edge: float) -> bool:
    """Is `edge` the capacity search's edge of the one row s (_edges(), before the margin)? The
    targets that size it are those met at light load (none: the load capacity() gives a row
    with no target); they hold at the edge, and miss just above it: one user more in a closed
    loop, or the search's precision (qm.CAPACITY_TOL of the bracket's top) in an open one, or
    the edge is the search's top. Three loads in one evaluation, where a search takes several:
    the re-check of a plan confirms the table's edge rather than searching again (the margins
    fall with the load, as the search assumes). Not for a disaggregated pool (its own searches)."""
    if w.role != "both":
        raise ValueError("edge_holds: an aggregated replica's edge only")
    top, no_target = (float(v[0]) for v in qm.load_top(s, w.queue))
    light = float(light_load(w, s)[0])
    above = min(edge + 1.0 if w.closed else edge / (1.0 - qm.CAPACITY_TOL), top)
    m = target_margins(w, s.rows([0, 0, 0]), np.array([light, max(edge, light), above]))
    met = {name: bool(v[0] >= -1e-9) for name, v in m.items()}
    if not any(met.values()):
        return edge == no_target
    joint = _joint_margin(m, met, 3)
    return bool(joint[1] >= -1e-9 and (edge == top or (edge < top and joint[2] < -1e-9)))


def _groups(ids: np.ndarray) -> list[np.ndarray]:
    _, first, inverse = np.unique(ids, return_index=True, return_inverse=True)
    order = np.argsort(first)
    return [np.flatnonzero(inverse == k) for k in order]


def replica_cost_per_hour(price: Pricing | None, acc: Accelerator, gpus, horizon_days: float,
                          amortize: bool = False, owned: bool = False):
    """$/hour of one replica over the horizon: rental, or capex (whole, or its share of the useful
    life with --amortize) + energy + colocation spread over the horizon; owned GPUs cost energy and
    colocation only. NaN where a needed figure is unpublished."""
    gpus = np.asarray(gpus)
    total = job_cost(None if owned else price, acc, gpus, horizon_days, amortize=amortize,
                     owned=gpus if owned else 0)
    return _scalar(np.asarray(total.total, dtype=float) / (horizon_days * HOURS_PER_DAY))


def break_even_utilization(acc: Accelerator, horizon_days: float, amortize: bool = False) -> float | None:
    """The share of the horizon a GPU must be busy for buying it to cost less than renting it
    on demand only while busy: (buy cost per GPU over the horizon) / (on-demand $/h x hours).
    Above 1: renting is cheaper even at 100% use."""
    buy = pricing(acc, "buy")
    cloud = pricing(acc, "on_demand")
    if buy is None or cloud is None:
        return None
    total = job_cost(buy, acc, 1, horizon_days, amortize=amortize).total
    return float(total / (cloud.usd_per_gpu_hour * horizon_days * HOURS_PER_DAY))


class ServeMemoryGiB(BaseModel):
    weights: float
    kv_cache: float
    activations: float
    overhead: float


class ServeFigures(BaseModel):
    """What a serving plan and each of its parts report (the `serve --json` fields)."""

    model_config = ConfigDict(extra="forbid")

    accelerator: str
    count: int
    replicas: int
    tp: int
    pp: int
    precision: str
    kv_precision: str
    batch: int
    speculative: bool = False   # speculative decoding with the workload's draft (ServeWorkload.draft)
    ttft_ms: float
    tpot_ms: float
    e2e_ms: float
    tokens_per_s: float
    cost_per_hour_usd: float | None
    cost_per_million_tokens_usd: float | None
    acquisition: str
    provider: str | None
    memory_gib_per_gpu: float
    fits: bool
    break_even_utilization: float | None
    facility_power_kw: float | None
    percentile: float
    served_tokens_per_s: float
    utilization: float | None


class ServePart(ServeFigures):
    """One homogeneous group of replicas, fully evaluated. `batch` is the slot cap (the engine's
    max_num_seqs); latencies are at `percentile` under `load_per_replica` (users, or requests/s);
    tokens_per_s is the most the part serves within the targets, served_tokens_per_s what it
    serves at its load; utilization is that over the throughput with every slot busy."""

    tokens_per_s_per_replica: float
    requests_per_s: float
    load_per_replica: float | None
    capacity_per_replica: float | None
    load_unit: str
    queue_share: float
    token_budget: int
    price_usd_per_gpu_hour: float | None
    price_as_of: str | None = None
    price_as_of_kind: str | None = None
    price_source: str | None = None
    memory_capacity_gib: float
    memory_limit_gib: float
    memory_breakdown_gib: ServeMemoryGiB
    # disaggregated prefill/decode (role_workload): the part's pool, and the KV hand-off it charges
    # (its own link); its ttft_ms is its pool's share at its ttft_percentile
    role: str = "both"
    kv_transfer_ms: float | None = None
    ttft_percentile: float | None = None
    max_batch: int
    decode_bound: str
    decode_step_ms: float       # with every slot busy; per output token with speculative decoding
    tokens_per_step: float = 1.0   # tokens a sequence gains per engine step (speculative: E)
    prefill_ms: float
    efficiency: float
    efficiency_calibrated: bool
    meets_targets: bool
    missed_targets: list[str]


def check_serve_layout(w: ServeWorkload, layout: ServeLayout, acc: Accelerator) -> None:
    m = w.model
    if m.heads % layout.tp:
        raise GpuplanError("tp", layout.tp, f"must divide the {m.heads} attention heads of {m.id}")
    if layout.pp > m.layers:
        raise GpuplanError("pp", layout.pp, f"must be at most the {m.layers} layers of {m.id}")
    if acc.memory_gib is None or acc.memory_bw_gb_s is None:
        raise GpuplanError("gpu", acc.id, "no published memory capacity or bandwidth; cannot model serving")
    if layout.precision == "bf16" and acc.fp16_only:
        raise GpuplanError("precision", "bf16", f"{acc.id} has no bf16; use fp16")
    if acc.peak_tflops(sv.MATH[layout.precision]) is None:
        have = [p for p in sv.SERVE_PRECISIONS if acc.peak_tflops(sv.MATH[p]) and not (p == "bf16" and acc.fp16_only)]
        raise GpuplanError("precision", layout.precision, f"{acc.id} has no published {sv.MATH[layout.precision]} "
                           f"peak; use one of: {', '.join(have) or 'none'}")
    span = layout.tp * layout.pp
    if layout.tp > acc.domain:
        raise GpuplanError("tp", layout.tp, f"tensor parallelism stays inside the scale-up domain ({acc.domain} "
                           f"{acc.id})")
    problem = acc.span_problem(span)
    if problem:
        raise GpuplanError("pp" if layout.pp > 1 else "tp", layout.pp if layout.pp > 1 else layout.tp, problem)
    if layout.speculative:
        if w.draft is None:
            raise GpuplanError("speculative", True, "give the draft (--draft MODEL|eagle|ngram) and its --draft-accept")
        problem = spec_problem(w, layout.tp, layout.pp)
        if problem:
            raise GpuplanError("draft", w.draft, problem)


def spec_problem(w: ServeWorkload, tp: int, pp: int) -> str | None:
    """Why a replica cannot run speculative decoding with the workload's draft, or None."""
    if pp > 1:
        return "speculative decoding is modelled without a pipeline (PP 1)"
    d = w.draft_model()
    if d is not None and d.heads % tp:
        return f"the draft runs at the target's TP, which must divide its {d.heads} attention heads (TP {tp})"
    return None


def meets(value, target):
    """A latency meets its target (None: no target); elementwise."""
    return True if target is None else np.asarray(value) <= target * (1 + 1e-12)


def full_slot_curve(s: qm.Steps, w: ServeWorkload) -> np.ndarray:
    """(R, width) T_B for every slot cap B = 0..width-1 of each row (column 0 unused)."""
    b = np.arange(s.compute.shape[1])[None, :]
    return np.maximum(s.compute + s.per_token[:, None] * w.queue_prompt_tokens * b / w.output_tokens, s.memory) + s.fixed


def slot_candidates(w: ServeWorkload, curve: np.ndarray, cap: int) -> list[int]:
    """Slot caps worth pricing for one replica type: the largest that fits, and with a TPOT target
    the largest whose full-slot step meets it (e) and 1.5 e, since slots are rarely all busy at
    the percentile; without one, the largest that fits and half of it."""
    if cap < 1:
        return []
    if w.role == "prefill":      # a prefill replica's capacity does not depend on its slots
        return [cap]
    if w.tpot_s is not None:
        ok = np.flatnonzero(curve[1:cap + 1] <= w.tpot_s) + 1
        e = int(ok[-1]) if len(ok) else 1
        picks = {cap} | {min(cap, max(1, math.ceil(e * f))) for f in (1.0, 1.5)}
    else:
        picks = {cap, max(1, math.ceil(cap / 2))}
    return sorted(picks)


def saturated(s: qm.Steps, w: ServeWorkload) -> qm.Figures:
    """Every slot busy (offline, or a fixed concurrency of B back-to-back requests): TPOT = T_B,
    TTFT = the steps that carry the prompt's chunks (each a decode step plus its chunk)."""
    q = w.queue
    t_b = qm.full_slot_step(s, q)
    room = np.maximum(s.budget - s.per_seq * (s.slots - 1), 1)
    chunks = np.ceil(w.queue_prompt_tokens / room)
    rows = np.arange(len(s.slots))
    c, m, f = s.compute[rows, s.slots], s.memory[rows, s.slots], s.fixed[rows, s.slots]
    ttft = chunks * (np.maximum(c + s.per_token * w.queue_prompt_tokens / chunks, m) + f)   # the steps carrying its prompt
    one = np.ones(len(t_b))
    return qm.Figures(ttft=ttft, tpot=t_b, e2e=ttft + (q.output_quantile - 1) * t_b,
                      throughput=qm.saturation(s, q), utilization=one, busy_slots=s.slots.astype(float),
                      wait_share=0 * one)


def evaluate_serving(w: ServeWorkload, layout: ServeLayout, headroom: float | None = None, amortize: bool = False,
                     owned: int = 0, efficiency: float | None = None, load: float | None = None,
                     edge: float | None = None) -> ServePart:
    """Memory, latency percentiles, throughput and cost of `layout` serving `w`.

    batch (the slot cap) None: of the caps worth pricing (slot_candidates), the one with the most
    capacity within the targets (offline: the largest that fits, all slots busy). replicas None:
    enough for the demand (1 when there is none). load: users or requests/s each replica gets
    (default: the demand shared evenly). `owned` GPUs of this accelerator cost energy and
    colocation only (whole replicas). edge: an aggregated replica's edge as a search found it,
    with the slot cap given (the planner's re-check): confirmed by edge_holds() instead of
    searching again (searched where it does not hold).
    """
    acc = catalog.accelerator(layout.accelerator)
    check_serve_layout(w, layout, acc)
    a = catalog.assumption
    headroom = a("memory_headroom") if headroom is None else headroom
    eff = catalog.efficiency(acc.id)
    e = efficiency if efficiency is not None else (eff.matmul_efficiency if eff else 0.5)
    tp, pp, spec = layout.tp, layout.pp, layout.speculative
    bmax = int(slot_cap(w, acc, layout.precision, layout.kv_precision, tp, pp, headroom, spec)[0])
    demand = w.demand
    if layout.batch is not None:
        options = [layout.batch]
    else:
        curve = full_slot_curve(replica_steps(w, acc, layout.precision, layout.kv_precision, [tp], [pp],
                                              [max(bmax, 1)], e, spec=spec), w)[0]
        options = slot_candidates(w, curve, bmax) or [1]
        if demand is None:
            options = [max(options)]
    n = len(options)
    steps = replica_steps(w, acc, layout.precision, layout.kv_precision, [tp] * n, [pp] * n, options, e, spec=spec)
    if edge is not None and n == 1 and demand is not None and w.role == "both" and edge_holds(w, steps, edge):
        keep, caps = np.zeros(1, dtype=np.int64), _kept(w, np.array([float(edge)]))
    else:
        keep, caps, _, _ = best_slots(w, steps, np.zeros(n, dtype=np.int64))
    k = int(keep[0])
    batch = int(options[k])
    row = steps.rows([k])
    cap = None if demand is None else float(caps[0])
    mem = replica_memory(w, acc, layout.precision, layout.kv_precision, tp, pp, batch, spec)
    fits = bool(np.asarray(mem.total) <= acc.memory_gib * GIB * (1.0 - headroom))
    q = w.queue
    if demand is None:
        fig = saturated(row, w)
        replicas = layout.replicas or 1
        per_load = None
        missed = targets_missed_at(w, row, None)
        cap_fig = fig
    else:
        replicas = layout.replicas or (max(1, math.ceil(demand / cap - 1e-9)) if cap > 0 else 1)
        per_load = float(load) if load is not None else demand / replicas
        if w.closed and w.role != "prefill" and per_load > batch + qm.QUEUE_STATES:
            # more users than the states kept: all of them, so that a replica they overload shows
            # its slot queue's wait (a closed loop always settles), not an unbounded one
            extra = math.ceil(per_load) - batch + 1
            wide = replica_steps(w, acc, layout.precision, layout.kv_precision, [tp], [pp], [batch], e, spec=spec,
                                 width=batch + 1 + extra)
            fig = qm.figures(wide, dataclasses.replace(q, queue_states=extra), [per_load])
            cap_fig = figures(w, row, [cap]) if cap > 0 else fig
        elif cap > 0:       # the figures at the load and at the capacity: one call on two rows
            both = figures(w, row.rows([0, 0]), [per_load, cap])
            fig, cap_fig = both.rows([0]), both.rows([1])
        else:
            fig = cap_fig = figures(w, row, [per_load])
        missed = targets_missed_at(w, row, per_load)
    per_replica = float(cap_fig.throughput[0]) * w.output_tokens   # tokens/s within the targets
    served = float(fig.throughput[0]) * w.output_tokens * replicas
    gpus = replicas * layout.gpus_per_replica
    acq = layout.acquisition
    own = min(gpus, owned) // layout.gpus_per_replica * layout.gpus_per_replica
    price = (pricing(acc, acq, None if layout.provider is None else (layout.provider,), days=w.horizon_days)
             if acq != "owned" else None)
    if acq != "owned" and layout.provider is not None and price is None:
        raise GpuplanError("provider", layout.provider, f"no {acq} price for {acc.id} from this provider")
    cph = float(replica_cost_per_hour(price, acc, gpus - own, w.horizon_days, amortize)
                + replica_cost_per_hour(None, acc, own, w.horizon_days, owned=True))
    cph = None if math.isnan(cph) else cph
    capacity = per_replica * replicas
    power = None if acc.tdp_w is None else float(costf.facility_power_kw(gpus, acc.tdp_w, a("pue")))
    dec = decode_terms(w, acc, layout.precision, layout.kv_precision, batch, tp, pp, e, spec)
    bound = "memory" if dec.memory_bound else "compute"
    return ServePart(
        accelerator=acc.id, count=gpus, replicas=replicas, tp=layout.tp, pp=layout.pp,
        precision=layout.precision, kv_precision=layout.kv_precision, batch=batch, speculative=spec,
        ttft_ms=float(fig.ttft[0]) * 1e3, tpot_ms=float(fig.tpot[0]) * 1e3, e2e_ms=float(fig.e2e[0]) * 1e3,
        tokens_per_s=capacity, tokens_per_s_per_replica=per_replica, served_tokens_per_s=served,
        requests_per_s=served / w.output_tokens, percentile=w.percentile,
        utilization=None if not np.isfinite(fig.utilization[0]) else float(fig.utilization[0]),
        load_per_replica=per_load, capacity_per_replica=cap, load_unit="users" if w.closed else "requests/s",
        queue_share=float(fig.wait_share[0]), token_budget=engine_limits(w, acc)[1],
        cost_per_hour_usd=cph,
        cost_per_million_tokens_usd=None if cph is None or served <= 0 else cph / (served * 3600.0) * 1e6,
        acquisition="owned" if own == gpus and own else acq,
        provider=None if acq in ("buy", "owned") or price is None else price.provider,
        price_usd_per_gpu_hour=None if price is None else price.usd_per_gpu_hour,
        price_as_of=None if price is None else price.row.as_of.isoformat(),
        price_as_of_kind=None if price is None else getattr(price.row, "as_of_kind", "published"),
        price_source=None if price is None else price.row.source,
        memory_gib_per_gpu=float(mem.total) / GIB, memory_capacity_gib=acc.memory_gib,
        memory_limit_gib=acc.memory_gib * (1 - headroom),
        memory_breakdown_gib=ServeMemoryGiB(weights=float(mem.weights) / GIB, kv_cache=float(mem.kv_cache) / GIB,
                                            activations=float(mem.activations) / GIB,
                                            overhead=float(mem.overhead) / GIB),
        max_batch=bmax, fits=fits, decode_bound=bound, role=w.role,
        kv_transfer_ms=None if w.role == "both" else kv_transfer_s(w, acc) * 1e3,
        ttft_percentile=None if w.role == "both" else q.ttft_p,
        decode_step_ms=float(qm.full_slot_step(row, q)[0]) * 1e3,
        tokens_per_step=w.tokens_per_step if spec else 1.0,
        prefill_ms=float(row.per_token[0] * w.prefill_tokens) * 1e3,
        break_even_utilization=break_even_utilization(acc, w.horizon_days, amortize),
        facility_power_kw=power, efficiency=e, efficiency_calibrated=bool(eff and eff.calibrated),
        meets_targets=not missed and fits, missed_targets=missed,
    )


def targets_missed_at(w: ServeWorkload, s: qm.Steps, load: float | None) -> list[str]:
    """The targets one row misses at `load` (None: every slot busy, the saturated figures)."""
    if load is None:
        f = saturated(s, w)
        values = {"ttft": f.ttft[0], "tpot": f.tpot[0], "e2e": f.e2e[0]}
        return [name for name, fld in TARGETS if not meets(values[name], getattr(w, fld))]
    ok = targets_met(w, s, np.array([float(load)]))
    return [name for name, _ in TARGETS if name in ok and not bool(ok[name][0])]
