"""Loading and validating the catalog (catalog/*.csv, *.yaml) and resolving names people type.

Names match case-insensitively and ignoring spaces, '-', '_' and '.', against ids and aliases;
an unknown name raises GpuplanError with a "did you mean" and the list of valid ids.
"""

from __future__ import annotations

import contextlib
import csv
import functools
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path

import yaml
from pydantic import ValidationError

from catalog import DATA_DIR
from recommender.errors import GpuplanError, did_you_mean
from recommender.spec import (Accelerator, Assumption, CloudPrice, Efficiency, ModelSpec,
                              PurchasePrice)


def read_yaml(path: Path):
    """A catalog YAML file, parsed by libyaml where PyYAML has it (the presets file takes 0.4 s
    with the pure-Python parser, 0.03 s with libyaml: same safe loader, same result)."""
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    return yaml.load(Path(path).read_text(), Loader=loader)  # noqa: S506 (a safe loader)


def normalize(name: str) -> str:
    return re.sub(r"[\s\-_.]+", "", str(name).strip().lower())


def _rows(filename: str) -> list[dict]:
    with (DATA_DIR / filename).open(newline="", encoding="utf-8") as f:
        return [{k: v for k, v in row.items() if v != ""} for row in csv.DictReader(f)]


def listed(ids: list[str], most: int = 6) -> str:
    """Accelerator ids for a message: the first few, and how many more."""
    return ", ".join(ids[:most]) + (f" and {len(ids) - most} more" if len(ids) > most else "")


def _shown(filename: str) -> str:
    """A catalog file as catalog/NAME, a user's file as its path."""
    return filename if "/" in filename else f"catalog/{filename}"


def _build(kind, rows: list[dict], filename: str, listy: tuple[str, ...] = ()):
    out = []
    for i, row in enumerate(rows, start=2):
        for key in listy:
            if key in row and isinstance(row[key], str):
                row[key] = [a.strip() for a in row[key].split(";") if a.strip()]
        try:
            out.append(kind(**row))
        except ValidationError as exc:   # the file's line, the field and the value it gave
            err = exc.errors()[0]
            name = ".".join(str(x) for x in err["loc"]) or "row"
            raise GpuplanError(_shown(filename), f"line {i}", f"{name}={err.get('input')!s}: {err['msg']}") from None
        except GpuplanError as exc:
            raise GpuplanError(_shown(filename), f"line {i}", str(exc)) from None
    return out


@functools.cache
def _accelerators() -> dict[str, Accelerator]:
    items = _build(Accelerator, _rows("accelerators.csv"), "accelerators.csv", listy=("aliases",))
    return {a.id: a for a in items}


def _price_key(p: CloudPrice) -> tuple:
    return (p.accelerator, p.provider.lower(), p.tier, p.term_months, p.region)


def _layered(base: list[CloudPrice], extra: list[CloudPrice], whole_tier=lambda p: False) -> list[CloudPrice]:
    """`base` with `extra` on top. Within `extra`, the newest row of a key stands. An extra row
    replaces the base rows of its accelerator, provider, tier and term: in its own region, or in
    every region where `whole_tier(row)` (the user's imported rows; a price that names no region)."""
    mine: dict[tuple, CloudPrice] = {}
    for p in extra:
        if _price_key(p) not in mine or p.as_of >= mine[_price_key(p)].as_of:
            mine[_price_key(p)] = p
    tiers = {k[:4] for k, p in mine.items() if whole_tier(p)}
    kept = [p for p in base if _price_key(p) not in mine and _price_key(p)[:4] not in tiers]
    return kept + list(mine.values())


@functools.cache
def _cloud_prices() -> list[CloudPrice]:
    """Hand-sourced rows, then the shipped SkyPilot snapshot over them (same key: the snapshot's),
    then the user's imported file, which replaces a provider's tier outright."""
    from recommender import prices

    rows = _layered([], _build(CloudPrice, _rows("cloud_prices.csv"), "cloud_prices.csv"))
    if prices.SNAPSHOT.exists():
        rows = _layered(rows, _build(CloudPrice, _rows(prices.SNAPSHOT.name), prices.SNAPSHOT.name))
    user = _build(CloudPrice, prices.read_rows(prices.user_file()), str(prices.user_file()))
    return _layered(rows, user, whole_tier=lambda p: True)


