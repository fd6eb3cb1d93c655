"""The catalog: complete, sourced, and matched forgivingly."""

import json
import re

import pytest

from recommender import catalog
from recommender.errors import GpuplanError

REQUIRED_ACCELERATORS = ("v100-32g a100-40g a100-80g h100-sxm h100-pcie h800 h200 h20 b200 gb200 l40s l4 t4 "
                         "a10g rtx4090 mi250x mi300x mi325x tpu-v4 tpu-v5e tpu-v5p gaudi2 gaudi3 mlu370-x8 "
                         "kunlun2 ascend-910b").split()
REQUIRED_MODELS = ("deepseek-r1-1.5b deepseek-r1-32b deepseek-r1-671b gpt-3-175b llama-13b llama-65b llama-2-7b "
                   "llama-2-70b chatglm2-6b llama-3-8b llama-3-70b llama-3.1-405b qwen2.5-7b mistral-7b "
                   "mixtral-8x7b bloom-176b opt-175b bert-base").split()
PRESETS = sorted(catalog.models())


def test_every_required_accelerator_is_there():
    assert set(REQUIRED_ACCELERATORS) <= set(catalog.accelerators())


@pytest.mark.parametrize("acc_id", sorted(catalog.accelerators()))
def test_accelerator_rows_carry_source_and_date(acc_id):
    acc = catalog.accelerator(acc_id)
    assert acc.source.strip() and acc.as_of
    assert catalog.efficiency(acc_id) is not None, "every accelerator needs an efficiency row"


def test_price_rows_carry_source_and_date():
    for p in [*catalog.cloud_prices(), *catalog.purchase_prices()]:
        assert p.source.strip() and p.as_of, p
        assert p.accelerator in catalog.accelerators(), p.accelerator


def test_assumptions_are_all_sourced():
    for name, a in catalog.assumptions().items():
        assert a.source.strip() and "to be confirmed" not in a.source, name


@pytest.mark.parametrize("typed,expected", [
    ("H100", "h100-sxm"), ("h100", "h100-sxm"), ("A100 80GB", "a100-80g"), ("a100-80gb", "a100-80g"),
    ("A100", "a100-80g"), ("MI300X", "mi300x"), ("tpu v5p", "tpu-v5p"), ("Gaudi 3", "gaudi3"),
    ("H100 PCIe", "h100-pcie"), ("v100", "v100-32g"),
])
def test_accelerator_aliases(typed, expected):
    assert catalog.accelerator(typed).id == expected


def test_aliases_never_collide():
    seen = {}
    for acc in catalog.accelerators().values():
        for name in [acc.id, *acc.aliases]:
            key = catalog.normalize(name)
            assert seen.setdefault(key, acc.id) == acc.id, f"{name} names {seen[key]} and {acc.id}"


def test_unknown_accelerator_suggests():
    with pytest.raises(GpuplanError, match=r"did you mean 'h100-sxm'") as info:
        catalog.accelerator("h100-sxn")
    assert info.value.field == "gpu"


def test_unknown_accelerator_lists_known_ids():
    with pytest.raises(GpuplanError, match="known: v100-32g, a100-40g"):
        catalog.accelerator("quantum-9000")


# -- model presets -----------------------------------------------------------------------------

def test_at_least_20_presets_with_the_seed_models():
    assert len(PRESETS) >= 20
    assert set(REQUIRED_MODELS) <= set(PRESETS)


@pytest.mark.parametrize("model_id", PRESETS)
def test_preset_is_sourced_and_its_derived_size_matches_the_published_one(model_id):
    m = catalog.model(model_id)
    assert re.fullmatch(r"[a-z0-9]+(?:[.-][a-z0-9]+)*", m.id)
    assert m.source.strip() and m.as_of
    assert m.total_params == pytest.approx(m.published_params_b * 1e9, rel=0.02)
    if m.published_active_params_b:
        assert m.active_params == pytest.approx(m.published_active_params_b * 1e9, rel=0.02)


