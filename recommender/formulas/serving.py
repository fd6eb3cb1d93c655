"""Serving one model replica: memory, decode step, prefill, and the latency/throughput they give.

A replica is TP x PP GPUs holding one copy of the weights and serving B sequences at once
(continuous batching). Sources:
- KV cache per token: 2 * layers * kv_heads * head_dim * bytes (Kwon et al. 2023, "Efficient
  Memory Management for Large Language Model Serving with PagedAttention", Sec. 2-3; Pope et al.
  2022, "Efficiently Scaling Transformer Inference", Sec. 2). Tensor parallelism splits KV heads
  (Megatron-LM attention split); with fewer KV heads than TP ranks each rank keeps one head, so
  the cache is split min(t, kv_heads) ways. MLA caches one latent per token, kept whole on
  every rank.
- Decode is a roofline (Williams et al. 2009; Pope et al. 2022 Sec. 3.1): each step reads the
  weights it touches and the batch's KV cache once from memory, and does 2 N_active + 4 L H Q c
  FLOPs per sequence (PaLM App. B forward FLOPs, attention over context c). Step time =
  max(compute, memory) + tensor-parallel all-reduces (2 per layer: Shoeybi et al. 2019, Sec. 3)
  + pipeline point-to-point sends.
- MoE: a batch of b tokens, each routed to k of E experts uniformly, touches on average
  E * (1 - (1 - k/E)^b) distinct experts per layer; only those are read. Compute uses the
  active parameters, memory holds all of them.
- Prefill of P prompt tokens: 2 N P + 2 L H Q P^2 FLOPs (causal attention: the average query sees
  P/2 keys), compute bound at any realistic P; weights are read once.
- Scheduling, queueing and the latency percentiles: recommender/formulas/queueing.py (continuous
  batching with chunked prefill, Yu et al. 2022 "Orca"; Agrawal et al. 2024 "Sarathi-Serve"; the
  vLLM V1 scheduler), built on the decode step and the prompt cost here.
Weight-only int4 (AWQ, Lin et al. 2023; GPTQ, Frantar et al. 2022) keeps 16-bit math and adds a
16-bit scale and zero point per group of 128 weights; int8 is W8A8 at the int8 peak (SmoothQuant,
Xiao et al. 2023); fp8 is W8A8 at the fp8 peak (as MLPerf Inference submissions run it).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.formulas.compute import _scalar
from recommender.formulas.memory import GIB, mlp_width

GB = 1e9
QUANT_GROUP = 128
# bytes per weight: int4 adds a 16-bit scale and a 16-bit zero point per group of 128 weights
WEIGHT_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0,
                "int4": 0.5 + 4.0 / QUANT_GROUP}
KV_BYTES = {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5}
# the peak the matmuls run at: weight-only int4 dequantizes to 16-bit math
MATH = {"fp32": "fp32", "bf16": "bf16", "fp16": "fp16", "fp8": "fp8", "int8": "int8", "int4": "fp16"}
SERVE_PRECISIONS = ("bf16", "fp16", "fp8", "int8", "int4")
ACT_BYTES = 2.0  # activations travel in 16-bit


def kv_shards(model, tp):
    """How many ways TP splits the KV cache: min(t, kv_heads); MLA's latent is not split."""
    tp = np.asarray(tp)
    if model.attention == "mla":
        return _scalar(np.ones_like(tp))
    return _scalar(np.minimum(tp, model.kv_heads))


def experts_touched(model, tokens):
    """Expected distinct routed experts per MoE layer for `tokens` tokens each choosing k of E."""
    if not model.is_moe:
        return 0.0
    e, k = model.experts, model.experts_per_token
    return _scalar(e * (1.0 - (1.0 - k / e) ** np.asarray(tokens, dtype=float)))


def block_params(model) -> float:
    """Parameters of the transformer blocks: what weight quantization applies to."""
    return float(model.total_params - model.embedding_params - model.hidden)


def weight_bytes(model, precision, tp, pp):
    """Weights held per GPU on the busiest stage: this stage's share of the blocks at the weight
    precision, plus one vocabulary matrix (all embeddings when pp = 1) kept in 16-bit, as
    quantized checkpoints keep them (ChatGLM2-6B's quantizer, AWQ and GPTQ quantize the linear
    layers of the blocks only); split over TP."""
    tp, pp = np.asarray(tp), np.asarray(pp)
    wb = WEIGHT_BYTES[precision]
    single_vocab = model.embedding_params - (0 if model.tied_embeddings else model.vocab * model.hidden)
    embed = np.where(pp == 1, model.embedding_params + model.hidden, single_vocab)
    return _scalar((block_params(model) / pp * wb + embed * max(wb, 2.0)) / tp)