@functools.cache
def _purchase_prices() -> list[PurchasePrice]:
    return _build(PurchasePrice, _rows("purchase_prices.csv"), "purchase_prices.csv")


@functools.cache
def _efficiencies() -> dict[str, Efficiency]:
    return {e.accelerator: e for e in _build(Efficiency, _rows("efficiency.csv"), "efficiency.csv")}


@dataclass(frozen=True)
class TimeBand:
    """The cross-validated error band of predicted training throughput (predicted / true - 1) for an
    accelerator family: true time = predicted time x (1 + error)."""

    family: str
    low: float
    high: float
    rows: int
    basis: str


@functools.cache
def time_bands() -> dict[str, TimeBand]:
    return {r["family"]: TimeBand(r["family"], float(r["error_low"]), float(r["error_high"]), int(r["rows"]), r["basis"])
            for r in _rows("time_bands.csv")}


def time_band(accelerator_id: str) -> TimeBand:
    """The band for this accelerator: its family's, or the wider pooled band for parts no published
    run calibrates; a user's own measurement (`gpuplan calibrate`) keeps the family's band."""
    e = efficiency(accelerator_id)
    bands = time_bands()
    fam = (e.family if e is not None else None) or "uncalibrated"
    return bands.get(fam, bands["uncalibrated"])


def calibration_path():
    from recommender import prices

    return prices.user_dir() / "calibration.csv"


CALIBRATION_COLUMNS = ("accelerator", "stack", "efficiency", "measured", "as_of")
CALIBRATION_RANGE = (0.01, 1.0)   # the kernel efficiencies `gpuplan calibrate` fits in


@functools.cache
def _calibrations(path: str, stamp: tuple[int, int]) -> dict[tuple[str, str], dict]:
    """The user's calibration file, checked: a file edited by hand (or broken) is named, with its
    line, rather than crashing whatever command reads it."""
    from recommender.errors import GpuplanError

    field = "calibration file"
    try:
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            missing = [c for c in CALIBRATION_COLUMNS if c not in (reader.fieldnames or [])]
            if missing:
                raise GpuplanError(field, path, f"has no column {', '.join(missing)} (it needs "
                                   f"{', '.join(CALIBRATION_COLUMNS)}); fix it, or delete it (`gpuplan calibrate` "
                                   "writes a new one)")
            rows = {}
            for r in reader:
                try:
                    eff = float(r["efficiency"])
                except (TypeError, ValueError):
                    eff = float("nan")
                if not CALIBRATION_RANGE[0] <= eff <= CALIBRATION_RANGE[1]:
                    raise GpuplanError(field, path, f"line {reader.line_num}: efficiency={r['efficiency']} is not "
                                       "a fraction from 0.01 to 1; fix it, or delete the file")
                rows[(r["accelerator"], r["stack"])] = r
            return rows
    except (OSError, UnicodeDecodeError, csv.Error) as err:
        raise GpuplanError(field, path, f"cannot be read ({err.__class__.__name__}: {err})") from None


def user_calibrations() -> dict[tuple[str, str], dict]:
    """(accelerator, stack) -> the user's measured run and the efficiency fitted to it
    ($GPUPLAN_HOME/calibration.csv, written by `gpuplan calibrate`)."""
    path = calibration_path()
    if not path.is_file():
        return {}
    st = path.stat()
    return _calibrations(str(path), (st.st_mtime_ns, st.st_size))  # re-read whenever the file changes


def efficiency_for(accelerator_id: str, kernels: str) -> Efficiency | None:
    """The efficiency row for this accelerator and training stack: the user's calibration where
    `gpuplan calibrate` stored one (its value is for that stack, before the stack ratio), else the
    catalog's."""
    base = efficiency(accelerator_id)
    mine = user_calibrations().get((accelerator_id, kernels))
    if base is None or mine is None:
        return base
    return base.model_copy(update={"matmul_efficiency": float(mine["efficiency"]), "calibrated": True,
                                   "basis": f"your run: {mine['measured']} ({mine['as_of']}, gpuplan calibrate)",
                                   "source": str(calibration_path())})


def reload() -> None:
    """Forget the loaded catalog (after `gpuplan prices import` wrote the user's price file)."""
    for fn in (_accelerators, _cloud_prices, _purchase_prices, _efficiencies, assumptions, models, time_bands):
        fn.cache_clear()


# Scenario files layer their own rows over the catalog (a custom accelerator, a negotiated price,
# a provider excluded) for the duration of one solve: see `overrides`.
_LAYERS: list[dict] = []