@pytest.mark.parametrize("typed,expected", [
    ("Llama-2-70B", "llama-2-70b"), ("llama2-70b", "llama-2-70b"), ("GPT-3 175B", "gpt-3-175b"),
    ("deepseek r1 671b", "deepseek-r1-671b"), ("ChatGLM2-6B", "chatglm2-6b"), ("Mixtral 8x7B", "mixtral-8x7b"),
])
def test_forgiving_model_names(typed, expected):
    assert catalog.model(typed).id == expected


def test_unknown_model_suggests():
    with pytest.raises(GpuplanError, match="did you mean 'llama-2-70b'"):
        catalog.model("llama-2-70")


def test_deepseek_r1_is_moe_with_37b_active():
    """DeepSeek-V3 report (arXiv 2412.19437): 671B total parameters, 37B activated per token."""
    m = catalog.model("deepseek-r1-671b")
    assert m.is_moe and m.attention == "mla"
    assert m.total_params == pytest.approx(671e9, rel=0.01)
    assert m.active_params == pytest.approx(37e9, rel=0.02)


@pytest.mark.parametrize("n", [1e9, 7e9, 100e9, 500e9])
def test_dense_shape_has_about_the_asked_parameters(n):
    m = catalog.dense_shape(n)
    assert m.total_params == pytest.approx(n, rel=0.06)
    assert m.hidden % 128 == 0 and m.heads * 128 == m.hidden
    assert m.heads % 8 == 0   # tensor parallelism 2, 4 and 8 split the heads


@pytest.mark.parametrize("n,heads", [(1e9, 16), (7e9, 32), (70e9, 72), (100e9, 80), (2e12, 216)])
def test_dense_shape_heads_split_by_tensor_parallelism(n, heads):
    """--params 70B had 71 heads (TP 1 or 71 only), 2T 217: hidden sizes now come in 8-head steps."""
    assert catalog.dense_shape(n).heads == heads


def test_dense_shape_overrides():
    m = catalog.dense_shape(100e9, layers=96, seq_len=8192)
    assert m.layers == 96 and m.seq_len == 8192
    assert m.total_params == pytest.approx(100e9, rel=0.06)


def test_hf_config_llama_2_7b(tmp_path):
    """meta-llama/Llama-2-7b-hf config.json fields; 6.74B parameters (model card)."""
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "hidden_size": 4096,
           "intermediate_size": 11008, "num_attention_heads": 32, "num_hidden_layers": 32,
           "num_key_value_heads": 32, "vocab_size": 32000, "max_position_embeddings": 4096,
           "hidden_act": "silu", "tie_word_embeddings": False}
    path = tmp_path / "config.json"
    path.write_text(json.dumps(cfg))
    m = catalog.from_hf_config(path)
    assert m.total_params == pytest.approx(6.74e9, rel=0.005)
    assert m.mlp == "gated"


def test_hf_config_errors(tmp_path):
    with pytest.raises(GpuplanError, match="file not found"):
        catalog.from_hf_config(tmp_path / "missing.json")
    bad = tmp_path / "config.json"
    bad.write_text("{not json")
    with pytest.raises(GpuplanError, match="not valid JSON"):
        catalog.from_hf_config(bad)


# -- catalog v2: interconnect, sequence lengths, Hugging Face defaults ------------------------------

@pytest.mark.parametrize("acc_id", sorted(catalog.accelerators()))
def test_every_accelerator_is_plannable_beyond_one_node_unless_a_source_says_not(acc_id):
    acc = catalog.accelerator(acc_id)
    assert acc.intra_node_bw_gb_s or acc.gpus_per_node in (None, 1), "a multi-GPU node needs its link figure"
    if acc.max_span is not None:
        assert "scale-out not published:" in acc.notes, f"{acc_id}: say which source leaves it one node"


