"""Speculative decoding: the tokens a step yields, the law of the steps a request needs, the
verifying pass, the draft's memory, the planner's choice, and the CLI's errors.

The fleets the planner returns with speculative decoding are run in the step-by-step simulation
in tests/test_serving_des.py (70b-spec-*, 8b-spec-ngram-h100)."""

from __future__ import annotations

import numpy as np
import pytest

from recommender import catalog
from recommender.errors import GpuplanError
from recommender.formulas import queueing as qm
from recommender.formulas import serving as sv

from test_errors import one_line_error, run


def _workload(**kw):
    from recommender.serving import ServeWorkload

    base = dict(model=catalog.model("llama-3-70b"), prompt_tokens=512, output_tokens=256, rate_rps=4.0,
                ttft_s=1.0, tpot_s=0.02, draft="llama-3.2-1b", draft_accept=0.7)
    return ServeWorkload(**{**base, **kw})


def test_tokens_per_step_hand_computed():
    """E = (1 - a^(k + 1)) / (1 - a): a = 0.7, k = 4: (1 - 0.16807) / 0.3 = 2.7731; k = 1, a = 0.5:
    1 + 0.5 = 1.5; the queue model's gain law has the same mean, and variance a (1 - a) for k = 1."""
    assert sv.spec_tokens_per_step(0.7, 4) == pytest.approx(2.7731)
    assert sv.spec_tokens_per_step(0.5, 1) == pytest.approx(1.5)
    w = qm.Workload(prompt=1.0, output=256.0, percentile=0.99, closed=False, draft_tokens=4, accept=0.7)
    assert w.spec_gain == pytest.approx(2.7731)
    assert w.spec_gain_pmf.sum() == pytest.approx(1.0)
    one = qm.Workload(prompt=1.0, output=256.0, percentile=0.99, closed=False, draft_tokens=1, accept=0.5)
    assert one.spec_var == pytest.approx(0.25)
    assert _workload().tokens_per_step == pytest.approx(2.7731)


def test_steps_needed_hand_computed_and_against_sampling():
    """P(K = j | m): m = 1 takes one step; m = 2 one step with probability a (the first draft
    accepted), else two; m = 3: a^2, 2 a (1 - a), (1 - a)^2. Larger m against 200,000 sampled
    requests, each step's gain drawn as the simulation draws it."""
    a, k = 0.7, 4
    pk = qm.Workload(prompt=1.0, output=256.0, percentile=0.99, closed=False, draft_tokens=k, accept=a).spec_steps_pmf()
    assert np.allclose(pk.sum(axis=1), 1.0)
    assert pk[0, 0] == pytest.approx(1.0)
    assert pk[1, :2] == pytest.approx([a, 1 - a])
    assert pk[2, :3] == pytest.approx([a * a, 2 * a * (1 - a), (1 - a) ** 2])
    rng = np.random.default_rng(0)
    gains = np.minimum(rng.geometric(1 - a, size=(200000, qm.K_EXACT)), k + 1).cumsum(axis=1)
    for m in (5, 11, 16):
        steps = (gains < m).sum(axis=1) + 1
        sampled = np.bincount(steps, minlength=qm.K_EXACT + 1)[1:] / len(steps)
        assert np.abs(sampled - pk[m - 1]).max() < 0.005, m


