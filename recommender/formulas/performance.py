"""Training step time: compute at an achievable efficiency, pipeline bubble, tensor-, pipeline-
and data-parallel communication, and goodput.

Sources:
- Narayanan et al. 2021, "Efficient Large-Scale Language Model Training on GPU Clusters Using
  Megatron-LM", Sec. 2.2 (1F1B schedule: a step takes (m + p - 1) micro-batch slots, bubble
  fraction (p - 1)/m; the interleaved schedule with v model chunks per GPU cuts the bubble to
  (p - 1)/(v m) and multiplies pipeline communication by v) and Sec. 3.2 (per layer, 2 all-reduces in the forward and 2 in the
  backward pass for tensor parallelism; sequence parallelism replaces each by an all-gather and
  a reduce-scatter of the same total volume, Korthikanti et al. 2022, Sec. 4.2.2).
- Ring all-reduce moves 2(n-1)/n of the buffer per GPU; all-gather and reduce-scatter (n-1)/n
  each (Patarasuk & Yuan 2009; NCCL's "bus bandwidth" convention, NVIDIA/nccl-tests
  doc/PERFORMANCE.md).
- ZeRO-3 moves 1.5x the data of ZeRO-0/1/2 (Rajbhandari et al. 2020, Sec. 7.2.2): a reduce-
  scatter of the gradients and two all-gathers of the weights (forward and backward) instead of
  one all-reduce; a frozen base (LoRA) has no gradients, only the two all-gathers.
- Mixture of experts with expert parallelism: each MoE layer dispatches every token to its k
  experts and combines the results, one all-to-all each, in the forward pass and again (for the
  gradients) in the backward pass (Lepikhin et al. 2020, GShard Sec. 2.2; Fedus et al. 2021,
  Switch Transformer Sec. 2.2); a share (ep - 1)/ep of each token's k copies leaves the GPU.
  DeepSeek-V3's DualPipe (DeepSeek-AI 2024, Sec. 3.2.1) hides it behind another micro-batch's
  compute: then only what exceeds that compute is exposed.
- Memory-bound elementwise work (norms, residuals, activation functions, dropout) is timed as a
  roofline term: every activation Korthikanti et al. 2022 count as stored is written once in the
  forward pass and read once in the backward pass (and written again when the forward is
  recomputed), at the device's memory bandwidth. Matmul FLOPs run at the calibrated efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.formulas.compute import _scalar
from recommender.formulas.memory import stage_layers

GB = 1e9


@dataclass(frozen=True)
class StepTime:
    """Seconds per optimizer step on the busiest GPU, and what it is made of."""

    compute: object          # all micro-batches' forward + backward (+ recompute) math
    memory: object           # memory-bound elementwise traffic (roofline, not overlapped)
    bubble: object           # pipeline fill and drain: (p - 1) idle micro-batch slots
    tp_comm: object          # tensor-parallel collectives, not overlapped
    pp_comm: object          # point-to-point activations between stages
    dp_comm_exposed: object  # gradient reduction left after overlap with the last backward
    ep_comm: object = 0.0    # MoE all-to-all, not hidden behind compute
    cp_comm: object = 0.0    # context-parallel K/V ring exchange left after overlap with attention

    @property
    def total(self):
        return (self.compute + self.memory + self.bubble + self.tp_comm + self.pp_comm + self.dp_comm_exposed
                + self.ep_comm + self.cp_comm)


def link_bandwidth(group_span, gpus_per_node, intra_gb_s, inter_gb_s):
    """Bytes/s one GPU can push to its group: intra-node links if the group fits in a node."""
    return _scalar(np.where(np.asarray(group_span) <= gpus_per_node, intra_gb_s, inter_gb_s) * GB)


def collective_bandwidth(members, stride, gpus_per_node, intra_gb_s, inter_gb_s):
    """Bytes/s of a ring collective (all-reduce, all-gather, reduce-scatter) per GPU over a group
    of `members` ranks `stride` apart (the ranks of the layers inside it: tp for a data-parallel
    group, whose ranks Megatron-LM, torchtitan and DeepSpeed all order inside the pipeline's).
    In one node (scale-up domain): its links. Across nodes with g of the group's ranks in each,
    NCCL's channels cross the node boundary at every one of the g GPUs at once, so the group
    moves min(intra, g x inter) per GPU, not one NIC's inter: on 4 x 8 B200 nodes (8 x 50 GB/s
    NICs each) a 16 GiB all-reduce measured 381.8 GB/s busbw against 845.7 in one node
    (stas00/ml-engineering network/README.md @744d01e, "Inter-node speed depends on intra-node
    speed"). With one rank a node (stride >= node) that is the NIC's inter, as before."""
    members, stride = np.asarray(members), np.asarray(stride)
    per_node = np.clip(gpus_per_node // np.maximum(stride, 1), 1, np.maximum(members, 1))
    across = np.where(per_node > 1, np.minimum(intra_gb_s, per_node * inter_gb_s), inter_gb_s)
    return _scalar(np.where(members * stride <= gpus_per_node, intra_gb_s, across) * GB)


def all_to_all_time(tokens, hidden, experts_per_token, tp, ep, gpus_per_node, intra_gb_s, inter_gb_s,
                    comm_efficiency, act_bytes=2.0, dispatch_bytes=None, node_limit=None, recompute="selective"):
    """Seconds of one MoE layer's all-to-alls for `tokens` tokens on one GPU, per micro-batch.

    Four per layer: dispatch and combine forward, their gradients backward (six when the forward
    is recomputed). Each token goes to k experts; inside one node a share (ep - 1)/ep of the k
    copies leaves the GPU. When the expert-parallel group spans n nodes, a copy crosses the
    inter-node link unless its expert is on the token's node (1 - 1/n of them); with node-limited
    routing (DeepSeek-V3: each token to at most M = 4 nodes, sent once per node and forwarded
    over NVLink, DeepSeek-AI 2024 Sec. 2.1.2 and 3.2.2) min(k, M) copies do. The slower of the
    two links sets the time. `dispatch_bytes`: the forward dispatch's element size (1 for FP8,
    Sec. 3.3.2); the other three move `act_bytes`.
    """
    tp, ep = np.asarray(tp), np.asarray(ep)
    d = act_bytes if dispatch_bytes is None else dispatch_bytes
    full = np.asarray(recompute) == "full"
    bytes_per_copy = hidden * (d + 3.0 * act_bytes + np.where(full, d + act_bytes, 0.0))
    span = tp * ep
    in_node = np.minimum(ep, np.maximum(1, gpus_per_node // tp))
    nodes = np.maximum(1.0, span / gpus_per_node)
    intra = tokens * experts_per_token * (in_node - 1) / in_node * bytes_per_copy / (intra_gb_s * GB)
    cross = experts_per_token if not node_limit else min(experts_per_token, node_limit)
    inter = np.where(span > gpus_per_node,
                     tokens * cross * (1 - 1 / nodes) * bytes_per_copy / ((inter_gb_s or intra_gb_s) * GB), 0.0)
    return _scalar(np.where(ep > 1, np.maximum(intra, inter) / comm_efficiency, 0.0))


def sync_bytes(trained, zero, grad_bytes=2.0, frozen=0.0, frozen_bytes=2.0):
    """Bytes of one GPU's buffers a data-parallel step reduces or gathers, before the ring's
    (n - 1)/n: an all-reduce of the gradients is 2 buffers; ZeRO-3 is a reduce-scatter of the
    gradients plus two all-gathers of all weights (trained, at grad_bytes, and frozen)."""
    zero3 = np.asarray(zero) == 3
    trained, frozen = np.asarray(trained), np.asarray(frozen)
    return _scalar(np.where(zero3, 3.0 * trained * grad_bytes + 2.0 * frozen * frozen_bytes,
                            2.0 * trained * grad_bytes))


def gemm_seconds(m, n, k, peak_tflops, efficiency, half_width):
    """One (m x k) @ (k x n) matmul: 2mnk FLOPs at `efficiency` of the peak, reduced for a small
    dimension d = min(m, n, k) by d / (d + half_width): tile and wave quantization and the memory-
    bound regime leave a thin or small GEMM far below peak (NVIDIA's Matrix Multiplication
    Background guide: GEMMs narrower than a few hundred run memory-bound; CUTLASS tiles are 128-256
    wide). `half_width` is the dimension at which half the large-GEMM efficiency is reached, fitted
    on published runs (catalog/time_model.yaml)."""
    d = np.minimum(np.minimum(m, n), k)
    return 2.0 * m * n * k / (peak_tflops * 1e12 * efficiency * d / (d + half_width))


def layer_gemm_seconds(model, tokens, tp, ep, peak_tflops, efficiency, half_width, moe: bool, lora_rank=0):
    """The forward matmuls of one transformer block on one GPU, from their shapes: attention's
    projections (column-parallel, the output row-parallel over tp), the MLP (its up / gate maps
    column-parallel, down row-parallel) or, in a MoE block, the k routed experts a token goes to
    (each expert sees tokens * k * ep / experts of them) and the shared experts; with LoRA, two
    skinny rank-r matmuls beside each map."""
    tp, ep = np.asarray(tp), np.asarray(ep)

    def maps_seconds(maps, m):
        total = 0.0
        for i, (din, dout) in enumerate(maps):
            column = i < len(maps) - 1
            n, k = (dout / tp, din) if column else (dout, din / tp)
            total = total + gemm_seconds(m, n, k, peak_tflops, efficiency, half_width)
            if lora_rank:
                total = total + gemm_seconds(m, lora_rank, k, peak_tflops, efficiency, half_width) \
                    + gemm_seconds(m, n, lora_rank, peak_tflops, efficiency, half_width)
        return total

    t = maps_seconds(model.attention_maps(), tokens)
    if not moe:
        return t + maps_seconds(model.mlp_maps(model.ffn), tokens)
    per_expert = np.maximum(1.0, tokens * model.experts_per_token * ep / model.experts)
    routed = model.experts_per_token * np.asarray(tokens) / per_expert  # expert GEMMs per GPU
    t = t + routed * maps_seconds(model.mlp_maps(model.moe_ffn), per_expert)
    if model.shared_experts:
        t = t + model.shared_experts * maps_seconds(model.mlp_maps(model.moe_ffn), tokens)
    return t


def compute_seconds(model, seq, tokens, tp, pp, ep, recompute, gemm_peak_tflops, attention_peak_tflops,
                    gemm_efficiency, attention_efficiency, half_width, frozen_base=False, lora_rank=0):
    """Math of one micro-batch on one GPU of the busiest pipeline stage (`tokens` of it on this
    GPU, each attending over `seq`): every block's matmuls from their shapes (`layer_gemm_seconds`)
    run once forward and twice backward (activation and weight gradients; a frozen base has no
    weight gradients, only its adapters do), once more under full recomputation; the attention
    core (FlashAttention: QK^T and AV, 4 * s * attention_width FLOPs a token forward, half of them
    under the causal mask, 2x forward for the backward pass) at its own efficiency of the 16-bit
    peak, re-run forward under selective or full recomputation; and the output head. FP8 training
    passes the FP8 peak and efficiency for the matmuls only: attention stays in 16 bits."""
    rc = np.asarray(recompute)
    layers = stage_layers(model.layers, pp)
    moe_share = model.moe_layers / model.layers

    def forward(rank):
        dense = layer_gemm_seconds(model, tokens, tp, ep, gemm_peak_tflops, gemm_efficiency, half_width, False, rank)
        if not model.moe_layers:
            return dense
        moe = layer_gemm_seconds(model, tokens, tp, ep, gemm_peak_tflops, gemm_efficiency, half_width, True, rank)
        return dense * (1 - moe_share) + moe * moe_share

    base = forward(0)
    fwd = forward(lora_rank) if lora_rank else base
    gemms = fwd * (2.0 + (0.0 if frozen_base else 1.0) + np.where(rc == "full", 1.0, 0.0))
    if frozen_base:  # the adapters still get weight gradients
        gemms = gemms + (fwd - base)
    attn_fwd = 4.0 * np.asarray(tokens) * seq * model.attention_width / tp * 0.5
    attn_passes = 3.0 + np.where(rc == "none", 0.0, 1.0)
    attention = attn_fwd * attn_passes / (attention_peak_tflops * 1e12 * attention_efficiency)
    head = 3.0 * gemm_seconds(tokens, model.vocab / tp, model.hidden, gemm_peak_tflops, gemm_efficiency, half_width)
    return _scalar(layers * (gemms + attention) + head), _scalar(layers * attention)


def step_time(*, compute_s, attention_s, seq, micro_batch, micro_batches, hidden, layers,
              tp, pp, dp, vp=1, dp_sync_bytes, gpus_per_node,
              intra_gb_s, inter_gb_s, comm_efficiency, act_bytes=2.0,
              recompute="selective", activation_bytes_per_layer=0.0, memory_bw_gb_s=None,
              ep=1, expert_sync_bytes=0.0, moe_layers=0, experts_per_token=0, ep_overlap=False,
              dispatch_bytes=None, node_limit=None, weight_stream_bytes=0.0, cp=1, kv_width=None,
              zero=0, gather_bytes=None) -> StepTime:
    """One optimizer step under 1F1B with m micro-batches per data-parallel rank.

    compute per micro-batch = `compute_s` (`compute_seconds`: the busiest stage's math, of which
    `attention_s` is the attention core)
    step = m * (compute + tp_comm + pp_comm + ep_comm) + (p - 1)/v * (same slot) + exposed dp
    reduction. `dp_sync_bytes` (see `sync_bytes`) are reduced over all dp ranks,
    `expert_sync_bytes` over the dp/ep ranks holding the same experts. `weight_stream_bytes` is
    memory traffic per forward or backward pass that does not scale with tokens (QLoRA
    dequantizing every base weight to 16 bits before its matmul).

    Context parallelism (cp > 1; Megatron-LM's context parallel, ring attention, Liu et al. 2023):
    every GPU of a cp group takes s/cp tokens of each sequence (two chunks, so the causal mask's
    work is balanced), so all per-GPU terms see s*b/cp tokens; its attention needs every other
    rank's K and V: cp - 1 ring steps of a (s/cp)*b*kv_width/t chunk of K and V each, in the
    forward pass, and of K, V and their gradients in the backward pass, overlapped with the
    attention math (`attention_s`); the gradients are reduced over dp*cp ranks.
    """
    tp, pp, dp, vp, cp = np.asarray(tp), np.asarray(pp), np.asarray(dp), np.asarray(vp), np.asarray(cp)
    mb, m = np.asarray(micro_batch), np.asarray(micro_batches)
    tokens_mb = seq * mb / cp
    busiest = stage_layers(layers, pp)  # the pipeline runs at its fullest stage's pace
    t_math = np.asarray(compute_s)
    passes = np.where(np.asarray(recompute) == "full", 3.0, 2.0)
    t_mem = (0.0 if not memory_bw_gb_s else
             passes * (busiest * np.asarray(activation_bytes_per_layer) * act_bytes / 2.0
                       + np.asarray(weight_stream_bytes)) / (memory_bw_gb_s * GB))

    # tensor parallel: 4 all-reduce-equivalents of s*b*h per layer (+2 when the forward is re-run)
    collectives = np.where(np.asarray(recompute) == "full", 6.0, 4.0)
    tp_bw = link_bandwidth(tp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    tp_volume = 2.0 * (tp - 1) / tp * tokens_mb * hidden * act_bytes
    t_tp = np.where(tp > 1, busiest * collectives * tp_volume / tp_bw, 0.0)

    # pipeline: activations forward and their gradients backward across one stage boundary
    pp_bw = link_bandwidth(tp * pp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    t_pp = np.where(pp > 1, 2.0 * vp * tokens_mb * hidden * act_bytes / tp / pp_bw, 0.0)

    # expert parallel: dispatch + combine all-to-alls, forward and backward (+ forward re-run)
    t_a2a = stage_layers(moe_layers, pp) * all_to_all_time(
        tokens_mb / tp, hidden, experts_per_token, tp, ep, gpus_per_node, intra_gb_s, inter_gb_s,
        comm_efficiency, act_bytes, dispatch_bytes, node_limit, recompute)
    t_a2a = np.where(ep_overlap, np.maximum(0.0, t_a2a - t_math), t_a2a)

    # context parallel: K and V (and their gradients backward) around the ring, per layer
    kv = hidden if kv_width is None else kv_width
    cp_bw = link_bandwidth(tp * cp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    ring = (cp - 1) * tokens_mb * 2.0 * kv * act_bytes / tp * (1.0 + 2.0)  # forward K,V; backward K,V,dK,dV
    t_attn = np.asarray(attention_s)
    t_cp = np.where(cp > 1, np.maximum(0.0, busiest * ring / cp_bw - t_attn), 0.0)

    # data parallel: gradient all-reduce (ZeRO-3: 1.5x), overlapped with the last backward pass;
    # the group's dp*cp ranks are tp apart (the pipeline's stages outside it) and use every NIC
    # of the nodes they span (collective_bandwidth)
    dp = dp * cp  # context-parallel ranks hold the same weights: gradients reduce over dp*cp
    dp_bw = collective_bandwidth(dp, tp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    edp = dp / ep
    t_dp = (np.where(dp > 1, (dp - 1) / dp * np.asarray(dp_sync_bytes), 0.0)
            + np.where(edp > 1, (edp - 1) / edp * np.asarray(expert_sync_bytes), 0.0)) / dp_bw
    backward_window = 2.0 / 3.0 * t_math
    t_dp_exposed = np.maximum(0.0, t_dp - backward_window)
    # FSDP / ZeRO-3 without a pipeline gathers the weights and reduce-scatters the gradients layer by
    # layer in every micro-batch, prefetching the next layer's behind the current one's forward and
    # backward math: what the micro-batch's math cannot hide is exposed, m times. (With a pipeline
    # the stage stays gathered and reduces once, on the last micro-batch: as ZeRO-1/2, above.)
    per_layer = (np.asarray(zero) == 3) & (pp == 1)
    # FSDP's no_sync (--grad-sync step) reduce-scatters the gradients in the last micro-batch only:
    # the others move `gather_bytes` (the weights' all-gathers: over dp, and the experts' over dp/ep)
    if gather_bytes is None:
        t_dp_exposed = np.where(per_layer, m * np.maximum(0.0, t_dp - t_math), t_dp_exposed)
    else:
        t_gather = (np.where(dp > 1, (dp - 1) / dp * np.asarray(gather_bytes[0]), 0.0)
                    + np.where(edp > 1, (edp - 1) / edp * np.asarray(gather_bytes[1]), 0.0)) / dp_bw
        t_dp_exposed = np.where(per_layer, (m - 1) * np.maximum(0.0, t_gather - t_math)
                                + np.maximum(0.0, t_dp - t_math), t_dp_exposed)

    slot = t_math + t_tp + t_pp + t_a2a + t_cp
    return StepTime(
        compute=_scalar(m * t_math),
        memory=_scalar(m * t_mem),
        bubble=_scalar((pp - 1) / vp * slot),
        tp_comm=_scalar(m * t_tp),
        pp_comm=_scalar(m * t_pp),
        dp_comm_exposed=_scalar(t_dp_exposed),
        ep_comm=_scalar(m * t_a2a),
        cp_comm=_scalar(m * t_cp),
    )


BATCH_ROUNDING = 1.10  # DP x micro-batch may round the global batch up by at most 10% (the planner's rule)


def micro_batches_per_step(global_batch_seqs, dp, micro_batch):
    """m = ceil(global batch / (dp * micro-batch)): each data-parallel rank's accumulation steps.
    When the global batch does not divide, the effective batch rounds up to m * dp * b."""
    return _scalar(np.ceil(global_batch_seqs / (np.asarray(dp) * np.asarray(micro_batch))))
