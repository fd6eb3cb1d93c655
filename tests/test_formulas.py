"""The formulas against published figures (each expected value cites where it comes from)."""

import numpy as np
import pytest
from hypothesis import given, strategies as st

from recommender import catalog
from recommender.formulas import compute, cost, memory


# -- compute ---------------------------------------------------------------------------------

def test_gpt3_training_compute_is_3_14e23():
    """Brown et al. 2020, Table D.1: GPT-3 175B trained on 300B tokens, 3.14e23 FLOPs, 3,640 PF-days."""
    gpt3 = catalog.model("gpt-3-175b")
    flops = compute.kaplan_6nd(gpt3.matmul_params, 300e9)
    assert flops == pytest.approx(3.14e23, rel=0.005)
    assert compute.pf_days(flops) == pytest.approx(3640, rel=0.005)


def test_palm_attention_term_and_recompute():
    """PaLM App. B: 6N + 12*L*H*Q*T; selective recompute adds 4LHQT, full adds 2N + 4LHQT."""
    n, L, hq, t = 1e9, 24, 2048, 2048
    f = compute.flops_per_token(n, L, hq, t, "none")
    assert f.model == 6 * n + 12 * L * hq * t
    assert f.hardware == f.model
    assert compute.flops_per_token(n, L, hq, t, "selective").recompute == 4 * L * hq * t
    assert compute.flops_per_token(n, L, hq, t, "full").hardware == 8 * n + 16 * L * hq * t


def test_flops_vectorize_over_recompute_modes():
    f = compute.flops_per_token(1e9, 24, 2048, 2048, np.array(["none", "selective", "full"]))
    assert list(f.recompute) == [0.0, 4 * 24 * 2048 * 2048, 2e9 + 4 * 24 * 2048 * 2048]


def test_moe_flops_use_active_params():
    """Mixtral 8x7B: 46.7B total, 12.9B active (Mistral AI announcement); 6ND uses active."""
    mx = catalog.model("mixtral-8x7b")
    assert mx.active_params == pytest.approx(12.9e9, rel=0.02)
    f = compute.flops_per_token(mx.matmul_params, mx.layers, mx.attention_width, 4096, "none")
    assert f.dense == pytest.approx(6 * 12.9e9, rel=0.03)
    assert f.dense < 6 * mx.total_params / 3


# -- model states (ZeRO) ---------------------------------------------------------------------

@pytest.mark.parametrize("stage,gb", [(0, 120), (1, 31.4), (2, 16.6), (3, 1.9)])
def test_zero_paper_7_5b_on_64_gpus(stage, gb):
    """Rajbhandari et al. 2020, Fig. 1: 7.5B params, Nd = 64, K = 12: 120 / 31.4 / 16.6 / 1.9 GB."""
    states = memory.model_states(7.5e9, "fp16", zero=stage, dp=64)
    assert round(states.total / 1e9, 1) == gb


def test_seed_table_7b_fp16_weights_14gb():
    """A 7B model's fp16 weights take 14 GB (2 bytes per parameter)."""
    assert memory.model_states(7e9, "bf16").weights == 14e9


def test_seed_table_1b_fp32_adam_16gb():
    """1B parameters trained in fp32 with Adam: weights 4 + grads 4 + m 4 + v 4 = 16 GB."""
    assert memory.model_states(1e9, "fp32").total == 16e9


@given(st.integers(1, 1024), st.sampled_from(["bf16", "fp32"]))
def test_zero_stages_never_increase_memory(dp, precision):
    totals = [memory.model_states(1e9, precision, z, dp).total for z in range(4)]
    assert totals == sorted(totals, reverse=True)


# -- activations (Korthikanti et al. 2022, Table 2) --------------------------------------------

# GPT-3 175B shape (Korthikanti Table 3): a = 96, h = 12288, s = 2048; micro-batch 1, t = 8
S, B, H, A, T = 2048, 1, 12288, 96, 8
KW = dict(hidden=H, heads=A, ffn=4 * H, attention="eager")  # the paper's attention stores its scores