def test_acceptance_per_position_hand_computed_and_against_sampling():
    """Rates per drafted position (acceptance falls along a draft): E = 1 + a1 + a1 a2 + ...:
    0.8, 0.6: 1 + 0.8 + 0.48 = 2.28; P(G = 1, 2, 3) = 0.2, 0.32, 0.48. The steps K that m tokens take,
    against the simulation's own draw (tests/serving_sim.py: position i accepted with a_i once
    those before were), 200,000 sequences; a single rate repeated is the constant-rate law."""
    rates = (0.8, 0.6)
    assert sv.spec_tokens_per_step(rates, 2) == pytest.approx(2.28)
    w = qm.Workload(prompt=1.0, output=256.0, percentile=0.99, closed=False, draft_tokens=2, accept=rates)
    assert w.spec_gain_pmf == pytest.approx([0.2, 0.32, 0.48])
    assert w.spec_gain == pytest.approx(2.28)
    rng = np.random.default_rng(1)
    ok = rng.random((200000, qm.K_EXACT, 2)) < np.asarray(rates)
    gains = (1 + np.cumprod(ok, axis=2).sum(axis=2)).cumsum(axis=1)
    pk = w.spec_steps_pmf()
    for m in (3, 9, 16):
        steps = (gains < m).sum(axis=1) + 1
        sampled = np.bincount(steps, minlength=qm.K_EXACT + 1)[1:] / len(steps)
        assert np.abs(sampled - pk[m - 1]).max() < 0.005, m
    flat = qm.Workload(prompt=1.0, output=256.0, percentile=0.99, closed=False, draft_tokens=3, accept=(0.7,) * 3)
    same = qm.Workload(prompt=1.0, output=256.0, percentile=0.99, closed=False, draft_tokens=3, accept=0.7)
    assert flat.spec_gain_pmf == pytest.approx(same.spec_gain_pmf)
    wl = _workload(draft_accept=(0.8, 0.7, 0.6, 0.5))
    assert wl.tokens_per_step == pytest.approx(1 + 0.8 + 0.56 + 0.336 + 0.168)


def test_verifying_pass_reads_the_kv_once():
    """b sequences verifying q = k + 1 tokens each: the compute and communication of b q tokens,
    the weights read as for b q tokens, and the KV cache of b sequences read once (attention's
    kernel: its math for b q queries, its read for b sequences)."""
    m = catalog.model("llama-3-8b")
    acc = catalog.accelerator("h100-sxm")
    hw = dict(peak_tflops=acc.peak_tflops("fp8"), efficiency=0.7, memory_bw_gb_s=acc.memory_bw_gb_s,
              bw_efficiency=0.8, tp_bw_gb_s=450.0, pp_bw_gb_s=450.0, comm_efficiency=0.8, allreduce_latency_s=1e-5)
    spec = sv.decode_stage_time(m, "fp8", "fp8", 8, 1000, 2, 1, **hw, tokens_per_seq=5)
    wide = sv.decode_stage_time(m, "fp8", "fp8", 40, 1000, 2, 1, **hw)
    assert spec.compute == pytest.approx(wide.compute)
    assert spec.tp_comm == pytest.approx(wide.tp_comm)
    kv = lambda b: b * 1000 * m.kv_bytes_per_token(1.0) / sv.kv_shards(m, 2)  # noqa: E731
    bw = acc.memory_bw_gb_s * 1e9 * 0.8
    assert spec.memory == pytest.approx(wide.memory)
    assert spec.attention == pytest.approx(kv(8) / bw) and wide.attention == pytest.approx(kv(40) / bw)


def test_draft_memory_counted():
    """A 1B draft at fp8 on TP1: its weights (sv.weight_bytes), its KV for the resident tokens,
    and the target's KV for the k lookahead tokens of each sequence."""
    from recommender.serving import replica_memory

    w = _workload()
    acc = catalog.accelerator("h200")
    plain = replica_memory(w, acc, "fp8", "fp8", 1, 1, 64)
    spec = replica_memory(w, acc, "fp8", "fp8", 1, 1, 64, spec=True)
    d = catalog.model("llama-3.2-1b")
    assert spec.weights - plain.weights == pytest.approx(sv.weight_bytes(d, "fp8", 1, 1))
    extra_kv = 64 * 4 * w.model.kv_bytes_per_token(1.0) + 64 * w.resident_tokens(64) * d.kv_bytes_per_token(1.0)
    assert spec.kv_cache - plain.kv_cache == pytest.approx(extra_kv)
    eagle = _workload(draft="eagle").draft_model()
    assert eagle.layers == 1 and eagle.hidden == w.model.hidden and eagle.vocab == w.model.vocab


