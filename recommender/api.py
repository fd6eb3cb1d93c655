"""The Python API: the CLI's operations, taking what a person types and returning pydantic
objects and pandas DataFrames. The CLI is a thin layer over these functions."""

from __future__ import annotations

import pandas as pd

from recommender import catalog
from recommender.errors import GpuplanError
from recommender.evaluate import Evaluation, evaluate
from recommender.spec import ModelSpec, TrainJob, TrainLayout
from recommender.units import parse_count, parse_int

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022 (arXiv 2203.15556), Table 3: ~20 tokens/param
ACQUISITIONS = {"cloud": "on_demand", "on-demand": "on_demand", "on_demand": "on_demand",
                "ondemand": "on_demand", "spot": "spot", "reserved": "reserved", "buy": "buy"}
RECOMPUTE = ("none", "selective", "full")
PRECISIONS = ("bf16", "fp16", "fp8", "fp32")


def build_model(model: str | None = None, params: str | float | None = None,
                hf_config: str | None = None, layers=None, hidden=None, heads=None,
                kv_heads=None, seq_len=None) -> ModelSpec:
    """A model from a preset name, a local HF config.json, or a parameter count (+ overrides)."""
    given = [x for x in (model, params, hf_config) if x is not None]
    if len(given) != 1:
        raise GpuplanError("model", model or params or hf_config,
                           "give exactly one of --model NAME, --params 100B or --hf-config PATH")
    ints = {k: (None if v is None else parse_int(k.replace("_", "-"), v))
            for k, v in dict(layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads,
                             seq_len=seq_len).items()}
    if params is not None:
        return catalog.dense_shape(parse_count("params", params), **ints)
    spec = catalog.model(model) if model is not None else catalog.from_hf_config(hf_config)
    overrides = {k: v for k, v in ints.items() if v is not None}
    if overrides:
        data = spec.model_dump() | overrides
        data["source"] = spec.source + " (with overrides: " + ", ".join(f"{k}={v}" for k, v in overrides.items()) + ")"
        spec = ModelSpec(**data)
    return spec


def build_job(spec: ModelSpec, tokens=None, global_batch=None, seq_len=None) -> tuple[TrainJob, list[str]]:
    notes = []
    if tokens is None:
        n_tokens = CHINCHILLA_TOKENS_PER_PARAM * spec.total_params
        notes.append(f"--tokens not given: using the compute-optimal {CHINCHILLA_TOKENS_PER_PARAM} tokens "
                     f"per parameter (Hoffmann et al. 2022) = {n_tokens:.3g}")
    else:
        n_tokens = parse_count("tokens", tokens)
    batch = (catalog.assumption("default_global_batch_tokens") if global_batch is None
             else parse_count("global-batch", global_batch))
    seq = spec.seq_len if seq_len is None else parse_int("seq-len", seq_len)
    if batch < seq:
        raise GpuplanError("global-batch", global_batch, f"must hold at least one sequence of {seq} tokens")
    return TrainJob(model=spec, tokens=n_tokens, global_batch_tokens=batch, seq_len=seq), notes