def weight_bytes_read(model, precision, tokens, tp, pp):
    """Weight bytes one GPU reads in a forward pass over `tokens` tokens (per stage, the replica's
    reads spread over its p stages): the blocks (MoE: the experts these tokens touch) at the weight
    precision plus the 16-bit output head; the input embedding is a row lookup."""
    wb = WEIGHT_BYTES[precision]
    blocks = block_params(model)
    if model.is_moe:
        skipped = model.experts - np.asarray(experts_touched(model, tokens))
        blocks = blocks - model.moe_layers * skipped * model.expert_params
    head = model.vocab * model.hidden
    return _scalar((blocks * wb + head * max(wb, 2.0)) / (np.asarray(tp) * np.asarray(pp)))


@dataclass(frozen=True)
class ServeMemory:
    """Bytes per GPU of one replica (busiest pipeline stage)."""

    weights: object
    kv_cache: object
    activations: object
    overhead: object

    @property
    def total(self):
        return self.weights + self.kv_cache + self.activations + self.overhead


def serve_memory(model, precision, kv_precision, batch, context, tp, pp, fixed_gib, fragmentation,
                 step_tokens=None, extra_weights=0.0, extra_kv=0.0, sampled=None) -> ServeMemory:
    """Weights (weight_bytes), the KV cache of
    `batch` sequences of `context` tokens, a forward pass's working activations over
    `step_tokens` tokens (default: max(batch, context)), and the framework overhead.
    extra_weights / extra_kv: bytes per GPU held beside them (a speculative draft's weights and
    KV cache), counted in the fragmentation like the rest; sampled: the tokens whose logits a step
    holds (default: one per sequence; k + 1 per sequence when a speculative step verifies k)."""
    tp, pp, batch = np.asarray(tp), np.asarray(pp), np.asarray(batch)
    weights = np.asarray(weight_bytes(model, precision, tp, pp)) + extra_weights
    kv = (batch * context * model.kv_bytes_per_token(KV_BYTES[kv_precision]) / pp / np.asarray(kv_shards(model, tp))
          + extra_kv)
    tokens = np.maximum(batch, context) if step_tokens is None else np.asarray(step_tokens)
    mult = 3.0 if model.mlp == "gated" else 2.0
    # residual stream, norm output, QKV and attention output (4h), MLP intermediates (/t), and
    # fp32 logits for the tokens sampled this step
    sampled = batch if sampled is None else np.asarray(sampled)
    acts = tokens * (4.0 * model.hidden + mult * mlp_width(model) / tp) * ACT_BYTES + sampled * model.vocab / tp * 4.0
    dynamic = weights + kv + acts
    overhead = fixed_gib * GIB + fragmentation * dynamic
    return ServeMemory(_scalar(weights), _scalar(kv), _scalar(acts), _scalar(overhead))


def allreduce_time(nbytes, n, bw_bytes_s, latency_s):
    """Ring all-reduce: a fixed latency plus 2(n - 1)/n of the buffer at the link bandwidth."""
    n = np.asarray(n)
    return _scalar(np.where(n > 1, latency_s + 2.0 * (n - 1) / n * np.asarray(nbytes) / bw_bytes_s, 0.0))


@dataclass(frozen=True)
class PassTime:
    """Seconds for one forward pass of one pipeline stage (decode) or the whole replica (prefill)."""

    compute: object
    memory: object
    tp_comm: object
    pp_comm: object
    overhead: object = 0.0
    attention_math: object = 0.0   # attention's kernel: its FLOPs' seconds ...
    kv_read: object = 0.0          # ... and the KV cache's read (it takes the longer of the two)

    @property
    def attention(self):
        return np.maximum(self.attention_math, self.kv_read)

    @property
    def memory_bound(self):
        """Whether the reads (weights, KV cache) outlast the math (GEMMs, attention's FLOPs)."""
        return self.memory + self.kv_read >= self.compute + self.attention_math

    @property
    def total(self):
        return (np.maximum(self.compute, self.memory) + self.attention + self.tp_comm + self.pp_comm
                + self.overhead)


def _attention_flop_s(peak_tflops, efficiency, attention_tflops, attention_efficiency):
    """FLOP/s attention's kernels reach: their own peak and efficiency, the GEMMs' where not given."""
    return (attention_tflops or peak_tflops) * 1e12 * (attention_efficiency or efficiency)