@contextlib.contextmanager
def overrides(accelerators=(), cloud_prices=(), purchase_prices=(), efficiencies=(), exclude_providers=()):
    """Within the block, the catalog has these rows added (a cloud price replaces the catalog's for
    the same accelerator, provider, tier, term and region) and these providers removed."""
    _LAYERS.append(dict(accelerators=list(accelerators), cloud_prices=list(cloud_prices),
                        purchase_prices=list(purchase_prices), efficiencies=list(efficiencies),
                        exclude={p.lower() for p in exclude_providers}))
    try:
        yield
    finally:
        _LAYERS.pop()


def _excluded() -> set[str]:
    return set().union(*(layer["exclude"] for layer in _LAYERS)) if _LAYERS else set()


def accelerators() -> dict[str, Accelerator]:
    out = dict(_accelerators())
    for layer in _LAYERS:
        out.update({a.id: a for a in layer["accelerators"]})
    return out


def cloud_prices() -> list[CloudPrice]:
    """Every cloud price row; a scenario's negotiated price replaces the catalog's rows of that
    accelerator, provider, tier and term (in every region, where it names none)."""
    if not _LAYERS:
        return _cloud_prices()
    rows = _layered(_cloud_prices(), [p for layer in _LAYERS for p in layer["cloud_prices"]],
                    whole_tier=lambda p: p.region == "")
    excluded = _excluded()
    return [p for p in rows if p.provider.lower() not in excluded]


def purchase_prices() -> list[PurchasePrice]:
    extra = [p for layer in _LAYERS for p in layer["purchase_prices"]]
    mine = {p.accelerator for p in extra}
    return [p for p in _purchase_prices() if p.accelerator not in mine] + extra


def efficiencies() -> dict[str, Efficiency]:
    out = dict(_efficiencies())
    for layer in _LAYERS:
        out.update({e.accelerator: e for e in layer["efficiencies"]})
    return out


@functools.cache
def assumptions() -> dict[str, Assumption]:
    raw = read_yaml(DATA_DIR / "assumptions.yaml")
    return {k: Assumption(**v) for k, v in raw.items()}


# What a user says of their own site for one command (--goodput, --pue, --electricity, --colo,
# --depreciation-years, or a scenario's site section) replaces the catalog's assumption.
SITE = {"goodput": "goodput", "pue": "pue", "electricity": "electricity_usd_per_kwh",
        "colo": "colocation_usd_per_kw_month", "depreciation_years": "useful_life_years"}
# the range a site's value may take (past it a typo, and costs overflow): PUE from a perfect 1.0 to
# 3 (the worst data centres surveyed report about 2.5); electricity up to $5/kWh and colocation up
# to $5,000 per kW-month (both about 20x the dearest markets); a useful life of 0.1 to 30 years
SITE_RANGE = {"goodput": (0.01, 1.0), "pue": (1.0, 3.0), "electricity_usd_per_kwh": (0.0, 5.0),
              "colocation_usd_per_kw_month": (0.0, 5000.0), "useful_life_years": (0.1, 30.0)}
SITE_UNIT = {"electricity_usd_per_kwh": " USD/kWh", "colocation_usd_per_kw_month": " USD per kW-month",
             "useful_life_years": " years"}
_ASSUMING: list[dict[str, float]] = [{}]


def assumption(name: str) -> float:
    mine = _ASSUMING[-1]
    return mine[name] if name in mine else assumptions()[name].value


@contextlib.contextmanager
def assuming(**values: float):
    """Within the block, these assumptions (catalog/assumptions.yaml names) have the user's values."""
    _ASSUMING.append({**_ASSUMING[-1], **{k: float(v) for k, v in values.items() if v is not None}})
    try:
        yield
    finally:
        _ASSUMING.pop()


def assumption_notes() -> list[str]:
    """The user's own values in force, for the answer's notes."""
    mine = _ASSUMING[-1]
    if not mine:
        return []
    return ["your values in place of the catalog's: " + ", ".join(
        f"{k} {v:g} (catalog {assumptions()[k].value:g})" for k, v in sorted(mine.items()))]