def build_layout(gpu: str, count=None, tp=1, pp=1, dp=None, zero=1, recompute="selective",
                 micro_batch=1, precision="bf16", acquisition="cloud", provider=None) -> TrainLayout:
    acc = catalog.accelerator(gpu)
    tp_, pp_ = parse_int("tp", tp), parse_int("pp", pp)
    zero_ = parse_int("zero", zero, minimum=0)
    if zero_ > 3:
        raise GpuplanError("zero", zero, "ZeRO stage must be 0, 1, 2 or 3")
    if str(recompute).lower() not in RECOMPUTE:
        raise GpuplanError("recompute", recompute, f"must be one of {', '.join(RECOMPUTE)}")
    if str(precision).lower() not in PRECISIONS:
        raise GpuplanError("precision", precision, f"must be one of {', '.join(PRECISIONS)}")
    acq = ACQUISITIONS.get(str(acquisition).lower())
    if acq is None:
        raise GpuplanError("acquisition", acquisition, "must be one of cloud, spot, reserved, buy")
    if dp is not None:
        dp_ = parse_int("dp", dp)
        if count is not None and parse_int("count", count) != tp_ * pp_ * dp_:
            raise GpuplanError("count", count, f"must equal tp*pp*dp = {tp_}*{pp_}*{dp_} = {tp_ * pp_ * dp_}")
    elif count is not None:
        n = parse_int("count", count)
        if n % (tp_ * pp_):
            raise GpuplanError("count", count, f"must be a multiple of tp*pp = {tp_ * pp_}")
        dp_ = n // (tp_ * pp_)
    else:
        dp_ = 1
    return TrainLayout(accelerator=acc.id, tp=tp_, pp=pp_, dp=dp_, zero=zero_,
                       recompute=str(recompute).lower(), micro_batch=parse_int("micro-batch", micro_batch),
                       precision=str(precision).lower(), acquisition=acq, provider=provider)


def evaluate_config(*, model=None, params=None, hf_config=None, layers=None, hidden=None, heads=None,
                    kv_heads=None, seq_len=None, tokens=None, global_batch=None, gpu: str, count=None,
                    tp=1, pp=1, dp=None, zero=1, recompute="selective", micro_batch=1,
                    precision="bf16", acquisition="cloud", provider=None, headroom=None,
                    amortize=False, own=0) -> Evaluation:
    """`gpuplan evaluate`: one fixed configuration in, the full breakdown out."""
    spec = build_model(model, params, hf_config, layers, hidden, heads, kv_heads, seq_len)
    job, notes = build_job(spec, tokens, global_batch, seq_len)
    layout = build_layout(gpu, count, tp, pp, dp, zero, recompute, micro_batch, precision, acquisition, provider)
    if headroom is not None:
        headroom = parse_count("headroom", headroom, allow_zero=True)
        if headroom >= 1:
            raise GpuplanError("headroom", headroom, "must be a fraction below 1, e.g. 0.1")
    ev = evaluate(job, layout, headroom=headroom, amortize=amortize, owned=parse_int("own", own, minimum=0))
    return ev.model_copy(update={"warnings": notes + ev.warnings})


def catalog_frame(vendor: str | None = None, min_memory_gib: float | None = None) -> pd.DataFrame:
    """Accelerators with their headline figures, cheapest on-demand price and source."""
    rows = []
    for acc in catalog.accelerators().values():
        if vendor and acc.vendor.lower() != vendor.lower():
            continue
        if min_memory_gib and (acc.memory_gib or 0) < min_memory_gib:
            continue
        prices = [p for p in catalog.prices_for(acc.id) if p.tier == "on_demand"]
        cheapest = min(prices, key=lambda p: p.price_usd_per_gpu_hour) if prices else None
        buy = catalog.purchase_for(acc.id)
        rows.append({
            "id": acc.id, "name": acc.name, "vendor": acc.vendor, "memory_gib": acc.memory_gib,
            "memory_bw_gb_s": acc.memory_bw_gb_s, "bf16_tflops": acc.bf16_tflops,
            "fp8_tflops": acc.fp8_tflops, "tdp_w": acc.tdp_w,
            "on_demand_usd_per_gpu_hour": cheapest.price_usd_per_gpu_hour if cheapest else None,
            "on_demand_provider": cheapest.provider if cheapest else None,
            "buy_usd_per_gpu": buy.price_usd_per_gpu if buy else None,
            "source": acc.source, "as_of": acc.as_of.isoformat(),
        })
    return pd.DataFrame(rows)


def prices_frame(gpu: str) -> pd.DataFrame:
    acc = catalog.accelerator(gpu)
    rows = [p.model_dump(mode="json") for p in catalog.prices_for(acc.id)]
    buy = [p.model_dump(mode="json") | {"tier": "buy"} for p in catalog.purchase_prices() if p.accelerator == acc.id]
    return pd.DataFrame(rows + buy)


