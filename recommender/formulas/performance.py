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
- ZeRO-3 moves 1.5x the data of ZeRO-0/1/2 (Rajbhandari et al. 2020, Sec. 7.2.2).
- Memory-bound elementwise work (norms, residuals, activation functions, dropout) is timed as a
  roofline term: every activation Korthikanti et al. 2022 count as stored is written once in the
  forward pass and read once in the backward pass (and written again when the forward is
  recomputed), at the device's memory bandwidth. Matmul FLOPs run at the calibrated efficiency.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.formulas.compute import _scalar

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

    @property
    def total(self):
        return self.compute + self.memory + self.bubble + self.tp_comm + self.pp_comm + self.dp_comm_exposed


def link_bandwidth(group_span, gpus_per_node, intra_gb_s, inter_gb_s):
    """Bytes/s one GPU can push to its group: intra-node links if the group fits in a node."""
    return _scalar(np.where(np.asarray(group_span) <= gpus_per_node, intra_gb_s, inter_gb_s) * GB)


def step_time(*, hardware_flops_per_token, seq, micro_batch, micro_batches, hidden, layers,
              tp, pp, dp, zero, vp=1, params_per_gpu, peak_tflops, efficiency, gpus_per_node,
              intra_gb_s, inter_gb_s, comm_efficiency, act_bytes=2.0, grad_bytes=2.0,
              recompute="selective", activation_bytes_per_layer=0.0, memory_bw_gb_s=None) -> StepTime:
    """One optimizer step under 1F1B with m micro-batches per data-parallel rank.

    compute per micro-batch = FLOPs(tokens in it) / (tp * pp) / (peak * efficiency)
    step = m * (compute + tp_comm + pp_comm) + (p - 1)/v * (same slot) + exposed dp reduction.
    """
    tp, pp, dp, vp = np.asarray(tp), np.asarray(pp), np.asarray(dp), np.asarray(vp)
    mb, m = np.asarray(micro_batch), np.asarray(micro_batches)
    tokens_mb = seq * mb
    t_math = hardware_flops_per_token * tokens_mb / (tp * pp) / (peak_tflops * 1e12 * efficiency)
    passes = np.where(np.asarray(recompute) == "full", 3.0, 2.0)
    t_mem = (0.0 if not memory_bw_gb_s else
             passes * layers / pp * np.asarray(activation_bytes_per_layer) * act_bytes / 2.0 / (memory_bw_gb_s * GB))

    # tensor parallel: 4 all-reduce-equivalents of s*b*h per layer (+2 when the forward is re-run)
    collectives = np.where(np.asarray(recompute) == "full", 6.0, 4.0)
    tp_bw = link_bandwidth(tp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    tp_volume = 2.0 * (tp - 1) / tp * tokens_mb * hidden * act_bytes
    t_tp = np.where(tp > 1, layers / pp * collectives * tp_volume / tp_bw, 0.0)

    # pipeline: activations forward and their gradients backward across one stage boundary
    pp_bw = link_bandwidth(tp * pp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    t_pp = np.where(pp > 1, 2.0 * vp * tokens_mb * hidden * act_bytes / tp / pp_bw, 0.0)

    # data parallel: gradient all-reduce (ZeRO-3: 1.5x), overlapped with the last backward pass
    dp_bw = link_bandwidth(tp * pp * dp, gpus_per_node, intra_gb_s, inter_gb_s) * comm_efficiency
    factor = np.where(np.asarray(zero) == 3, 3.0, 2.0)
    t_dp = np.where(dp > 1, factor * (dp - 1) / dp * params_per_gpu * grad_bytes / dp_bw, 0.0)
    backward_window = 2.0 / 3.0 * t_math
    t_dp_exposed = np.maximum(0.0, t_dp - backward_window)

    slot = t_math + t_tp + t_pp
    return StepTime(
        compute=_scalar(m * t_math),
        memory=_scalar(m * t_mem),
        bubble=_scalar((pp - 1) / vp * slot),
        tp_comm=_scalar(m * t_tp),
        pp_comm=_scalar(m * t_pp),
        dp_comm_exposed=_scalar(t_dp_exposed),
    )


def micro_batches_per_step(global_batch_seqs, dp, micro_batch):
    """m = ceil(global batch / (dp * micro-batch)): each data-parallel rank's accumulation steps.
    When the global batch does not divide, the effective batch rounds up to m * dp * b."""
    return _scalar(np.ceil(global_batch_seqs / (np.asarray(dp) * np.asarray(micro_batch))))