@functools.cache
def models() -> dict[str, ModelSpec]:
    raw = read_yaml(DATA_DIR / "models.yaml")
    items = []
    for i, entry in enumerate(raw):
        try:
            items.append(ModelSpec(**entry))
        except (ValidationError, GpuplanError) as exc:
            raise GpuplanError("catalog/models.yaml", entry.get("id", f"entry {i}"),
                               str(exc).splitlines()[0]) from None
    return {m.id: m for m in items}


def _index(items: dict) -> dict[str, str]:
    index: dict[str, str] = {}
    for key, item in items.items():
        for name in [key, item.name, *item.aliases]:
            index.setdefault(normalize(name), key)
    return index


def _resolve(field: str, name: str, items: dict, what: str) -> str:
    if isinstance(name, str) and name in items:  # an id: the common case, no index needed
        return name
    key = _index(items).get(normalize(name))
    if key is None:
        hint = did_you_mean(name, list(items))
        raise GpuplanError(field, name, f"unknown {what}; {hint + ' ' if hint else ''}"
                           f"known: {', '.join(items)}")
    return key


def accelerator_id(name: str) -> str | None:
    """The id a typed accelerator name resolves to, or None (no error: for lists checked elsewhere)."""
    items = accelerators()
    return name if name in items else _index(items).get(normalize(name))


def accelerator(name: str, field: str = "gpu") -> Accelerator:
    """An accelerator by id or alias ('H100', 'A100 80GB', 'mi300x')."""
    items = accelerators()
    return items[_resolve(field, name, items, "accelerator")]


def model(name: str, field: str = "model") -> ModelSpec:
    """A preset by id or alias ('Llama-2-70B', 'llama2-70b', 'gpt3-175b')."""
    items = models()
    return items[_resolve(field, name, items, "model")]


def efficiency(accelerator_id: str) -> Efficiency | None:
    return efficiencies().get(accelerator_id)


def prices_for(accelerator_id: str) -> list[CloudPrice]:
    """Current cloud prices in the command's market (`prices.in_market`): per (provider, tier,
    term), the rows of the newest date (one per region that date lists); an older row of the same
    provider and tier is superseded even where its region differs."""
    from recommender import prices

    newest: dict[tuple, list[CloudPrice]] = {}
    for p in prices.in_market([p for p in cloud_prices() if p.accelerator == accelerator_id]):
        key = (p.provider.lower(), p.tier, p.term_months)
        have = newest.get(key)
        if have is None or p.as_of > have[0].as_of:
            newest[key] = [p]
        elif p.as_of == have[0].as_of:
            have.append(p)
    rows = [p for group in newest.values() for p in group]
    return sorted(rows, key=lambda p: (p.tier, p.price_usd_per_gpu_hour, p.provider, p.region))


def purchase_for(accelerator_id: str) -> PurchasePrice | None:
    """The purchase price to use, in the command's market: the newest date's rows, a whole-system
    price per GPU (it includes the server's share) before a GPU-only one, and the median where a
    source gives a range (its low and high ends are two rows). Second-hand prices are not used."""
    from recommender import prices

    rows = prices.in_market([p for p in purchase_prices() if p.accelerator == accelerator_id and p.price_usd_per_gpu])
    if not rows:
        return None
    newest = max(p.as_of for p in rows)
    rows = [p for p in rows if p.as_of == newest]
    system = [p for p in rows if p.basis == "system_per_gpu"]
    rows = sorted(system or rows, key=lambda p: (p.price_usd_per_gpu, p.source))
    mid = len(rows) // 2
    if len(rows) % 2:
        return rows[mid]
    low, high = rows[mid - 1], rows[mid]
    usd = (low.price_usd_per_gpu + high.price_usd_per_gpu) / 2
    return low.model_copy(update={"price_usd_per_gpu": usd, "price": None, "currency": "USD",
                                  "notes": f"median of {len(rows)} figures of {newest}: {low.notes}"})


def lead_time_days(accelerator_id: str) -> float | None:
    """The newest published delivery lead time for buying this accelerator, if any."""
    rows = [p for p in purchase_prices() if p.accelerator == accelerator_id and p.lead_time_days is not None]
    return max(rows, key=lambda p: p.as_of).lead_time_days if rows else None


@functools.cache
def hf_defaults() -> dict[str, dict]:
    """catalog/hf_defaults.yaml: what transformers assumes, per model_type, for keys a config omits."""
    raw = read_yaml(DATA_DIR / "hf_defaults.yaml")
    return {k: v for k, v in raw.items() if not k.startswith("_")}