def models_frame(family: str | None = None, search: str | None = None) -> pd.DataFrame:
    """Presets with their architecture, derived and published parameter counts, and source."""
    rows = []
    for m in catalog.models().values():
        if family and m.family.lower() != family.lower():
            continue
        if search and search.lower() not in (m.id + " " + m.name + " " + " ".join(m.aliases)).lower():
            continue
        rows.append({
            "id": m.id, "name": m.name, "params_b": round(m.total_params / 1e9, 2),
            "active_params_b": round(m.active_params / 1e9, 2) if m.is_moe else None,
            "published_params_b": m.published_params_b, "layers": m.layers, "hidden": m.hidden,
            "ffn": m.ffn, "heads": m.heads, "kv_heads": m.kv_heads, "vocab": m.vocab,
            "seq_len": m.seq_len, "experts": f"{m.experts_per_token}/{m.experts}" if m.is_moe else "",
            "source": m.source, "as_of": m.as_of.isoformat() if m.as_of else "",
        })
    return pd.DataFrame(rows)


def _split(field: str, text) -> list[str] | None:
    if text is None:
        return None
    items = [t.strip() for t in str(text).split(",") if t.strip()]
    if not items:
        raise GpuplanError(field, text, "give a comma-separated list")
    return items


def parse_own(own) -> dict[str, int]:
    """'h100-sxm:256,a100:64' (or a list of such) -> {'h100-sxm': 256, 'a100-80g': 64}."""
    out: dict[str, int] = {}
    for item in ([own] if isinstance(own, str) else list(own or [])):
        for part in _split("own", item) or []:
            gpu, sep, n = part.rpartition(":")
            if not sep or not gpu:
                raise GpuplanError("own", part, "write it as GPU:COUNT, e.g. h100-sxm:256")
            out[catalog.accelerator(gpu, field="own").id] = parse_int("own", n)
    return out


def train(*, model=None, params=None, hf_config=None, layers=None, hidden=None, heads=None, kv_heads=None,
          seq_len=None, tokens=None, global_batch=None, objective="cost", budget=None, deadline=None,
          max_gpus=None, power_kw=None, gpus=None, vendors=None, providers=None, precision=None,
          acquisition=None, own=None, top=5, diverse=False, amortize=False, time_limit="10s"):
    """`gpuplan train`: the exact optimum over the catalog, ranked alternatives and why."""
    from recommender.planner import plan
    from recommender.solver import Limits
    from recommender.units import parse_days, parse_duration_s, parse_usd

    objective = str(objective).lower()
    owned = parse_own(own)
    gpu_ids = None if gpus is None else tuple(catalog.accelerator(g, field="gpus").id for g in _split("gpus", gpus))
    vendor_list = _split("vendors", vendors)
    known_vendors = sorted({a.vendor for a in catalog.accelerators().values()})
    for v in vendor_list or []:
        if v.lower() not in known_vendors:
            raise GpuplanError("vendors", v, f"unknown vendor; known: {', '.join(known_vendors)}")
    precisions = tuple(p.lower() for p in (_split("precision", precision) or ["bf16"]))
    for p in precisions:
        if p not in PRECISIONS:
            raise GpuplanError("precision", p, f"must be one of {', '.join(PRECISIONS)}")
    acqs = None
    if acquisition is not None:
        acqs = []
        for a in _split("acquisition", acquisition):
            if a.lower() not in ACQUISITIONS:
                raise GpuplanError("acquisition", a, "must be one of cloud, spot, reserved, buy")
            acqs.append(ACQUISITIONS[a.lower()])
        acqs = tuple(dict.fromkeys(acqs))
    limits = Limits(
        budget_usd=None if budget is None else parse_usd("budget", budget),
        deadline_days=None if deadline is None else parse_days("deadline", deadline),
        max_gpus=None if max_gpus is None else parse_int("max-gpus", max_gpus),
        power_kw=None if power_kw is None else parse_count("power-kw", power_kw),
        gpus=gpu_ids, vendors=None if vendor_list is None else tuple(vendor_list),
        providers=None if providers is None else tuple(_split("providers", providers)),
        precisions=None, acquisitions=acqs)
    if objective == "compute" and model is None and params is None and hf_config is None:
        return _compute_optimal(limits, space_kwargs=dict(precisions=precisions, owned=owned, acqs=acqs,
                                                          gpu_ids=gpu_ids, amortize=amortize),
                                top=parse_int("top", top), diverse=diverse,
                                time_limit_s=parse_duration_s("time-limit", time_limit))
    spec = build_model(model, params, hf_config, layers, hidden, heads, kv_heads, seq_len)
    job, notes = build_job(spec, tokens, global_batch, seq_len)
    # max-gpus is a limit (relaxable), not the space's edge
    space = _space(limits, precisions, owned, acqs, gpu_ids, amortize)
    top_k = parse_int("top", top)
    return plan(job, limits, space, objective=objective, top=top_k, diverse=diverse,
                time_limit_s=parse_duration_s("time-limit", time_limit), notes=notes)


