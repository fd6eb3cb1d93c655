"""Serving formulas against hand-computed values and published figures, and the evaluator's rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from recommender import catalog
from recommender.errors import GpuplanError
from recommender.formulas import serving as sv
from recommender.formulas.memory import GIB
from recommender.serving import ServeLayout, ServeWorkload, evaluate_serving

A100 = dict(memory_bw_gb_s=2039.0, peak_tflops=312.0)


def test_kv_cache_per_token_llama2_70b():
    # 2 (K and V) x 80 layers x 8 KV heads x 128 head size x 2 bytes
    assert catalog.model("llama-2-70b").kv_bytes_per_token(2.0) == 2 * 80 * 8 * 128 * 2 == 327_680


def test_kv_cache_splits_over_tp_only_as_far_as_kv_heads():
    m = catalog.model("llama-2-70b")  # 8 KV heads
    assert sv.kv_shards(m, 4) == 4 and sv.kv_shards(m, 8) == 8 and sv.kv_shards(m, 16) == 8
    assert sv.kv_shards(catalog.model("deepseek-v3-671b"), 8) == 1  # MLA latent kept whole on each rank


def test_experts_touched_expected_value():
    m = catalog.model("mixtral-8x7b")  # 8 experts, top-2
    assert sv.experts_touched(m, 1) == pytest.approx(2.0)
    # two tokens: 8 * (1 - (6/8)^2) = 3.5 distinct experts on average
    assert sv.experts_touched(m, 2) == pytest.approx(3.5)
    assert sv.experts_touched(m, 1000) == pytest.approx(8.0)


def test_moe_memory_holds_all_experts_compute_uses_active():
    m = catalog.model("mixtral-8x7b")
    weights = sv.weight_bytes(m, "bf16", 1, 1)
    assert weights == pytest.approx(m.total_params * 2, rel=1e-9)
    dec = sv.decode_stage_time(m, "bf16", "bf16", 1, 0, 1, 1, peak_tflops=1.0, efficiency=1.0,
                               memory_bw_gb_s=1.0, bw_efficiency=1.0, tp_bw_gb_s=1.0, pp_bw_gb_s=1.0,
                               comm_efficiency=1.0, allreduce_latency_s=0.0)
    # compute at context 0: 2 x active matmul parameters, at 1 TFLOP/s
    assert dec.compute == pytest.approx(2 * m.matmul_params / 1e12)
    assert m.matmul_params < 0.35 * m.total_params  # ~13B active of ~47B
    # memory: one token reads its 2 experts per layer, not all 8
    skipped = (8 - 2) * m.moe_layers * m.expert_params
    assert dec.memory == pytest.approx((m.total_params - m.embedding_params - m.hidden - skipped
                                        + m.vocab * m.hidden) * 2 / 1e9)


def test_decode_at_batch_1_is_memory_bound_by_hand():
    m = catalog.model("llama-2-7b")  # 32 layers, 32 KV heads of 128: 524,288 bytes of KV per token
    ctx = 1000
    dec = sv.decode_stage_time(m, "bf16", "bf16", 1, ctx, 1, 1, efficiency=0.5, bw_efficiency=0.8,
                               tp_bw_gb_s=1.0, pp_bw_gb_s=1.0, comm_efficiency=1.0, allreduce_latency_s=0.0,
                               **A100)
    blocks = m.total_params - m.embedding_params - m.hidden
    read = blocks * 2 + m.vocab * m.hidden * 2 + ctx * 524_288
    assert dec.memory == pytest.approx(read / (2039e9 * 0.8))
    flops = 2 * m.matmul_params + 4 * 32 * 4096 * ctx
    assert dec.compute == pytest.approx(flops / (312e12 * 0.5))
    assert dec.memory > 20 * dec.compute  # bandwidth bound by a wide margin
    assert dec.tp_comm == 0 and dec.pp_comm == 0


def test_decode_turns_compute_bound_at_large_batch():
    m = catalog.model("llama-2-7b")
    kw = dict(efficiency=0.5, bw_efficiency=0.8, tp_bw_gb_s=1.0, pp_bw_gb_s=1.0, comm_efficiency=1.0,
              allreduce_latency_s=0.0, **A100)
    small = sv.decode_stage_time(m, "bf16", "bf16", 1, 10, 1, 1, **kw)
    large = sv.decode_stage_time(m, "bf16", "bf16", 512, 10, 1, 1, **kw)
    assert small.memory > small.compute and large.compute > large.memory


def test_tp_all_reduce_latency_and_volume():
    m = catalog.model("llama-2-70b")  # 80 layers, hidden 8192
    dec = sv.decode_stage_time(m, "bf16", "bf16", 4, 100, 8, 1, peak_tflops=1e3, efficiency=1.0,
                               memory_bw_gb_s=1e3, bw_efficiency=1.0, tp_bw_gb_s=100.0, pp_bw_gb_s=1.0,
                               comm_efficiency=0.5, allreduce_latency_s=10e-6)
    per = 10e-6 + 2 * 7 / 8 * 4 * 8192 * 2 / 50e9  # ring all-reduce of b*h 16-bit values
    assert dec.tp_comm == pytest.approx(80 * 2 * per)


def test_prefill_flops_by_hand():
    m = catalog.model("llama-2-13b")  # 40 layers, 40 heads of 128
    p = 2000
    pre = sv.prefill_time(m, "bf16", p, 2, 1, peak_tflops=312.0, efficiency=0.5, memory_bw_gb_s=2039.0,
                          bw_efficiency=1.0, tp_bw_gb_s=1.0, pp_bw_gb_s=1.0, comm_efficiency=1.0,
                          allreduce_latency_s=0.0)
    flops = 2 * m.matmul_params * p + 2 * 40 * 5120 * p ** 2
    assert pre.compute == pytest.approx(flops / 2 / (312e12 * 0.5))
    assert pre.compute > pre.memory


def test_latency_composition():
    lat = sv.latency(decode_stage_s=0.02, prefill_s=0.1, batch=8, pp=1, output_tokens=100)
    assert lat.tpot == pytest.approx(0.02 + 8 * 0.1 / 100)       # prefills stall decode steps
    assert lat.ttft == pytest.approx(0.1 + 0.02)                 # own prefill + one step in progress
    assert lat.e2e == pytest.approx(0.12 + 99 * 0.028)
    assert lat.tokens_per_s == pytest.approx(8 / 0.028)
    piped = sv.latency(decode_stage_s=0.01, prefill_s=0.1, batch=8, pp=2, output_tokens=100)
    assert piped.tpot == pytest.approx(2 * 0.01 + 8 * 0.1 / (2 * 100))


def test_max_batch_is_the_exact_edge():
    m = catalog.model("llama-2-13b")
    kw = dict(fixed_gib=1.5, fragmentation=0.05)
    b = sv.max_batch(m, "bf16", "bf16", 4096, 1, 1, 80.0, 0.1, **kw)
    mem = lambda n: sv.serve_memory(m, "bf16", "bf16", n, 4096, 1, 1, **kw).total  # noqa: E731
    assert b > 0 and mem(b) <= 72 * GIB < mem(b + 1)
    assert sv.max_batch(catalog.model("llama-2-70b"), "bf16", "bf16", 4096, 1, 1, 80.0, 0.1, **kw) == 0


def test_chatglm2_memory_matches_its_readme():
    """THUDM/ChatGLM2-6B README: minimum GPU memory to generate 8,192 tokens is 12.8 / 8.1 / 5.1 GB
    at FP16 / INT8 / INT4 (quantized: the linear layers of the blocks; embeddings stay 16-bit)."""
    m = catalog.model("chatglm2-6b")
    for prec, published in (("bf16", 12.8), ("int8", 8.1), ("int4", 5.1)):
        mem = sv.serve_memory(m, prec, "bf16", 1, 8192, 1, 1, fixed_gib=0.0, fragmentation=0.0)
        assert mem.total / 1e9 == pytest.approx(published, rel=0.10), prec


def test_request_rate_response_time_law():
    # 1,000 users, 3 s think time, 13.75 s promised response: X = N / (R + Z)
    assert sv.request_rate(users=1000, think_time_s=3.0, response_s=13.75) == pytest.approx(1000 / 16.75)
    assert sv.request_rate(rate=20.0) == 20.0


def test_int4_keeps_16_bit_math_and_adds_group_scales():
    assert sv.MATH["int4"] == "fp16"
    assert sv.WEIGHT_BYTES["int4"] == pytest.approx(0.5 + 4 / 128)


def _w(**kw):
    base = dict(model=catalog.model("llama-2-7b"), prompt_tokens=500, output_tokens=200)
    return ServeWorkload(**(base | kw))


def test_evaluator_picks_the_largest_batch_meeting_tpot():
    w = _w(tpot_s=0.03)
    ev = evaluate_serving(w, ServeLayout(accelerator="a100-80g", tp=1))
    assert ev.meets_targets and ev.tpot_ms <= 30
    bigger = evaluate_serving(w, ServeLayout(accelerator="a100-80g", tp=1, batch=ev.batch + 1))
    assert bigger.tpot_ms > 30 or not bigger.fits or bigger.batch > ev.max_batch


def test_evaluator_offline_uses_the_largest_fitting_batch():
    ev = evaluate_serving(_w(), ServeLayout(accelerator="a100-80g", tp=1))
    assert ev.batch == ev.max_batch and ev.fits


def test_evaluator_replicas_cover_demand_and_price_per_token():
    w = _w(rate_rps=10.0, tpot_s=0.05)
    ev = evaluate_serving(w, ServeLayout(accelerator="h100-sxm", tp=1))
    demand = 10.0 * 200
    assert ev.replicas == math.ceil(demand / ev.tokens_per_s_per_replica)
    assert ev.cost_per_million_tokens_usd == pytest.approx(ev.cost_per_hour_usd / (demand * 3600) * 1e6)
    assert ev.cost_per_hour_usd == pytest.approx(ev.count * ev.price_usd_per_gpu_hour)


def test_a_model_that_does_not_fit_is_never_shown_as_fitting():
    ev = evaluate_serving(_w(model=catalog.model("llama-2-70b")), ServeLayout(accelerator="a100-40g", tp=1))
    assert not ev.fits and not ev.meets_targets and ev.max_batch == 0


@pytest.mark.parametrize("layout, field", [
    (dict(accelerator="a100-80g", tp=3), "tp"),
    (dict(accelerator="a100-80g", tp=16), "tp"),
    (dict(accelerator="v100-32g", precision="bf16"), "precision"),
    (dict(accelerator="a100-80g", precision="fp8"), "precision"),
    (dict(accelerator="a100-80g", precision="fp4"), "precision"),
])
def test_bad_layouts_name_the_field(layout, field):
    with pytest.raises(GpuplanError) as e:
        evaluate_serving(_w(), ServeLayout(**layout))
    assert e.value.field == field


def test_break_even_utilization_by_hand():
    from recommender.evaluate import job_cost, pricing
    from recommender.serving import break_even_utilization

    acc = catalog.accelerator("h100-sxm")
    buy, cloud = pricing(acc, "buy"), pricing(acc, "on_demand")
    per_gpu_year = job_cost(buy, acc, 1, 365.0).total
    assert break_even_utilization(acc, 365.0) == pytest.approx(per_gpu_year / (cloud.usd_per_gpu_hour * 8760))
    assert break_even_utilization(acc, 365.0, amortize=True) < break_even_utilization(acc, 365.0)


def test_demand_needs_a_bound_on_latency():
    with pytest.raises(GpuplanError) as e:
        _w(users=100)
    assert e.value.field == "users"
    assert np.isclose(_w(users=100, think_time_s=5.0).requests_per_s, 20.0)


@pytest.mark.parametrize("model, gpu, tp, pp, prec", [
    ("llama-2-7b", "a100-80g", 1, 1, "bf16"), ("llama-2-70b", "h100-sxm", 4, 1, "fp8"),
    ("mixtral-8x7b", "h200", 2, 1, "bf16"), ("llama-3.1-405b", "h100-sxm", 8, 2, "fp8"),
    ("chatglm2-6b", "mlu370-x8", 1, 1, "int8"), ("deepseek-v3-671b", "h200", 8, 1, "fp8"),
])
def test_latency_grows_and_throughput_never_falls_with_batch(model, gpu, tp, pp, prec):
    """What the exact largest-batch bisection and the offline maximum rely on."""
    from recommender.serving import serving_terms

    w = ServeWorkload(model=catalog.model(model), prompt_tokens=700, output_tokens=300)
    acc = catalog.accelerator(gpu)
    b = np.arange(1, 2049)
    lat = serving_terms(w, acc, prec, prec if prec in ("fp8", "int8") else "bf16", tp, pp, b, 0.5, 0.1).latency
    for name in ("ttft", "tpot", "e2e"):
        assert np.all(np.diff(getattr(lat, name)) >= -1e-15), name
    assert np.all(np.diff(lat.tokens_per_s) >= -1e-9)


def test_published_serving_figures_within_25_percent():
    """MLPerf Inference Llama-2-70B offline on 8x H100 / 8x H200 and NVIDIA NIM's latency table
    (benchmarks/serving_runs.yaml): each MLPerf row within 25%, held-out median within 25%."""
    import sys
    from pathlib import Path

    import yaml

    sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
    import validate_serving as vs

    runs = yaml.safe_load(vs.RUNS.read_text())["runs"]
    for run in runs:
        if run["id"].startswith("mlperf") and run["gpu"] in ("h100-sxm", "h200"):
            assert vs.predict(run) == pytest.approx(run["published"], rel=0.25), run["id"]
    _, stats = vs.table(runs)
    assert stats["held-out"] <= 0.25
    assert vs.calibrate(runs) == pytest.approx(catalog.assumption("decode_layer_overhead_us"), abs=0.5)