def _read_config(p: Path, field: str) -> dict:
    if not p.exists():
        raise GpuplanError(field, str(p), "file not found")
    if p.is_dir():
        if not (p / "config.json").is_file():
            raise GpuplanError(field, str(p), "is a folder with no config.json in it")
        p = p / "config.json"
    try:
        cfg = json.loads(p.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise GpuplanError(field, str(p), f"not valid JSON ({exc})") from None
    except OSError as exc:
        raise GpuplanError(field, str(p), f"cannot read ({exc.__class__.__name__})") from None
    if not isinstance(cfg, dict):
        raise GpuplanError(field, str(p), "not a Hugging Face config (a JSON object)")
    return cfg


def _text_part(cfg: dict) -> tuple[dict, dict]:
    """A multimodal config's text model (its nested text_config, with the parent's tie setting if
    the nested one has none) and the transformers defaults for its model_type."""
    kind = str(cfg.get("model_type", ""))
    defaults = hf_defaults().get(kind, {})
    if isinstance(cfg.get("text_config"), dict) and (defaults.get("text_config") or "num_hidden_layers" not in cfg):
        text = dict(cfg["text_config"])
        text.setdefault("model_type", f"{kind}_text")
        if "tie_word_embeddings" in cfg:
            text.setdefault("tie_word_embeddings", cfg["tie_word_embeddings"])
        return text, hf_defaults().get(str(text["model_type"]), {})
    return cfg, defaults


def _moe_layers(cfg: dict, layers: int) -> int:
    """How many layers are mixture-of-experts: every `interleave_moe_layer_step`-th (Llama 4) or
    `decoder_sparse_step`-th (Qwen MoE) one, less `mlp_only_layers`; after `first_k_dense_replace`
    dense ones (DeepSeek)."""
    step = cfg.get("interleave_moe_layer_step") or cfg.get("decoder_sparse_step") or 1
    first = cfg.get("first_k_dense_replace") or 0
    dense_only = set(cfg.get("mlp_only_layers") or [])
    moe = {i for i in range(first, layers) if (i + 1) % step == 0}
    return len(moe - dense_only)


def from_hf_config(path: str | Path, field: str = "hf_config") -> ModelSpec:
    """A ModelSpec from a local Hugging Face config.json (a file, or the folder holding one; read
    from disk, nothing is downloaded). Keys the file leaves out take transformers' defaults for its
    model_type (catalog/hf_defaults.yaml); multimodal configs are read from their text_config."""
    p = Path(path)
    if not str(path).strip():
        raise GpuplanError(field, path, "give the path of a config.json")
    top = _read_config(p, field)
    cfg, defaults = _text_part(top)
    cfg = {**defaults.get("config", {}), **{k: v for k, v in cfg.items() if v is not None}}

    def get(*keys, default=None):
        for k in keys:
            if cfg.get(k) is not None:
                return cfg[k]
        return default

    hidden = get("hidden_size", "n_embd", "d_model")
    heads = get("num_attention_heads", "n_head")
    layers = get("num_hidden_layers", "n_layer", "num_layers")
    if not (hidden and heads and layers):
        raise GpuplanError(field, path, "needs hidden_size, num_attention_heads and num_hidden_layers")
    ffn = get("intermediate_size_mlp", "intermediate_size", "ffn_hidden_size", "n_inner", default=4 * hidden)
    act = str(get("hidden_act", "hidden_activation", "activation_function", default="silu")).lower()
    gated = bool(defaults.get("gated")) or act in ("silu", "swiglu", "geglu", "gelu_pytorch_tanh") or "glu" in act
    experts = get("n_routed_experts", "num_local_experts", "num_experts", default=0)
    folder = p if p.is_dir() else p.parent
    spec = dict(
        id=normalize(folder.name or "hf-model") or "hf-model",
        name=str(top.get("_name_or_path") or folder.name or p.name),
        layers=layers, hidden=hidden, ffn=ffn, heads=heads,
        kv_heads=get("num_key_value_heads", "multi_query_group_num", default=heads),
        head_dim=get("head_dim"),
        vocab=get("vocab_size", "padded_vocab_size"),
        seq_len=get("max_position_embeddings", "seq_length", "n_positions", default=4096),
        mlp="gated" if gated else "plain",
        tied_embeddings=bool(get("tie_word_embeddings", default=False)),
        qkv_bias=bool(get("attention_bias", "add_qkv_bias", default=defaults.get("qkv_bias", False))),
        source=f"local config.json: {p}" + (f" (transformers defaults for {cfg.get('model_type')})"
                                            if defaults else ""),
    )
    if spec["head_dim"] is not None and spec["head_dim"] * heads == hidden:
        spec["head_dim"] = None
    if cfg.get("multi_query_attention") is False:
        spec["kv_heads"] = heads
    if experts:
        moe_ffn = get("moe_intermediate_size", default=cfg.get("intermediate_size", ffn))
        shared = get("n_shared_experts", default=0)
        if not shared and cfg.get("shared_expert_intermediate_size"):  # Qwen2-MoE: one wide shared expert
            shared = max(1, round(cfg["shared_expert_intermediate_size"] / moe_ffn))
        if not shared and str(cfg.get("model_type", "")).startswith("llama4"):
            shared = 1  # Llama 4: one shared expert beside the routed ones in every MoE layer
        spec.update(experts=experts, experts_per_token=get("num_experts_per_tok", "experts_per_token", "top_k"),
                    shared_experts=shared, moe_ffn=moe_ffn, dense_layers=layers - _moe_layers(cfg, layers))
        if cfg.get("topk_group") and cfg.get("n_group", 1) > 1:
            spec["expert_node_limit"] = cfg["topk_group"]
    if cfg.get("kv_lora_rank"):
        spec.update(attention="mla", q_lora_rank=cfg.get("q_lora_rank"), kv_lora_rank=cfg["kv_lora_rank"],
                    qk_rope_head_dim=cfg["qk_rope_head_dim"], qk_nope_head_dim=cfg["qk_nope_head_dim"],
                    v_head_dim=cfg["v_head_dim"])
    try:
        return ModelSpec(**spec)
    except ValidationError as exc:   # name the model field and the value the file gave
        err = exc.errors()[0]
        name = ".".join(str(x) for x in err["loc"]) or "model"
        raise GpuplanError(field, path, f"{name}={err.get('input')!s}: {err['msg']}") from None
    except TypeError as exc:
        raise GpuplanError(field, path, str(exc).splitlines()[0]) from None


# Standard dense shape for `--params N`: GPT-3/Megatron-style decoders keep about 128 units of
# hidden size per layer (GPT-3 175B: 12288/96; Megatron 2021 Table 1 rows: 80-200) and 128 per
# head; FFN = 4h; vocabulary 51,200 (GPT-2's 50,257 padded, Megatron-LM's default padding). The
# hidden size is a multiple of 8 heads (1,024) from 2,048 up (below, the vocabulary dominates and
# 1,024 steps would leave a 125M model 2 layers), as published models' are (Llama 2:
# 4,096 / 5,120 / 8,192; GPT-3: 12,288), so tensor parallelism of 2, 4 and 8 can split the heads
# (a hidden size of 71 heads left a 70B model TP 1 or 71 only).
HIDDEN_PER_LAYER = 128
HEAD_DIM = 128
HEAD_GROUP = 8
DENSE_VOCAB = 51200


def dense_shape(params: float, layers: int | None = None, hidden: int | None = None,
                heads: int | None = None, kv_heads: int | None = None,
                seq_len: int | None = None) -> ModelSpec:
    """A standard dense decoder of about `params` parameters (12*L*h^2 + V*h), with overrides."""
    if hidden is None:
        guess = (params * HIDDEN_PER_LAYER / 12.0) ** (1 / 3) if layers is None else math.sqrt(
            params / (12.0 * layers))
        step = HEAD_DIM * HEAD_GROUP if guess >= 2 * HEAD_DIM * HEAD_GROUP else HEAD_DIM
        hidden = max(HEAD_DIM, int(round(guess / step)) * step)
    if layers is None:
        layers = max(1, round((params - 2 * DENSE_VOCAB * hidden) / (12 * hidden * hidden)))
    heads = heads or max(1, hidden // HEAD_DIM)
    return ModelSpec(
        id=f"dense-{params / 1e9:g}b", name=f"dense {params / 1e9:g}B (standard shape)",
        layers=layers, hidden=hidden, ffn=4 * hidden, heads=heads, kv_heads=kv_heads or heads,
        vocab=DENSE_VOCAB, seq_len=seq_len or 4096, mlp="plain",
        source="gpuplan standard dense shape (h/L = 128, head 128, heads a multiple of 8, FFN 4h)",
    )