def _space(limits, precisions, owned, acqs, gpu_ids, amortize):
    from recommender.candidates import SearchSpace

    cap = max(16384, limits.max_gpus or 0)
    return SearchSpace(accelerators=gpu_ids or tuple(catalog.accelerators()), precisions=precisions, owned=owned,
                       acquisitions=acqs or ("on_demand", "spot", "reserved", "buy"),
                       max_gpus=max(cap, max(owned.values(), default=0)), amortize=amortize,
                       providers=limits.providers)


def _compute_optimal(limits, space_kwargs, top, diverse, time_limit_s, iterations=8):
    """No model given: the compute-optimal dense model for what budget and deadline buy.

    Fixed point of Hoffmann et al. 2022: with D = 20 N tokens, C = 6 N D = 120 N^2, so
    N = sqrt(C / 120); start at 10B, plan the most compute for that shape, re-size, repeat
    until N moves by less than 2%."""
    from recommender.planner import plan

    space = _space(limits, **space_kwargs)
    n = 10e9
    result = None
    for _ in range(iterations):
        spec = catalog.dense_shape(n)
        job = TrainJob(model=spec, tokens=CHINCHILLA_TOKENS_PER_PARAM * spec.total_params,
                       global_batch_tokens=catalog.assumption("default_global_batch_tokens"), seq_len=spec.seq_len)
        result = plan(job, limits, space, objective="compute", top=1, time_limit_s=time_limit_s)
        if not result.plans:
            return result
        c = result.plans[0].total_flops
        n_next = (c / (6.0 * CHINCHILLA_TOKENS_PER_PARAM)) ** 0.5
        if abs(n_next / n - 1) < 0.02:
            break
        n = (n * n_next) ** 0.5  # damped: throughput changes with the shape
    spec = catalog.dense_shape(n)
    job = TrainJob(model=spec, tokens=CHINCHILLA_TOKENS_PER_PARAM * spec.total_params,
                   global_batch_tokens=catalog.assumption("default_global_batch_tokens"), seq_len=spec.seq_len)
    result = plan(job, limits, space, objective="compute", top=top, diverse=diverse, time_limit_s=time_limit_s)
    if result.plans:
        best = result.plans[0]
        result.notes.insert(0, f"no model given: a {spec.total_params / 1e9:.1f}B dense model (standard shape) on "
                               f"{best.tokens:.3g} tokens, {best.tokens / spec.total_params:.0f} tokens per parameter; "
                               f"compute-optimal for {best.flops_6nd:.3g} FLOPs (6ND) is "
                               f"{(best.flops_6nd / 120) ** 0.5 / 1e9:.1f}B on 20 tokens per parameter "
                               f"(Hoffmann et al. 2022)")
    return result
