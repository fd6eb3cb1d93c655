"""Speculative decoding's modelled speedup against published ones (nothing here is fitted).

    python benchmarks/spec_published.py

Rows with the acceptance the model needs published beside the speedup: EAGLE (Li, Wei, Zhang and
Zhang 2024, "EAGLE: Speculative Sampling Requires Rethinking Feature Uncertainty", arXiv
2401.15077v3): LLaMA2-Chat 70B on 4 A100 40GB, MT-bench, temperature 0, average acceptance
length tau 3.81 (Table 2), speedup 3.01x at batch 1 and 2.40x at batch 4 (Table 7); the draft is
a tree of depth 5. gpuplan verifies a chain: K = 5 drafted tokens, the per-token acceptance a
whose E = (1 - a^6) / (1 - a) is the published tau. The speedup is the full-slot decode time per
token without speculation over that with it (TP4, bf16, the batch as the slot cap).
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from recommender import catalog  # noqa: E402
from recommender.formulas import serving as sv  # noqa: E402
from recommender.serving import ServeLayout, ServeWorkload, evaluate_serving  # noqa: E402

# (label, model, accelerator, tp, precision, draft, drafted tokens, published tau, batch, published speedup)
ROWS = [
    ("EAGLE, LLaMA2-Chat 70B, 4x A100 40GB, MT-bench", "llama-2-70b", "a100-40g", 4, "bf16", "eagle", 5, 3.81, 1, 3.01),
    ("EAGLE, LLaMA2-Chat 70B, 4x A100 40GB, MT-bench", "llama-2-70b", "a100-40g", 4, "bf16", "eagle", 5, 3.81, 4, 2.40),
]


def accept_for(tau: float, k: int) -> float:
    """The per-token acceptance a with spec_tokens_per_step(a, k) = tau (it rises with a)."""
    lo, hi = 1e-6, 1 - 1e-9
    for _ in range(100):
        mid = 0.5 * (lo + hi)
        lo, hi = (mid, hi) if sv.spec_tokens_per_step(mid, k) < tau else (lo, mid)
    return 0.5 * (lo + hi)


def main() -> None:
    print("| run | batch | tau | a (chain of K) | speedup model / published | error |")
    print("|---|---|---|---|---|---|")
    for label, model, acc, tp, prec, draft, k, tau, batch, published in ROWS:
        a = accept_for(tau, k)
        base = dict(model=catalog.model(model), prompt_tokens=128, output_tokens=512, rate_rps=0.001, ttft_s=100.0,
                    tpot_s=10.0, max_seqs=batch)
        lay = dict(accelerator=acc, tp=tp, precision=prec, kv_precision=prec, replicas=1, batch=batch)
        plain = evaluate_serving(ServeWorkload(**base), ServeLayout(**lay))
        spec = evaluate_serving(ServeWorkload(**base, draft=draft, draft_tokens=k, draft_accept=a),
                                ServeLayout(**lay, speculative=True))
        model_speedup = plain.decode_step_ms / spec.decode_step_ms
        print(f"| {label} | {batch} | {tau:g} | {a:.3f} (K {k}) | {model_speedup:.2f} / {published:.2f} | "
              f"{model_speedup / published - 1:+.0%} |")


if __name__ == "__main__":
    np.seterr(all="ignore")
    main()