def test_korthikanti_no_parallelism():
    expected = S * B * H * (34 + 5 * A * S / H)
    assert memory.activation_bytes_per_layer(S, B, tp=1, recompute="none", **KW) == pytest.approx(expected)


def test_korthikanti_tensor_parallel_without_sp():
    expected = S * B * H * (10 + 24 / T + 5 * A * S / (H * T))
    got = memory.activation_bytes_per_layer(S, B, tp=T, recompute="none", sequence_parallel=False, **KW)
    assert got == pytest.approx(expected)


def test_korthikanti_tensor_and_sequence_parallel():
    expected = S * B * H / T * (34 + 5 * A * S / H)
    assert memory.activation_bytes_per_layer(S, B, tp=T, recompute="none", **KW) == pytest.approx(expected)


def test_korthikanti_selective_recompute():
    expected = S * B * H / T * 34
    assert memory.activation_bytes_per_layer(S, B, tp=T, recompute="selective", **KW) == pytest.approx(expected)


def test_korthikanti_full_recompute():
    assert memory.activation_bytes_per_layer(S, B, tp=T, recompute="full", **KW) == pytest.approx(2 * S * B * H / T)
    assert memory.activation_bytes_per_layer(S, B, tp=1, recompute="full", **KW) == pytest.approx(2 * S * B * H)


def test_korthikanti_gpt3_total_selective_fits_paper_figure():
    """Korthikanti Fig. 7 / Sec. 6.1: GPT-3 175B, t = 8, p = 8 with SP + selective recompute
    stores about 34*s*b*h*L/t bytes on the first stage: 34 * 2048 * 12288 * 96 / 8 = 10.3 GB."""
    per_layer = memory.activation_bytes_per_layer(S, B, tp=T, recompute="selective", **KW)
    assert per_layer * 96 / 1e9 == pytest.approx(34 * S * B * H * 96 / T / 1e9)


def test_gqa_shrinks_activations():
    mha = memory.activation_bytes_per_layer(S, B, tp=1, recompute="selective", kv_heads=A, **KW)
    gqa = memory.activation_bytes_per_layer(S, B, tp=1, recompute="selective", kv_heads=8, **KW)
    assert gqa < mha


# -- memory model v2: flash attention, pipeline stages, logits, FSDP, CP, framework ----------

FLASH = dict(hidden=H, heads=A, ffn=4 * H)  # attention="flash" is the default


def test_flash_attention_stores_no_scores_only_the_softmax_statistics():
    """FlashAttention keeps the output and one fp32 logsumexp per head and token: 34*s*b*h/t
    plus 4*a*s*b/t, with no a*s^2 term, whatever the recomputation short of full."""
    expected = S * B * H / T * 34 + 4 * A * S * B / T
    for rc in ("none", "selective"):
        assert memory.activation_bytes_per_layer(S, B, tp=T, recompute=rc, **FLASH) == pytest.approx(expected)
    # eager attention at 32k stores the scores: 5*a*s^2*b/t more bytes per layer
    s = 32768
    eager = memory.activation_bytes_per_layer(s, B, tp=T, recompute="none", **KW)
    flash = memory.activation_bytes_per_layer(s, B, tp=T, recompute="none", **FLASH)
    assert eager - flash == pytest.approx(5 * A * s * s * B / T - 4 * A * s * B / T)


def test_context_parallel_shards_the_sequence():
    """cp = 4 keeps a quarter of every activation: the per-layer bytes at s/4."""
    whole = memory.activation_bytes_per_layer(S, B, tp=T, recompute="selective", **FLASH)
    shard = memory.activation_bytes_per_layer(S, B, tp=T, recompute="selective", cp=4, **FLASH)
    assert shard == pytest.approx(whole / 4)
    assert memory.activation_bytes_per_layer(S * 4, B, tp=T, recompute="selective", cp=4, **FLASH) == pytest.approx(whole)


