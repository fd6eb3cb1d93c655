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

    @property
    def total(self):
        return (self.compute + self.memory + self.bubble + self.tp_comm + self.pp_comm + self.dp_comm_exposed
                + self.ep_comm)


def link_bandwidth(group_span, gpus_per_node, intra_gb_s, inter_gb_s):
    """Bytes/s one GPU can push to its group: intra-node links if the group fits in a node."""
    return _scalar(np.where(np.asarray(group_span) <= gpus_per_node, intra_gb_s, inter_gb_s) * GB)


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


def step_time(*, hardware_flops_per_token, seq, micro_batch, micro_batches, hidden, layers,
              tp, pp, dp, vp=1, dp_sync_bytes, peak_tflops, efficiency, gpus_per_node,
              intra_gb_s, inter_gb_s, comm_efficiency, act_bytes=2.0,
              recompute="selective", activation_bytes_per_layer=0.0, memory_bw_gb_s=None,
              ep=1, expert_sync_bytes=0.0, moe_layers=0, experts_per_token=0, ep_overlap=False,
              dispatch_bytes=None, node_limit=None, weight_stream_bytes=0.0) -> StepTime:
    """One optimizer step under 1F1B with m micro-batches per data-parallel rank.

    compute per micro-batch = FLOPs(tokens in it) / (tp * pp) / (peak * efficiency)
    step = m * (compute + tp_comm + pp_comm + ep_comm) + (p - 1)/v * (same slot) + exposed dp
    reduction. `dp_sync_bytes` (see `sync_bytes`) are reduced over all dp ranks,
    `expert_sync_bytes` over the dp/ep ranks holding the same experts. `weight_stream_bytes` is
    memory traffic per forward or backward pass that does not scale with tokens (QLoRA
    dequantizing every base weight to 16 bits before its matmul).
    """
    tp, pp, dp, vp = np.asarray(tp), np.asarray(pp), np.asarray(dp), np.asarray(vp)
    mb, m = np.asarray(micro_batch), np.asarray(micro_batches)
    tokens_mb = seq * mb
    busiest = stage_layers(layers, pp)  # the pipeline runs at its fullest stage's pace
    t_math = (hardware_flops_per_token * tokens_mb / (tp * pp) * (busiest * pp / layers)
              / (peak_tflops * 1e12 * efficiency))
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

    # data parallel: gradient all-reduce (ZeRO-3: 1.5x), overlapped with the last backward pass
    dp_bw = link_bandwidth(tp * pp * dp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    edp = dp / ep
    t_dp = (np.where(dp > 1, (dp - 1) / dp * np.asarray(dp_sync_bytes), 0.0)
            + np.where(edp > 1, (edp - 1) / edp * np.asarray(expert_sync_bytes), 0.0)) / dp_bw
    backward_window = 2.0 / 3.0 * t_math
    t_dp_exposed = np.maximum(0.0, t_dp - backward_window)

    slot = t_math + t_tp + t_pp + t_a2a
    return StepTime(
        compute=_scalar(m * t_math),
        memory=_scalar(m * t_mem),
        bubble=_scalar((pp - 1) / vp * slot),
        tp_comm=_scalar(m * t_tp),
        pp_comm=_scalar(m * t_pp),
        dp_comm_exposed=_scalar(t_dp_exposed),
        ep_comm=_scalar(m * t_a2a),
    )


def micro_batches_per_step(global_batch_seqs, dp, micro_batch):
    """m = ceil(global batch / (dp * micro-batch)): each data-parallel rank's accumulation steps.
    When the global batch does not divide, the effective batch rounds up to m * dp * b."""
    return _scalar(np.ceil(global_batch_seqs / (np.asarray(dp) * np.asarray(micro_batch))))