def test_planner_takes_speculation_where_it_pays():
    """A tight TPOT (30 ms p99 on 70B at 2 requests/s) with a good draft: the cheapest fleet
    speculates on one H200 where without the draft it takes two (TP2); with a draft that is almost never right (a = 0.05) the draft's
    passes cost more than they save and the planner does not speculate."""
    from recommender.serve_planner import ServeLimits, ServeSpace, plan_serving

    lim, space = ServeLimits(acquisitions=("on_demand",)), ServeSpace(accelerators=("h200",), disaggregate="off")
    results = {a: plan_serving(_workload(rate_rps=2.0, tpot_s=0.03, draft_accept=a), lim, space, top=1) for a in (0.7, 0.05)}
    good, bad = results[0.7].plans[0], results[0.05].plans[0]
    none = plan_serving(_workload(rate_rps=2.0, tpot_s=0.03, draft=None, draft_accept=None), lim, space, top=1).plans[0]
    assert all(p.speculative for p in good.parts) and good.count == 1 and none.count == 2
    assert good.cost_per_hour_usd < none.cost_per_hour_usd
    assert not any(p.speculative for p in bad.parts)
    assert bad.cost_per_hour_usd == pytest.approx(none.cost_per_hour_usd)
    # the explanation's comparison is the plain plan, solved exactly (the two kinds pruned apart)
    saving = 1 - good.cost_per_hour_usd / none.cost_per_hour_usd
    assert f"saves {saving:.0%}: without it, 1 x h200 on_demand (TP 2" in results[0.7].explanation[-1]
    assert "does not pay here" in results[0.05].explanation[-1]


@pytest.mark.parametrize("kw,needle", [
    (dict(draft_accept=None), "draft=llama-3.2-1b: give the draft's acceptance rate"),
    (dict(draft=None), "draft-accept=0.7: give the draft too"),
    (dict(draft="llama-2-7b"), "draft=llama-2-7b: its vocabulary (32,000 tokens) is not the target's"),
    (dict(draft_accept=(0.8, 0.7)), "draft-accept=0.8,0.7: give one rate per drafted position (2 rates for 4"),
    (dict(draft_accept=1.0), "draft-accept=1: each rate must be a share strictly between 0 and 1"),
])
def test_bad_draft_input(kw, needle):
    with pytest.raises(GpuplanError, match=needle.replace("(", r"\(").replace(")", r"\)")):
        _workload(**kw)


@pytest.mark.parametrize("args,needle", [
    (["--draft", "eagle"], "draft"),
    (["--draft-accept", "0.7"], "draft-accept"),
    (["--draft", "llama-2-7b", "--draft-accept", "0.7"], "vocabulary"),
    (["--draft", "eagle", "--draft-accept", "1.5"], "draft-accept"),
    (["--draft", "nope", "--draft-accept", "0.7"], "nope"),
    (["--draft", "eagle", "--draft-accept", "0.8,0.7", "--draft-tokens", "3"], "one rate per drafted position"),
    (["--draft", "eagle", "--draft-accept", "0.8,x"], "draft-accept"),
])
def test_cli_bad_draft_one_line_exit_2(args, needle):
    base = ["serve", "--model", "llama-3-8b", "--rate", "5rps", "--ttft", "1s", "--tpot", "50ms", "--gpus", "h100-sxm"]
    one_line_error(run(base + args), needle)


def test_cli_speculative_plan_shown():
    r = run(["serve", "--model", "llama-3-70b", "--rate", "2rps", "--prompt", "512", "--output", "256", "--ttft", "1s",
             "--tpot", "20ms", "--draft", "llama-3.2-1b", "--draft-accept", "0.7", "--gpus", "h200"])
    assert r.exit_code == 0, r.output
    assert "fp8+spec" in r.output and "speculative: 2.77 tokens a step" in r.output
    # rates per position: as many drafted tokens as rates, E = 1 + 0.8 + 0.56 + 0.336 + 0.168
    r = run(["serve", "--model", "llama-3-70b", "--rate", "2rps", "--ttft", "1s", "--tpot", "20ms", "--draft", "eagle",
             "--draft-accept", "0.8,0.7,0.6,0.5", "--gpus", "h200"])
    assert r.exit_code == 0, r.output
    assert "4 tokens drafted, acceptance 0.8,0.7,0.6,0.5: 2.86 tokens a step" in r.output.replace("\n", " ")