@pytest.mark.parametrize("p,m,v,stage,expected", [
    (4, 8, 1, 0, 4), (4, 8, 1, 3, 1), (4, 8, 1, 1, 3),  # 1F1B: p - r
    (8, 2, 1, 0, 2),                                     # fewer micro-batches than stages
    (1, 16, 1, 0, 1),                                    # no pipeline
    (4, 8, 2, 0, (3 * 2 + 4 + 1) / 2),                   # interleaved, first stage: 5.5 = 4 * (1 + 3/8)
    (4, 8, 2, 3, (0 + 4 + 1) / 2),                       # interleaved, last stage: 2.5
])
def test_pipeline_micro_batches_in_flight(p, m, v, stage, expected):
    """Megatron-LM's warm-up counts, by hand: 1F1B stage r holds min(p - r, m); interleaved
    ((p - r - 1) * 2 + (v - 1) * p + 1) / v, Korthikanti's p * (1 + (p - 1)/(p v)) on stage 0."""
    assert memory.in_flight(p, m, v, stage) == pytest.approx(expected)
    if v > 1 and stage == 0:
        assert expected == pytest.approx(p * (1 + (p - 1) / (p * v)))


def _tiny(vocab, tied=False):
    from recommender.spec import ModelSpec
    return ModelSpec(id="t", name="t", layers=16, hidden=1024, heads=16, kv_heads=16, ffn=4096, vocab=vocab,
                     seq_len=4096, mlp="plain", tied_embeddings=tied)


def test_logits_buffer_by_hand_and_it_sits_on_the_last_stage():
    """10 bytes per logit (bf16 head output, fp32 copy, fp32 gradient) x s x b x V / t. With a
    151,936 vocabulary at hidden 1,024 the last stage's logits outweigh the first stage's
    extra in-flight micro-batches, so the last stage is the busiest."""
    m = _tiny(151936)
    s, b, t, p = 4096, 1, 2, 4
    terms = memory.activation_terms(m, s, b, t, p, "full", micro_batches=8)
    assert terms.logits == pytest.approx(10 * s * b * 151936 / t)
    per_layer_kept = 2 * s * b * 1024 / t  # full recomputation keeps the layer input
    assert terms.stored == pytest.approx(4 * per_layer_kept * 1)  # last stage: 4 layers, 1 micro-batch
    # a small vocabulary: the first stage, with p micro-batches in flight and no logits, is busiest
    small = memory.activation_terms(_tiny(1024), s, b, t, p, "selective", micro_batches=8)
    assert small.logits == 0.0
    per_layer = memory.activation_bytes_per_layer(s, b, 1024, 16, 4096, 16, False, t, "selective", dropout=False)
    assert small.stored == pytest.approx(4 * per_layer * 4)


def test_no_dropout_stores_no_masks():
    """Without dropout (Llama, Qwen, MPT) the two 1-byte masks per token and channel are not
    stored: 2*s*b*h/t less per layer under SP; under eager attention the scores term is 2*a*s/h
    (the softmax output) instead of 5*a*s/h."""
    with_masks = memory.activation_bytes_per_layer(S, B, tp=T, recompute="selective", **FLASH)
    without = memory.activation_bytes_per_layer(S, B, tp=T, recompute="selective", dropout=False, **FLASH)
    assert with_masks - without == pytest.approx(2 * S * B * H / T)
    eager = memory.activation_bytes_per_layer(S, B, tp=T, recompute="none", dropout=False, **KW)
    assert eager == pytest.approx(S * B * H / T * (32 + 2 * A * S / H))