def test_evaluate_and_train_share_the_span_rule():
    """Where no inter-node figure is published, `evaluate` refuses the very counts `train` never
    offers, with the same sentence."""
    from recommender import api
    from recommender.candidates import SearchSpace, layout_grid

    limited = [a for a in catalog.accelerators().values() if a.max_span is not None and a.memory_gib]
    for acc in limited:
        job, _ = api.build_job(catalog.model("gpt-2-124m"), tokens="1B")
        grid = layout_grid(job, acc, SearchSpace(accelerators=(acc.id,), max_gpus=4 * acc.max_span))
        assert grid["count"].max() <= acc.max_span
        with pytest.raises(GpuplanError, match="no published inter-node bandwidth") as info:
            api.evaluate_config(model="gpt-2-124m", tokens="1B", gpu=acc.id, count=2 * acc.max_span,
                                precision="fp16" if acc.fp16_only else "bf16")
        assert str(acc.span_problem(2 * acc.max_span)) in str(info.value)


def test_tpu_slices_use_ici_across_hosts():
    for tpu in ("tpu-v4", "tpu-v5e", "tpu-v5p"):
        acc = catalog.accelerator(tpu)
        assert acc.domain > acc.node, f"{tpu}: the ICI torus spans hosts"


def test_nvl72_is_one_scale_up_domain():
    for gpu in ("gb200", "gb300"):
        acc = catalog.accelerator(gpu)
        assert acc.domain == 72 and acc.node == 4


@pytest.mark.parametrize("model_id,expected", [
    ("llama-2-7b", 4096), ("llama-3.1-8b", 8192), ("deepseek-r1-671b", 4096), ("gpt-3-175b", 2048),
    ("llama-65b", 2048),
])
def test_training_defaults_to_the_pretraining_sequence_length(model_id, expected):
    from recommender import api

    job, notes = api.build_job(catalog.model(model_id), tokens="1B")
    assert job.seq_len == expected
    assert any("pre-training length" in n for n in notes)


def test_finetuning_defaults_to_4k_capped_by_the_context():
    from recommender import api

    assert api.build_job(catalog.model("qwen2.5-7b"), tokens="1B", finetune=True)[0].seq_len == 4096
    assert api.build_job(catalog.model("bert-base"), tokens="1B", finetune=True)[0].seq_len == 512


def test_every_preset_has_a_sourced_pretraining_length_or_none():
    for m in catalog.models().values():
        if m.pretrain_seq_len is not None:
            assert m.pretrain_seq_len_source.strip(), m.id
            assert m.pretrain_seq_len <= m.seq_len, m.id


HF = __import__("pathlib").Path(__file__).parent / "data" / "hf"


def test_hf_gemma2_is_tied_by_default():
    """Gemma-2-9B's config.json has no tie_word_embeddings key; transformers' Gemma2Config
    defaults it to True, which gives the published 9.24B (untied would be 10.16B)."""
    m = catalog.from_hf_config(HF / "gemma-2-9b" / "config.json")
    assert m.tied_embeddings and m.total_params / 1e9 == pytest.approx(9.24, abs=0.01)


def test_hf_multimodal_config_reads_its_text_config_with_class_defaults():
    """Gemma 3 4B's config nests the text model and omits heads, KV heads and vocabulary
    (Gemma3TextConfig defaults 8, 4, 262,208): the text model is 3.88B."""
    m = catalog.from_hf_config(HF / "gemma-3-4b")  # a folder holding config.json works too
    assert (m.heads, m.kv_heads, m.dim_head, m.vocab) == (8, 4, 256, 262208)
    assert m.total_params / 1e9 == pytest.approx(3.88, abs=0.01)


@pytest.mark.parametrize("path,match", [(".", "no config.json"), ("", "give the path"),
                                        ("missing.json", "file not found")])
def test_hf_config_path_errors(path, match):
    with pytest.raises(GpuplanError, match=match):
        catalog.from_hf_config(path)
