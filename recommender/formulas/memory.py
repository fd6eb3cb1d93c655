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
    """Bytes per GPU on the busiest pipeline stage."""

    weights: object
    gradients: object
    optimizer: object
    activations: object
    overhead: object

    @property
    def total(self):
        return self.weights + self.gradients + self.optimizer + self.activations + self.overhead


def model_states(params, precision: str = "bf16", zero=0, dp=1, frozen=0.0, frozen_bytes=2.0,
                 state_bytes: tuple[float, float, float] | None = None) -> ModelStates:
    """ZeRO Sec. 3.1: (2 + 2 + 12) * params bytes for mixed-precision Adam, sharded over dp.

    Stage >= 1 divides optimizer states by dp, >= 2 also gradients, 3 also weights.
    ZeRO paper Fig. 1 check: 7.5B params, dp = 64 -> 120 / 31.4 / 16.6 / 1.9 GB for stages 0-3.
    `frozen` parameters (a LoRA/QLoRA base) keep weights only, `frozen_bytes` each (2: 16-bit;
    QLoRA's NF4 with double quantization: 4.127 bits, Dettmers et al. 2023 Sec. 3), sharded
    under stage 3 like the trained weights (FSDP with LoRA). `state_bytes` overrides the
    (weights, gradients, optimizer) bytes of the trained parameters (QLORA_ADAPTER_BYTES).
    """
    w, g, o = state_bytes or STATE_BYTES[precision]
    zero, dp = np.asarray(zero), np.asarray(dp)
    return ModelStates(
        weights=_scalar((params * w + np.asarray(frozen) * frozen_bytes) / np.where(zero >= 3, dp, 1)),
        gradients=_scalar(params * g / np.where(zero >= 2, dp, 1)),
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
                               tp=1, recompute="none", sequence_parallel=True):
    """Korthikanti 2022 Sec. 4, per transformer layer and micro-batch, 16-bit activations.

    Written as the paper's sum of stored tensors, generalized to GQA (K and V are kv/heads the
    size of Q) and to any FFN size and gated MLPs; for MHA with a plain 4h FFN it is exactly
    s*b*h*(34 + 5*a*s/h) (no TP), s*b*h*(10 + 24/t + 5*a*s/(h*t)) (TP), s*b*h/t*(34 + 5*a*s/h)
    (TP + SP). Selective recomputation drops the 5*a*s/h term; full keeps 2*s*b*h (/t with SP).
    """
    s, b, h, a = seq, np.asarray(micro_batch), hidden, heads
    t = np.asarray(tp)
    g = (kv_heads or heads) / heads
    f_over_h = ffn / hidden
    # not split by TP: 2 LayerNorm inputs (4), QKV input (2), MLP input (2), 2 dropout masks (2)
    replicated = 10.0
    # split by TP: Q (2), K and V (4g), output-projection input (2); MLP: fc outputs and act
    mlp_mult = 6.0 if gated else 4.0
    split = 2.0 + 4.0 * g + 2.0 + mlp_mult * f_over_h
    scores = 5.0 * a * s / h  # softmax output (2), its dropout mask (1) and output (2), per a*s^2*b
    rc = np.asarray(recompute)
    scores = np.where(rc == "none", scores, 0.0)
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


def activation_bytes(model, seq, micro_batch, tp, pp, recompute, micro_batches, precision="bf16", vp=1):
    """Activations on the first pipeline stage (the busiest under 1F1B), in bytes.

    layers/pp layers x min(pp, m) micro-batches in flight (x (1 + (p-1)/(p v)) under the
    interleaved schedule with v > 1 chunks, Korthikanti Sec. 4.2.3), + the fp32 logits of the loss
    (4*s*b*V/t bytes, counted on the busiest stage to stay conservative), + under full
    recomputation one layer's working set while it is recomputed.
    """
    tp, pp, mb = np.asarray(tp), np.asarray(pp), np.asarray(micro_batch)
    kw = dict(hidden=model.hidden, heads=model.heads, ffn=mlp_width(model), kv_heads=model.kv_heads,
              gated=model.mlp == "gated")
    per_layer = activation_bytes_per_layer(seq, mb, tp=tp, recompute=recompute, **kw)
    vp = np.asarray(vp)
    in_flight = np.minimum(pp, np.asarray(micro_batches)) * np.where(vp > 1, 1 + (pp - 1) / (pp * vp), 1.0)
    stored = stage_layers(model.layers, pp) * per_layer * in_flight
    logits = 4.0 * seq * mb * model.vocab / tp
    working = np.where(np.asarray(recompute) == "full",
                       activation_bytes_per_layer(seq, mb, tp=tp, recompute="selective", **kw), 0.0)
    return _scalar((stored + logits + working) * ACTIVATION_SCALE[precision])


def zero3_prefetch_bytes(model, tp, zero, precision="bf16", ep=1, bytes_per_param=None):
    """ZeRO-3 gathers the current and the prefetched layer's full weights: 2 layers, 16-bit
    (or `bytes_per_param`, e.g. a QLoRA base), routed experts split over ep."""
    routed = model.routed_expert_params
    per_layer = (model.total_params - model.embedding_params - routed + routed / np.asarray(ep)) / model.layers
    b = STATE_BYTES[precision][0] if bytes_per_param is None else bytes_per_param
    return _scalar(np.where(np.asarray(zero) == 3, 2 * per_layer / np.asarray(tp) * b, 0.0))


def overhead_bytes(dynamic_bytes, fixed_gib: float, fragmentation: float):
    """Framework overhead: a fixed part (CUDA context, NCCL buffers, kernels' workspaces) plus
    allocator fragmentation as a fraction of the dynamic memory (states + activations)."""
    return _scalar(fixed_gib * GIB + fragmentation * np.asarray(dynamic_bytes))


def fits(total_bytes, capacity_gib: float, headroom: float):
    """A plan fits when its memory stays below (1 - headroom) of the device's capacity."""
    return _scalar(np.asarray(total_bytes) <= capacity_gib * GIB * (1.0 - headroom))