def test_fsdp_working_set_by_hand():
    """ZeRO-3: two blocks and the root (embedding + head) gathered in 16 bits, plus the larger of
    a block's and the root's gradients; nothing for ZeRO 0-2."""
    m = _tiny(32000)
    layer = (m.total_params - m.embedding_params) / 16
    root = m.embedding_params
    assert root == 2 * 32000 * 1024  # untied: embedding and head
    got = memory.zero3_working_bytes(m, 1, 1, 3)
    assert got == pytest.approx((2 * layer + root) * 2 + max(layer, root) * 2)
    assert memory.zero3_working_bytes(m, 1, 1, 1) == 0.0
    # a frozen base (LoRA) gathers weights but reduces no base gradients
    assert memory.zero3_working_bytes(m, 1, 1, 3, grad_bytes=0.0) == pytest.approx((2 * layer + root) * 2)


def test_zero2_bucket_is_capped_at_5e8_elements():
    assert memory.zero2_bucket_bytes(7e9, 2) == pytest.approx(5e8 * 2)
    assert memory.zero2_bucket_bytes(1e8, 2) == pytest.approx(1e8 * 2)
    assert memory.zero2_bucket_bytes(7e9, 1) == 0.0


def test_bf16_keeps_fp32_gradients_below_zero3():
    """Megatron-LM's table: bf16 params with fp32 grads, 18 bytes a parameter, 6 + 12/d with the
    distributed optimizer (ZeRO-1); ZeRO-3 shards 16 bytes."""
    assert memory.model_states(1e9, "bf16", 0, 8).total == pytest.approx(18e9)
    assert memory.model_states(1e9, "bf16", 1, 8).total == pytest.approx(6e9 + 12e9 / 8)
    assert memory.model_states(1e9, "bf16", 3, 8).total == pytest.approx(16e9 / 8)


def test_framework_memory_counts_one_communicator_per_parallel_group():
    g = memory.GIB
    assert memory.framework_bytes(1, 1, 1, 1, 1, 0.5, 0.64, 3.05) == pytest.approx(0.5 * g)
    assert memory.framework_bytes(8, 4, 16, 1, 1, 0.5, 0.64, 3.05) == pytest.approx((0.5 + 3 * 0.64) * g)
    assert memory.framework_bytes(1, 1, 64, 8, 1, 0.5, 0.64, 3.05) == pytest.approx((0.5 + 0.64 + 3.05) * g)


# -- KV cache ---------------------------------------------------------------------------------

def test_opt_13b_kv_cache_800kb_per_token():
    """Kwon et al. 2023 (vLLM), Sec. 3: OPT-13B holds 800 KB of KV cache per token
    (2 (K, V) x 5120 hidden x 40 layers x 2 bytes = 819,200 B = 800 KiB)."""
    assert catalog.model("opt-13b").kv_bytes_per_token(2) == 819_200


# -- cost --------------------------------------------------------------------------------------

def test_cloud_cost_is_gpu_hours_times_price():
    """DeepSeek-V3 report: 2.788M H800 GPU-hours at $2/GPU-hour = $5.576M."""
    days = 2.788e6 / 2048 / 24
    assert cost.cloud_cost(2048, days, 2.0).total == pytest.approx(5.576e6)


def test_buy_cost_components_by_hand():
    c = cost.buy_cost(count=8, days=365, system_price_per_gpu=40_000, tdp_w=700, pue=1.5, usd_per_kwh=0.1,
                      colo_usd_per_kw_month=200, useful_life_years=5)
    assert c.capex == pytest.approx(8 * 40_000 / 5)
    assert c.energy == pytest.approx(8 * 0.7 * 1.5 * 365 * 24 * 0.1)
    assert c.operations == pytest.approx(8 * 0.7 * 200 * 12)
    full = cost.buy_cost(8, 365, 40_000, 700, 1.5, 0.1, 200, 5, amortize=False)
    assert full.capex == 8 * 40_000
    owned = cost.buy_cost(8, 365, 40_000, 700, 1.5, 0.1, 200, 5, owned=True)
    assert owned.capex == 0 and owned.energy == c.energy