def decode_stage_time(model, precision, kv_precision, batch, context, tp, pp, peak_tflops, efficiency,
                      memory_bw_gb_s, bw_efficiency, tp_bw_gb_s, pp_bw_gb_s, comm_efficiency,
                      allreduce_latency_s, layer_overhead_s=0.0, tokens_per_seq=1, attention_tflops=None,
                      attention_efficiency=None) -> PassTime:
    """One decode iteration of one pipeline stage over its b = batch / pp sequences, each with
    q = tokens_per_seq query tokens (1; q = k + 1 when a speculative step verifies k drafted ones).

    memory    = weights touched by b q tokens / achievable bandwidth
    compute   = b q 2 N_active_matmul / (t p) / (peak * efficiency)        (the GEMMs' roofline)
    attention = max(b q 4 L H Q context / (t p) / (attention peak * efficiency),
                    b sequences' KV cache of `context` tokens, read once for all q queries / bandwidth):
                a kernel of its own after the GEMMs, bounded by its math or its read (per-kernel
                roofline; attention_tflops / _efficiency default to the GEMMs')
    tp_comm = 2 all-reduces per layer of b q h 16-bit values; pp_comm = one send of b q h values;
    overhead = layers/p x a fixed per-layer cost (kernel launches and tails of a dozen small
    kernels per layer that the roofline does not see; calibrated, docs/VALIDATION.md).
    """
    tp, pp = np.asarray(tp), np.asarray(pp)
    b = np.asarray(batch) / pp
    bq = b * tokens_per_seq
    read = np.asarray(weight_bytes_read(model, precision, bq, tp, pp))
    kv_bytes = b * context * model.kv_bytes_per_token(KV_BYTES[kv_precision]) / pp / np.asarray(kv_shards(model, tp))
    memory = read / (memory_bw_gb_s * GB * bw_efficiency)
    compute = bq * 2.0 * model.matmul_params / (tp * pp) / (peak_tflops * 1e12 * efficiency)
    att_flops = bq * 4.0 * model.layers * model.attention_width * context / (tp * pp)
    att_math = att_flops / _attention_flop_s(peak_tflops, efficiency, attention_tflops, attention_efficiency)
    kv_read = kv_bytes / (memory_bw_gb_s * GB * bw_efficiency)
    tp_comm = model.layers / pp * 2.0 * np.asarray(allreduce_time(
        bq * model.hidden * ACT_BYTES, tp, tp_bw_gb_s * GB * comm_efficiency, allreduce_latency_s))
    pp_comm = np.where(pp > 1, allreduce_latency_s / 2.0 + bq * model.hidden * ACT_BYTES / tp
                       / (pp_bw_gb_s * GB * comm_efficiency), 0.0)
    overhead = model.layers / pp * layer_overhead_s
    return PassTime(_scalar(compute), _scalar(memory), _scalar(tp_comm), _scalar(pp_comm), _scalar(overhead),
                    _scalar(att_math), _scalar(kv_read))


def prefill_time(model, precision, prompt, tp, pp, peak_tflops, efficiency, memory_bw_gb_s, bw_efficiency,
                 tp_bw_gb_s, pp_bw_gb_s, comm_efficiency, allreduce_latency_s, attention_tflops=None,
                 attention_efficiency=None) -> PassTime:
    """Prefill of one prompt of P tokens through all p stages in turn (the request's latency).

    compute = 2 N_matmul P / t / (peak * efficiency) + 2 L H Q P^2 / t / (attention peak * efficiency)
    (attention_tflops / _efficiency default to the GEMMs'); memory = all weights once.
    """
    tp, pp = np.asarray(tp), np.asarray(pp)
    memory = np.asarray(weight_bytes_read(model, precision, prompt, tp, 1)) / (memory_bw_gb_s * GB * bw_efficiency)
    compute = (2.0 * model.matmul_params * prompt / tp / (peak_tflops * 1e12 * efficiency)
               + 2.0 * model.layers * model.attention_width * prompt ** 2 / tp
               / _attention_flop_s(peak_tflops, efficiency, attention_tflops, attention_efficiency))
    tp_comm = model.layers * 2.0 * np.asarray(allreduce_time(
        prompt * model.hidden * ACT_BYTES, tp, tp_bw_gb_s * GB * comm_efficiency, allreduce_latency_s))
    pp_comm = (pp - 1) * (allreduce_latency_s / 2.0 + prompt * model.hidden * ACT_BYTES / tp
                          / (pp_bw_gb_s * GB * comm_efficiency))
    return PassTime(_scalar(compute), _scalar(memory), _scalar(tp_comm), _scalar(pp_comm))


def kv_transfer_time(model, prompt_tokens, kv_bytes, link_gb_s, comm_efficiency):
    """Seconds to send one prompt's KV cache (2 layers kv_heads head_dim bytes per token, Kwon et
    al. 2023) over a link of link_gb_s GB/s at comm_efficiency: the hand-off from a prefill replica
    to a decode replica in disaggregated serving (Zhong et al. 2024, "DistServe", OSDI, Sec. 3)."""
    return _scalar(prompt_tokens * model.kv_bytes_per_token(kv_bytes) / (np.asarray(link_gb_s) * GB * comm_efficiency))


def spec_tokens_per_step(accept, draft_tokens):
    """Tokens a sequence gains per speculative step on average: k drafted tokens are checked in
    order, the i-th accepted with probability a_i once those before it were (a_i = a for a single
    rate), the first rejected one replaced by the target's own token, and one more token from the
    target when all k pass: E = 1 + a_1 + a_1 a_2 + ... + a_1 ... a_k; with one rate a,
    E = (1 - a^(k + 1)) / (1 - a) (Leviathan, Kalman and Matias 2023, "Fast Inference from
    Transformers via Speculative Decoding", ICML, Eq. 1)."""
    a = np.asarray(accept, dtype=float)
    if a.ndim == 1:                      # one rate per drafted position
        return float(1.0 + np.cumprod(a[:draft_tokens]).sum())
    return _scalar((1.0 - a ** (draft_tokens + 1)) / (1.0 - a))
