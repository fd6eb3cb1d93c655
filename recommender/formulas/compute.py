"""Training compute: model FLOPs (what MFU counts) and hardware FLOPs (what the GPU executes).

Sources:
- Kaplan et al. 2020, "Scaling Laws for Neural Language Models", Sec. 2.1: C = 6 N D.
- Chowdhery et al. 2022, "PaLM", App. B: model FLOPs per token = 6 N + 12 L H Q T.
- Korthikanti et al. 2022, "Reducing Activation Recomputation", Sec. 5: selective recomputation
  re-runs the attention core; full recomputation re-runs the whole forward pass.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

SECONDS_PER_DAY = 86400.0
PETAFLOP_DAY = 1e15 * SECONDS_PER_DAY  # 8.64e19 FLOPs (Brown et al. 2020, Table D.1 unit)


@dataclass(frozen=True)
class FlopsPerToken:
    """FLOPs per training token, split by where they come from."""

    dense: float           # 6 N_matmul: forward (2N) + backward (4N)
    attention: float       # 12 L H Q T: QK^T and AV, forward and backward
    recompute: object      # extra forward work re-done under activation recomputation

    @property
    def model(self) -> float:
        return self.dense + self.attention

    @property
    def hardware(self):
        return self.model + self.recompute


def flops_per_token(matmul_params: float, layers: int, attention_width: int, seq_len: int,
                    recompute="selective", weight_grad_params: float | None = None) -> FlopsPerToken:
    """PaLM App. B: 6N + 12 L H Q T per token; recomputation adds forward work (hardware only).

    6N is 2N forward + 2N for the activations' gradients + 2N for the weights' gradients. Only the
    `weight_grad_params` (default: all N) get weight gradients: a frozen base under LoRA still
    propagates activation gradients to the adapters below it, so LoRA costs 4N + 2A with N
    including the adapters A (Hu et al. 2021; the QLoRA paper, Dettmers et al. 2023, Sec. 3).

    Selective recomputation re-runs the attention core forward (4 L H Q T, one third of the
    attention term); full recomputation re-runs the whole forward (2N + 4 L H Q T).
    `recompute` may be an array of 'none' / 'selective' / 'full'.
    """
    grads = matmul_params if weight_grad_params is None else weight_grad_params
    dense = 4.0 * matmul_params + 2.0 * grads
    attn_fwd = 4.0 * layers * attention_width * seq_len
    rc = np.asarray(recompute)
    extra = np.where(rc == "full", 2.0 * matmul_params + attn_fwd,
                     np.where(rc == "selective", attn_fwd, 0.0))
    return FlopsPerToken(dense=dense, attention=3.0 * attn_fwd, recompute=_scalar(extra))


def kaplan_6nd(params: float, tokens: float) -> float:
    """Kaplan et al. 2020: C = 6 N D (the figure most papers quote, e.g. GPT-3's 3.14e23)."""
    return 6.0 * params * tokens


def pf_days(flops):
    """FLOPs -> petaflop/s-days (1 PF-day = 1e15 FLOP/s x 86,400 s)."""
    return flops / PETAFLOP_DAY


def _scalar(x):
    arr = np.asarray(x)
    return arr.item() if arr.ndim == 0 else arr
