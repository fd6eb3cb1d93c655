"""The one-configuration evaluator: contract, internal consistency, hand-computed values."""

import pytest

from recommender import api, catalog
from recommender.errors import GpuplanError
from recommender.formulas.memory import GIB

CONTRACT = ("accelerator count tp pp dp zero recompute micro_batch precision acquisition fits memory_gib_per_gpu "
            "memory_breakdown_gib total_flops days gpu_hours mfu tflops_per_gpu tokens_per_s_per_gpu cost_usd").split()


def ev(**kw):
    base = dict(model="llama-2-70b", tokens="2T", gpu="a100-80g", tp=8, pp=4, count=2048)
    return api.evaluate_config(**(base | kw))


def test_json_contract_fields():
    data = ev().model_dump(mode="json")
    for key in CONTRACT:
        assert key in data, key
    assert set(data["memory_breakdown_gib"]) == {"weights", "gradients", "optimizer", "activations", "logits",
                                                 "gathered", "framework", "fragmentation", "overhead", "optimizer_paged"}


def test_internal_consistency():
    e = ev()
    assert e.count == e.tp * e.pp * e.dp == 2048
    assert e.days == pytest.approx(e.tokens / (e.tokens_per_s_per_gpu * e.count) / e.goodput / 86400)
    assert e.gpu_hours == pytest.approx(e.count * e.days * 24)
    assert e.cost_usd == pytest.approx(e.gpu_hours * e.price_usd_per_gpu_hour)
    assert e.mfu == pytest.approx(e.tflops_per_gpu / 312)
    mb = e.memory_breakdown_gib
    assert e.memory_gib_per_gpu == pytest.approx(mb.weights + mb.gradients + mb.optimizer + mb.activations + mb.logits
                                                 + mb.gathered + mb.framework + mb.fragmentation)
    assert mb.overhead == pytest.approx(mb.framework + mb.fragmentation)
    assert e.fits == (e.memory_gib_per_gpu <= e.memory_limit_gib)


def test_model_states_by_hand():
    """llama-2-7b on 8 GPUs, TP 1, DP 8, ZeRO-0: every GPU holds all 6.74B params x (2 + 2 + 12) bytes."""
    e = api.evaluate_config(model="llama-2-7b", tokens="1B", gpu="h100", count=8, zero=0)
    p = catalog.model("llama-2-7b").total_params
    assert e.memory_breakdown_gib.weights == pytest.approx(2 * p / GIB)
    assert e.memory_breakdown_gib.optimizer == pytest.approx(12 * p / GIB)
    z1 = api.evaluate_config(model="llama-2-7b", tokens="1B", gpu="h100", count=8, zero=1)
    assert z1.memory_breakdown_gib.optimizer == pytest.approx(12 * p / 8 / GIB)


def test_a_plan_that_does_not_fit_is_never_shown_as_fitting():
    e = api.evaluate_config(model="llama-2-70b", tokens="1B", gpu="a100-80g", count=1, zero=0)
    assert not e.fits
    assert any("does not fit" in w for w in e.warnings)


def test_headroom_can_flip_fit():
    loose = api.evaluate_config(model="llama-2-7b", tokens="1B", gpu="a100-80g", count=8, zero=3, headroom="0")
    assert loose.memory_limit_gib == 80


def test_default_tokens_are_chinchilla_and_said():
    e = api.evaluate_config(model="llama-2-7b", gpu="h100", count=8)
    assert e.tokens == pytest.approx(20 * catalog.model("llama-2-7b").total_params)
    assert any("Hoffmann" in w for w in e.warnings)


def test_buy_uses_purchase_price_and_lead_time():
    e = ev(gpu="h100-sxm", acquisition="buy", tp=8, pp=4, count=1024)
    assert e.cost_breakdown_usd.capex > 0 and e.cost_breakdown_usd.energy > 0
    assert e.lead_time_days == catalog.lead_time_days("h100-sxm")


def test_missing_price_is_said_not_invented():
    e = api.evaluate_config(model="llama-2-7b", tokens="1B", gpu="mi250x", count=4)
    assert e.cost_usd is None
    assert any("no published on_demand price" in w for w in e.warnings)


def test_more_gpus_finish_sooner():
    assert ev(count=1024).days > ev(count=2048).days


@pytest.mark.parametrize("kw,field,match", [
    (dict(gpu="H1000"), "gpu", "did you mean"),
    (dict(tokens="-2T"), "tokens", "greater than zero"),
    (dict(tokens="two trillion"), "tokens", "cannot parse"),
    (dict(tp=3, count=96), "tp", "must divide the 64 attention heads"),
    (dict(pp=96, tp=1, count=96), "pp", "exceeds the 80 layers"),
    (dict(model="mixtral-8x7b", tp=1, pp=1, ep=3, count=24), "ep", "must divide the 8 experts"),
    (dict(model="mixtral-8x7b", ep=4, count=8, tp=4, pp=1), "ep", "must divide dp"),
    (dict(method="qlora", gpu="h100-sxm", precision="fp8"), "precision", "QLoRA computes in 16 bits"),
    (dict(dp=10, count=2048), "count", "must equal tp\\*pp\\*cp\\*dp"),
    (dict(count=100), "count", "multiple of tp\\*pp"),
    (dict(precision="fp8"), "precision", "no published fp8 peak"),
    (dict(precision="fp4"), "precision", "must be one of"),
    (dict(gpu="v100", precision="bf16", tp=8, pp=4, count=32), "precision", "use one of: fp16, fp32"),
    (dict(zero=4), "zero", "0, 1, 2 or 3"),
    (dict(recompute="some"), "recompute", "must be one of"),
    (dict(acquisition="lease"), "acquisition", "cloud, spot, reserved, serverless, buy"),
])
def test_bad_input_names_field(kw, field, match):
    with pytest.raises(GpuplanError, match=match) as info:
        ev(**kw)
    assert info.value.field == field


def test_memory_verdict_tight_between_the_plan_and_the_device():
    """fits: within the usable memory (10% headroom). tight: above it, but what must be on the device
    (all but the allocator's cache, which PyTorch gives back before an out-of-memory error) is within
    the GPU: it may run, and gpuplan does not plan it. does not fit: even that exceeds the GPU."""
    kw = dict(model="llama-2-7b", tokens="1B", gpu="a100-40g", count=8, zero=3, recompute="none", seq_len="2048",
              loss="fused")
    for mb, verdict in (("1", "fits"), ("2", "tight"), ("4", "does not fit")):
        e = api.evaluate_config(micro_batch=mb, **kw)
        frag = e.memory_breakdown_gib.fragmentation
        assert e.memory_required_gib == pytest.approx(e.memory_gib_per_gpu - frag)
        assert e.memory_verdict == verdict and e.fits == (verdict == "fits")
        assert (e.memory_required_gib <= 40.0) == (verdict != "does not fit")
        if verdict == "tight":
            assert e.memory_gib_per_gpu > 36.0 and any(w.startswith("tight:") for w in e.warnings)
