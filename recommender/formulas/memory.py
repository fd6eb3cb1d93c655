"""Training memory per GPU: model states, activations, framework overhead.

Sources:
- Rajbhandari et al. 2020, "ZeRO: Memory Optimizations Toward Training Trillion Parameter
  Models", Sec. 3.1 and Fig. 1: mixed-precision Adam keeps 2 + 2 + K bytes per parameter,
  K = 12; stage 1 shards the optimizer states over data parallelism, stage 2 also the
  gradients, stage 3 also the weights.
- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models",
  Sec. 4 and Table 2: activations per layer per micro-batch s*b*h*(34 + 5*a*s/h) bytes
  (16-bit), with tensor parallelism t: s*b*h*(10 + 24/t + 5*a*s/(h*t)); with sequence
  parallelism: s*b*h/t*(34 + 5*a*s/h); selective recomputation drops the 5*a*s/h term; full
  recomputation keeps only the 2*s*b*h layer input. 1F1B keeps min(p, m) micro-batches in
  flight on the first pipeline stage (Narayanan et al. 2021, Sec. 2.2.1).
- Dao et al. 2022, "FlashAttention", Sec. 3.1: the attention scores are never materialized; the
  backward pass recomputes them from the output and the softmax statistics.
- Memory outside the model (CUDA context, NCCL buffers, allocator fragmentation) and the FSDP /
  ZeRO working sets: see `framework_bytes`, `zero3_working_bytes`, `zero2_bucket_bytes`, with
  the figures in catalog/assumptions.yaml.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.formulas.compute import _scalar

GIB = 2**30

# (weights, gradients, optimizer states) bytes per parameter
STATE_BYTES = {
    "bf16": (2, 2, 12),  # bf16 weights, bf16 grads, fp32 master + Adam m + v (ZeRO K = 12)
    "fp16": (2, 2, 12),  # fp16 mixed precision: the same states as bf16 (ZeRO's setting)
    "fp8": (2, 2, 12),   # fp8 GEMMs keep bf16/fp32 states as bf16 mixed precision does
    "fp32": (4, 4, 8),   # fp32 weights and grads, fp32 Adam m + v (no separate master copy)
}
# Gradients accumulate in an fp32 buffer under 16-bit training with ZeRO 0-2: Megatron-LM's
# default (--accumulate-allreduce-grads-in-fp32 with bf16; its docs/distrib_optimizer.md table:
# "bf16 param, fp32 grads: 18 bytes, 6 + 12/d distributed") and DeepSpeed's bf16 optimizer. FSDP /
# ZeRO-3 keeps 16-bit gradient shards beside fp32 parameter shards: 16 bytes a parameter, sharded.
GRAD_ACCUM_BYTES = {"bf16": 4, "fp8": 4}
# FSDP (v1) units that mix frozen and trained parameters (a LoRA block wrapped whole) allocate
# gradients for all of them: "the gradient memory usage will be higher than expected (namely,
# equivalent to not freezing those parameters)", PyTorch FSDP docs; Lightning-AI/litgpt#1417
# (LoRA recipes wrap each Block). 16-bit shards of the base's gradients, under ZeRO-3 only.
FSDP1_FROZEN_GRAD_BYTES = 2.0
# QLoRA's adapters: BF16 weights and gradients, 32-bit paged AdamW m and v, no FP32 master copy
# (Dettmers et al. 2023, Sec. 3-4 and Fig. 6, where the optimizer bar is 4x the adapters' bar)
QLORA_ADAPTER_BYTES = (2, 2, 8)
# activation bytes relative to Korthikanti's 16-bit count
ACTIVATION_SCALE = {"bf16": 1.0, "fp16": 1.0, "fp8": 1.0, "fp32": 2.0}


@dataclass(frozen=True)
class ModelStates:
    weights: object
    gradients: object
    optimizer: object

    @property
    def total(self):
        return self.weights + self.gradients + self.optimizer


@dataclass(frozen=True)
class MemoryBreakdown:
    """Bytes per GPU on the busiest pipeline stage, by what holds them."""

    weights: object
    gradients: object
    optimizer: object
    activations: object        # stored layer activations (+ the layer being recomputed)
    logits: object = 0.0       # the loss's logits buffer
    gathered: object = 0.0     # ZeRO-3 / FSDP unsharded working set, ZeRO-2 gradient bucket
    framework: object = 0.0    # CUDA context, NCCL communicators' buffers
    fragmentation: object = 0.0  # allocator reserved minus allocated
    # paged optimizer (QLoRA Sec. 3): its states live in unified memory and are evicted to host
    # memory while the forward and backward passes need the room, and paged back for the step,
    # when the activations are freed: the peak holds the larger of the two, not both
    optimizer_paged: bool = False

    @property
    def overhead(self):
        return self.framework + self.fragmentation

    @property
    def total(self):
        passes = self.activations + self.logits + self.gathered
        held = np.maximum(self.optimizer, passes) if self.optimizer_paged else self.optimizer + passes
        return _scalar(self.weights + self.gradients + held + self.framework + self.fragmentation)


def model_states(params, precision: str = "bf16", zero=0, dp=1, frozen=0.0, frozen_bytes=2.0,
                 state_bytes: tuple[float, float, float] | None = None, frozen_grad_bytes=0.0) -> ModelStates:
    """ZeRO Sec. 3.1: (2 + 2 + 12) * params bytes for mixed-precision Adam, sharded over dp.

    Stage >= 1 divides optimizer states by dp, >= 2 also gradients, 3 also weights.
    ZeRO paper Fig. 1 check (fp16): 7.5B params, dp = 64 -> 120 / 31.4 / 16.6 / 1.9 GB for stages
    0-3. bf16 and fp8 keep fp32 gradients at stages 0-2 (GRAD_ACCUM_BYTES).
    `frozen` parameters (a LoRA/QLoRA base) keep weights only, `frozen_bytes` each (2: 16-bit;
    QLoRA's NF4 with double quantization: 4.127 bits, Dettmers et al. 2023 Sec. 3), sharded
    under stage 3 like the trained weights (FSDP with LoRA). `state_bytes` overrides the
    (weights, gradients, optimizer) bytes of the trained parameters (QLORA_ADAPTER_BYTES).
    `frozen_grad_bytes`: gradient bytes FSDP allocates for a frozen base under ZeRO-3 (see
    FSDP1_FROZEN_GRAD_BYTES).
    """
    w, g, o = state_bytes or STATE_BYTES[precision]
    zero, dp = np.asarray(zero), np.asarray(dp)
    if state_bytes is None and precision in GRAD_ACCUM_BYTES:
        g = np.where(zero >= 3, g, GRAD_ACCUM_BYTES[precision])
    return ModelStates(
        weights=_scalar((params * w + np.asarray(frozen) * frozen_bytes) / np.where(zero >= 3, dp, 1)),
        gradients=_scalar((params * g + np.asarray(frozen) * np.where(zero >= 3, frozen_grad_bytes, 0.0))
                          / np.where(zero >= 2, dp, 1)),
        optimizer=_scalar(params * o / np.where(zero >= 1, dp, 1)),
    )


def stage_layers(layers, pp):
    """Layers on the busiest pipeline stage: layers/pp, or its ceiling where pp does not divide
    them (DeepSeek-V3: 61 layers on 16 stages, 4 on the fullest)."""
    return _scalar(np.ceil(layers / np.asarray(pp)))


def stage_params(model, tp=1, pp=1, ep=1):
    """Parameters held by one GPU of the busiest pipeline stage: layers/pp of the transformer
    plus one vocabulary matrix (first stage: input embedding; last: output head; pp = 1: all)
    and the final norm,
    all split over tp (Megatron's vocabulary-parallel embedding); a MoE model's routed experts
    are split over ep as well (expert parallelism, Lepikhin et al. 2020, GShard Sec. 2.2)."""
    tp, pp = np.asarray(tp), np.asarray(pp)
    routed = model.routed_expert_params
    per_layer = (model.total_params - model.embedding_params - model.hidden - routed) / model.layers
    single_vocab = model.embedding_params - (0 if model.tied_embeddings else model.vocab * model.hidden)
    embed = np.where(pp == 1, model.embedding_params, single_vocab) + model.hidden  # + the final norm
    return _scalar((stage_layers(model.layers, pp) * per_layer + embed) / tp + stage_routed_params(model, tp, pp, ep))


def stage_routed_params(model, tp=1, pp=1, ep=1):
    """The routed experts' share of `stage_params`: their gradients are reduced, and their ZeRO
    shards spread, over the dp/ep ranks holding the same experts, not over all of dp."""
    per_layer = model.experts * model.expert_params
    return _scalar(stage_layers(model.moe_layers, pp) * per_layer / (np.asarray(tp) * np.asarray(ep)))


def activation_bytes_per_layer(seq, micro_batch, hidden, heads, ffn, kv_heads=None, gated=False,
                               tp=1, recompute="none", sequence_parallel=True, attention="flash", cp=1,
                               dropout=True):
    """Korthikanti 2022 Sec. 4, per transformer layer and micro-batch, 16-bit activations.

    Written as the paper's sum of stored tensors, generalized to GQA (K and V are kv/heads the
    size of Q) and to any FFN size and gated MLPs; for MHA with a plain 4h FFN and `attention=
    "eager"` it is exactly s*b*h*(34 + 5*a*s/h) (no TP), s*b*h*(10 + 24/t + 5*a*s/(h*t)) (TP),
    s*b*h/t*(34 + 5*a*s/h) (TP + SP). Selective recomputation drops the 5*a*s/h term; full keeps
    2*s*b*h (/t with SP).

    `attention="flash"` (the default: FlashAttention, Dao et al. 2022 Sec. 3.1, and PyTorch's
    fused SDPA, which modern stacks run) never stores the a*s^2 scores: it keeps the output
    (already counted as the output projection's input) and the softmax statistics, one fp32
    logsumexp per head and token (4*a*s*b bytes), whatever the recomputation. Context
    parallelism (`cp`) splits the sequence, so every term is taken at s/cp (Megatron-LM's context
    parallel and ring attention keep only their shard of Q, K, V and the outputs). Without
    `dropout` (Llama, Qwen, Mistral, MPT) no dropout masks are stored: 2*s*b*h less per layer, and
    under eager attention 2 of the 5*a*s/h (the mask and the dropped-out scores' copy: 3).
    """
    s, b, h, a = seq / np.asarray(cp), np.asarray(micro_batch), hidden, heads
    t = np.asarray(tp)
    g = (kv_heads or heads) / heads
    f_over_h = ffn / hidden
    # not split by TP: 2 LayerNorm inputs (4), QKV input (2), MLP input (2), 2 dropout masks (2)
    replicated = 10.0 if dropout else 8.0
    # split by TP: Q (2), K and V (4g), output-projection input (2); MLP per f/h: plain, the fc1
    # output and the activation's output (2 + 2); gated (SwiGLU as eager PyTorch runs it, in
    # Hugging Face, torchtitan, torchtune): the gate and up outputs, the SiLU output and the
    # product (2 + 2 + 2 + 2; Megatron's fused SwiGLU recomputes the SiLU and keeps 6)
    mlp_mult = 8.0 if gated else 4.0
    split = 2.0 + 4.0 * g + 2.0 + mlp_mult * f_over_h
    rc = np.asarray(recompute)
    eager = np.asarray(attention) == "eager"
    # eager: softmax output (2), its dropout mask (1) and output (2), per a*s^2*b; flash: fp32 lse
    scores = np.where(eager, np.where(rc == "none", (5.0 if dropout else 2.0) * a * s / h, 0.0), 4.0 * a / h)
    if sequence_parallel:
        per_layer = s * b * h * (replicated + split + scores) / t
    else:
        per_layer = s * b * h * (replicated + (split + scores) / t)
    full_kept = s * b * h * 2.0 / np.where(sequence_parallel, t, 1)
    return _scalar(np.where(rc == "full", full_kept, per_layer))


def mlp_width(model) -> int:
    """FFN width a token passes through: the dense FFN, or for MoE its routed + shared experts."""
    if not model.is_moe:
        return model.ffn
    return max(model.ffn, (model.experts_per_token + model.shared_experts) * model.moe_ffn)


def in_flight(pp, micro_batches, vp=1, stage=0):
    """Micro-batches whose activations pipeline stage `stage` (0 = first) holds at its peak.

    1F1B (Narayanan et al. 2021 Sec. 2.2.1): stage r runs p - r - 1 warm-up forwards before its
    first backward, so it holds min(p - r, m) micro-batches: p on the first stage, 1 on the last.
    Interleaved with v chunks per GPU (Megatron-LM's schedule): (p - r - 1) * 2 + (v - 1) * p
    warm-up chunk-forwards, plus the one in flight, each of layers/(p v) layers, so in units of
    a whole stage's micro-batch ((p - r - 1) * 2 + (v - 1) * p + 1) / v; on the first stage that
    is p * (1 + (p - 1)/(p v)), Korthikanti et al. 2022 Sec. 4.2.3.
    """
    p, m, v = np.asarray(pp), np.asarray(micro_batches), np.asarray(vp)
    r = np.minimum(np.asarray(stage), p - 1)
    chunks = np.where(v > 1, (p - r - 1) * 2 + (v - 1) * p + 1, p - r)
    return _scalar(np.minimum(m * v, chunks) / v)


# bytes per logit element around the loss. standard: the head's 16-bit output, its fp32 copy for a
# stable softmax / log-softmax kept for the backward pass, and that pass's fp32 gradient (PyTorch's
# cross_entropy on `logits.float()`, as torchtitan and Hugging Face compute the loss). fused: a
# fused or chunked kernel (flash-attn's cross_entropy in llm-foundry, Megatron-LM's
# --cross-entropy-loss-fusion, Liger, torchtune's chunked loss) keeps the 16-bit logits and writes a
# 16-bit gradient, never the fp32 copies
LOGIT_BYTES = {"standard": 2.0 + 4.0 + 4.0, "fused": 2.0 + 2.0}


@dataclass(frozen=True)
class Activations:
    """Activation-side bytes on the busiest pipeline stage (first or last)."""

    stored: object     # layer activations kept for the backward pass, all micro-batches in flight
    working: object    # under full recomputation: one layer's activations while it is re-run
    logits: object     # the loss's logits buffer (last stage only; pp = 1: the one stage)

    @property
    def total(self):
        return self.stored + self.working + self.logits


def quantized_input_bytes_per_layer(seq, micro_batch, hidden, ffn, tp=1, cp=1):
    """QLoRA: bitsandbytes' 4-bit matmul keeps each linear's 16-bit input for the backward pass
    (MatMul4Bit: ctx.tensors = (A, B), bitsandbytes autograd/_functions.py), which a frozen 16-bit
    linear does not (PyTorch keeps a matmul's input only for its weight's gradient): the inputs of
    the QKV map and the MLP (h each, replicated over tp), of the output projection (h / tp) and of
    the down map (f / tp), 2 bytes each, per token and layer. gpuplan's LoRA activations are
    Korthikanti's count, which litgpt's LoRA tables bear out (docs/VALIDATION.md); this is what
    the same runs with a 4-bit base keep beside it."""
    t = np.asarray(tp)
    return _scalar(seq / np.asarray(cp) * np.asarray(micro_batch) * 2.0 * (2.0 * hidden + (hidden + ffn) / t))


def activation_terms(model, seq, micro_batch, tp, pp, recompute, micro_batches, precision="bf16", vp=1,
                     attention="flash", cp=1, loss="standard", quantized_base=False) -> Activations:
    """Activations of the busiest pipeline stage: the first holds in_flight(stage 0) micro-batches
    of its layers, the last only in_flight(last) but also the logits of the loss (LOGIT_BYTES x
    s x b x V/t: the head is vocabulary-parallel over tp, the sequence split over cp), which for a
    large vocabulary at a small hidden size is the larger. Both stages are charged the fullest
    stage's layer count. Under full recomputation one layer's activations are re-materialized
    while it is recomputed (the `working` term). `quantized_base` (QLoRA on bitsandbytes): each
    layer also keeps its 4-bit linears' inputs (quantized_input_bytes_per_layer).
    """
    tp, pp, mb = np.asarray(tp), np.asarray(pp), np.asarray(micro_batch)
    kw = dict(hidden=model.hidden, heads=model.heads, ffn=mlp_width(model), kv_heads=model.kv_heads,
              gated=model.mlp == "gated", attention=attention, cp=cp, dropout=model.dropout)
    scale = ACTIVATION_SCALE[precision]
    per_layer = activation_bytes_per_layer(seq, mb, tp=tp, recompute=recompute, **kw) * scale
    full = np.asarray(recompute) == "full"
    rerun = activation_bytes_per_layer(seq, mb, tp=tp, recompute="selective", **kw) * scale
    if quantized_base:
        kept_inputs = quantized_input_bytes_per_layer(seq, mb, model.hidden, mlp_width(model), tp, cp) * scale
        per_layer = per_layer + np.where(full, 0.0, kept_inputs)
        rerun = rerun + kept_inputs
    layers = stage_layers(model.layers, pp)
    first = layers * per_layer * in_flight(pp, micro_batches, vp, 0)
    last = layers * per_layer * in_flight(pp, micro_batches, vp, pp - 1)
    logits = LOGIT_BYTES[loss] * seq / np.asarray(cp) * mb * model.vocab / tp
    working = np.where(full, rerun, 0.0)
    last_busier = (pp == 1) | (last + logits > first)
    return Activations(stored=_scalar(np.where(last_busier, last, first)), working=_scalar(working),
                       logits=_scalar(np.where(last_busier, logits, 0.0)))


def layer_params(model, tp=1, ep=1):
    """Parameters of one transformer block on one GPU: split over tp, routed experts over ep."""
    routed = model.routed_expert_params
    return _scalar((model.total_params - model.embedding_params - routed + routed / np.asarray(ep))
                   / model.layers / np.asarray(tp))


def zero3_working_bytes(model, tp, pp, zero, weight_bytes=2.0, grad_bytes=2.0, ep=1):
    """FSDP / ZeRO-3's unsharded working set: the block being computed and the one prefetched
    (FSDP's default forward and backward prefetch; DeepSpeed's stage3_prefetch_bucket_size)
    gathered in 16 bits (under pipeline parallelism every block of the stage, and its gradients
    unsharded in fp32), the root unit (embedding, final norm, head: FSDP2 keeps the root
    gathered from forward to backward) gathered as well, and in the backward pass one unit's
    unsharded gradients before their reduce-scatter. `grad_bytes` 0 for a frozen base (LoRA)."""
    zero3 = np.asarray(zero) == 3
    layer = layer_params(model, tp, ep)
    pp = np.asarray(pp)
    root = np.where(pp == 1, model.embedding_params, model.embedding_params
                    - (0 if model.tied_embeddings else model.vocab * model.hidden)) / np.asarray(tp)
    per_unit = 2.0 * layer + root
    working = per_unit * weight_bytes + np.maximum(layer, root) * grad_bytes
    # with a pipeline, FSDP keeps every block of the stage gathered from its forward to its
    # backward (torchtitan: reshard_after_forward=not pp_enabled), and PyTorch's pipeline schedules
    # turn gradient reduction off for every micro-batch but the last (set_requires_gradient_sync
    # (False)), so the stage's gradients accumulate unsharded, in the fp32 reduce dtype
    stage = stage_layers(model.layers, pp) * layer + root
    piped = stage * weight_bytes + stage * np.where(np.asarray(grad_bytes) > 0, PP_FSDP_GRAD_BYTES, 0.0)
    return _scalar(np.where(zero3, np.where(pp > 1, piped, working), 0.0))


PP_FSDP_GRAD_BYTES = 4.0  # unsharded fp32 gradients of a pipeline stage under FSDP (see zero3_working_bytes)

# DeepSpeed ZeRO-2's gradient bucket (zero_optimization.reduce_bucket_size, default 5e8 elements,
# DeepSpeed config docs): gradients are reduced through it before they are partitioned
ZERO2_BUCKET_ELEMENTS = 5e8


def zero2_bucket_bytes(trained_params, zero, grad_bytes=2.0):
    """ZeRO-2 reduces gradients through a bucket of up to 5e8 elements before partitioning."""
    return _scalar(np.where(np.asarray(zero) == 2,
                            np.minimum(ZERO2_BUCKET_ELEMENTS, np.asarray(trained_params)) * grad_bytes, 0.0))


def framework_bytes(tp=1, pp=1, dp=1, ep=1, cp=1, context_gib=0.5, nccl_group_gib=0.64, nccl_a2a_gib=3.05):
    """Memory outside PyTorch's allocator: the CUDA context (with cuBLAS / cuDNN workspaces) and
    one NCCL communicator's buffers per parallel group in use (tp, pp, dp, cp > 1; an all-to-all
    expert group connects every peer over all channels, so costs more). Values: catalog/
    assumptions.yaml (cuda_context_gib, nccl_group_gib, nccl_all_to_all_gib)."""
    groups = sum(np.where(np.asarray(x) > 1, 1.0, 0.0) for x in (tp, pp, dp, cp))
    return _scalar(context_gib * GIB + groups * nccl_group_gib * GIB
                   + np.where(np.asarray(ep) > 1, nccl_a2a_gib * GIB, 0.0))


def fragmentation_bytes(dynamic_bytes, fraction: float):
    """PyTorch's caching allocator reserves more than it allocates: the gap grows with the memory
    that is allocated and freed every step (activations, gathered weights, logits), a fraction of it."""
    return _scalar(fraction * np.asarray(dynamic_bytes))


def fits(total_bytes, capacity_gib: float, headroom: float):
    """A plan fits when its memory stays below (1 - headroom) of the device's capacity."""
    return _scalar(np.asarray(total_bytes) <= capacity_gib * GIB * (1.0 - headroom))
