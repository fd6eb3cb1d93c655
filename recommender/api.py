"""The Python API: the CLI's operations, taking what a person types and returning pydantic
objects and pandas DataFrames. The CLI is a thin layer over these functions."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from recommender import catalog, units
from recommender.errors import GpuplanError, did_you_mean
from recommender.evaluate import PRECISIONS, Evaluation, evaluate
from recommender.spec import ModelSpec, TrainJob, TrainLayout
from recommender.units import parse_count, parse_int

if TYPE_CHECKING:
    import pandas as pd

CHINCHILLA_TOKENS_PER_PARAM = 20  # Hoffmann et al. 2022 (arXiv 2203.15556), Table 3: ~20 tokens/param
ACQUISITIONS = {"cloud": "on_demand", "on-demand": "on_demand", "on_demand": "on_demand",
                "ondemand": "on_demand", "spot": "spot", "reserved": "reserved", "serverless": "serverless",
                "buy": "buy"}
ACQUISITION_HELP = "must be one of cloud, spot, reserved, serverless, buy"
RECOMPUTE = ("none", "selective", "full")


MAX_TOKENS = 1e16      # training tokens: 250x the largest published run (Qwen3's 36T)
MAX_DEADLINE_DAYS = 36500.0   # deadlines and horizons: 100 years
MAX_BATCH = 100_000   # serve --batch: sequences in one replica's batch (engines allow a few thousand)

def build_model(model: str | None = None, params: str | float | None = None,
                hf_config: str | None = None, layers=None, hidden=None, heads=None,
                kv_heads=None, seq_len=None) -> ModelSpec:
    """A model from a preset name, a local HF config.json, or a parameter count (+ overrides)."""
    given = [x for x in (model, params, hf_config) if x is not None]
    if len(given) != 1:
        raise GpuplanError("model", model or params or hf_config,
                           "give exactly one of --model (a preset), --params (a count, e.g. 100B) or --hf-config "
                           "(a config.json)")
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


METHODS = ("full", "lora", "qlora")


def default_seq_len(spec: ModelSpec, finetune: bool) -> tuple[int, str]:
    """The training sequence length when none is given: the preset's published pre-training length
    (not its maximum context), or for fine-tuning 4,096 tokens (Llama 2's SFT length); never above
    the model's context. Returns the length and the note that says where it came from."""
    a = catalog.assumptions()
    if finetune:
        seq = min(spec.seq_len, int(a["default_finetune_seq_len"].value))
        why = "fine-tuning default (Llama 2 SFT length)"
    elif spec.pretrain_seq_len:
        seq = min(spec.seq_len, spec.pretrain_seq_len)
        why = "its published pre-training length"
    else:
        seq = min(spec.seq_len, int(a["default_train_seq_len"].value))
        why = "no published pre-training length: gpuplan's default"
    ctx = f"; the model takes up to {spec.seq_len:,}" if spec.seq_len > seq else ""
    return seq, f"sequence length {seq:,} tokens ({why}{ctx}); set it with --seq-len"


ATTENTION = ("flash", "eager")
LOSSES = ("standard", "fused")
GRAD_SYNCS = ("micro-batch", "step")
QUANTS = ("nf4-dq", "nf4", "torchao-nf4")


def build_job(spec: ModelSpec, tokens=None, global_batch=None, seq_len=None, method="full", lora_rank=None,
              epochs=None, finetune=False, attention="flash", loss="standard", stack=None,
              grad_sync="micro-batch", quant=None) -> tuple[TrainJob, list[str]]:
    """A training (or, with `finetune`, fine-tuning) job: tokens x epochs, batch, method."""
    notes = []
    attention = str(attention).lower()
    if attention not in ATTENTION:
        raise GpuplanError("attention", attention, "must be flash (FlashAttention / fused SDPA: no s^2 scores "
                                                   "stored) or eager (the scores are stored)")
    if stack is not None and str(stack).lower() not in ("megatron", "pytorch"):
        raise GpuplanError("stack", stack, "must be megatron (Megatron-LM / NeMo / Transformer Engine kernels) or "
                                           "pytorch (PyTorch-native FSDP: torchtitan, llm-foundry, Hugging Face)")
    loss = str(loss).lower()
    if loss not in LOSSES:
        raise GpuplanError("loss", loss, "must be standard (cross-entropy on fp32 logits) or fused (a fused or "
                                         "chunked cross-entropy that never holds fp32 logits)")
    grad_sync = str(grad_sync).lower()
    if grad_sync not in GRAD_SYNCS:
        raise GpuplanError("grad-sync", grad_sync, "must be micro-batch (ZeRO-3 / FSDP reduce-scatters each "
                                                   "micro-batch's gradients) or step (FSDP's no_sync: gradients "
                                                   "accumulated unsharded, reduced once a step)")
    method = str(method).lower()
    if method not in METHODS:
        raise GpuplanError("method", method, f"must be one of {', '.join(METHODS)}")
    if lora_rank is not None and method == "full":
        raise GpuplanError("lora-rank", lora_rank, "applies to --method lora or qlora")
    if quant is not None and method != "qlora":
        raise GpuplanError("quant", quant, "applies to --method qlora (the 4-bit base's storage)")
    quant = "nf4-dq" if quant is None else str(quant).lower()
    if quant not in QUANTS:
        raise GpuplanError("quant", quant, "must be nf4-dq (bitsandbytes NF4 with double-quantized constants, "
                                           "the QLoRA paper's), nf4 (bitsandbytes, an fp32 constant per 64 "
                                           "weights) or torchao-nf4 (torchao's NF4, as torchtune runs it)")
    rank = 16 if lora_rank is None else parse_int("lora-rank", lora_rank)
    if method != "full" and rank > spec.hidden:   # an adapter of rank r factors a map as (d x r)(r x k)
        raise GpuplanError("lora-rank", lora_rank, f"exceeds the hidden size {spec.hidden} of {spec.id}: a "
                           "low-rank adapter's rank is at most the smaller side of the map it adapts")
    n_epochs = 1.0 if epochs is None else parse_count("epochs", epochs)
    if finetune and tokens is None:
        raise GpuplanError("tokens", None, "give the fine-tuning dataset's size, e.g. --tokens 1B")
    if tokens is None:
        n_tokens = CHINCHILLA_TOKENS_PER_PARAM * spec.total_params
        notes.append(f"--tokens not given: using the compute-optimal {CHINCHILLA_TOKENS_PER_PARAM} tokens "
                     f"per parameter (Hoffmann et al. 2022) = {n_tokens:.3g}")
    else:
        n_tokens = parse_count("tokens", tokens)
    n_tokens *= n_epochs
    if n_tokens > MAX_TOKENS:
        raise GpuplanError("tokens" if epochs is None else "epochs", tokens if epochs is None else epochs,
                           f"{n_tokens:.3g} tokens in all: must be at most {MAX_TOKENS:.0e} (the largest published "
                           "runs train about 4e13)")
    if seq_len is None:
        seq, note = default_seq_len(spec, finetune)
        notes.append(note)
    else:
        seq = parse_int("seq-len", seq_len)
    if global_batch is not None:
        batch = parse_count("global-batch", global_batch)
    elif finetune:
        batch = catalog.assumption("default_finetune_batch_seqs") * seq
    else:
        batch = catalog.assumption("default_global_batch_tokens")
    if batch < seq:
        raise GpuplanError("global-batch", global_batch, f"must hold at least one sequence of {seq} tokens")
    if n_tokens / n_epochs < seq:   # each epoch (the dataset) holds at least one sequence
        raise GpuplanError("tokens", tokens, f"{n_tokens / n_epochs:.3g} tokens"
                           + (" an epoch" if epochs is not None else "") + f": fewer than one sequence of {seq:,} tokens")
    return TrainJob(model=spec, tokens=n_tokens, global_batch_tokens=batch, seq_len=seq, method=method,
                    lora_rank=rank, attention=attention, loss=loss, grad_sync=grad_sync, quant=quant,
                    stack=None if stack is None else str(stack).lower()), notes


def site_values(goodput=None, pue=None, electricity=None, colo=None, depreciation_years=None) -> dict[str, float]:
    """What a user says of their own site, as catalog assumption values (catalog.SITE names)."""
    from recommender.units import parse_fraction, parse_usd

    out = {}
    if goodput is not None:
        out["goodput"] = parse_fraction("goodput", goodput)
    if pue is not None:
        out["pue"] = parse_count("pue", pue)
        if out["pue"] < 1:
            raise GpuplanError("pue", pue, "is facility power over IT power: 1 or more, e.g. 1.3")
    if electricity is not None:
        out["electricity_usd_per_kwh"] = parse_usd("electricity", electricity)
    if colo is not None:
        out["colocation_usd_per_kw_month"] = parse_usd("colo", colo)
    if depreciation_years is not None:
        out["useful_life_years"] = parse_count("depreciation-years", depreciation_years)
    given = dict(goodput=goodput, pue=pue, electricity=electricity, colo=colo, depreciation_years=depreciation_years)
    for option, name in catalog.SITE.items():
        lo, hi = catalog.SITE_RANGE[name]
        if name in out and not lo <= out[name] <= hi:
            raise GpuplanError(option.replace("_", "-"), given[option], f"must be from {lo:g} to {hi:g}{catalog.SITE_UNIT.get(name, '')}")
    return out


def own_purchase_prices(items) -> list:
    """'h100-sxm=25000' (repeatable): what you pay per GPU, server included, replacing the
    catalog's purchase price of that part for this command."""
    from datetime import date

    from recommender.spec import PURCHASE_PRICE_RANGE_USD, PurchasePrice
    from recommender.units import fmt_usd, parse_usd

    out = []
    for item in ([items] if isinstance(items, str) else list(items or [])):
        gpu, sep, value = str(item).partition("=")
        if not sep or not gpu.strip():
            raise GpuplanError("buy-price", item, "write it as GPU=PRICE, e.g. h100-sxm=25000")
        price = parse_usd("buy-price", value)
        lo, hi = PURCHASE_PRICE_RANGE_USD
        if not lo <= price <= hi:
            raise GpuplanError("buy-price", item, f"a purchase price per GPU must be from {fmt_usd(lo)} to "
                               f"{fmt_usd(hi)}")
        out.append(PurchasePrice(accelerator=catalog.accelerator(gpu.strip(), field="buy-price").id,
                                 price_usd_per_gpu=price, basis="system_per_gpu",
                                 source="your --buy-price", as_of=date.today()))
    return out


def check_provider(provider: str, field: str = "provider") -> None:
    """A provider someone typed must be one the catalog knows (the price itself may be missing)."""
    known = sorted({p.provider.lower() for p in catalog.cloud_prices()})
    if str(provider).lower() not in known:
        hint = did_you_mean(str(provider), known)
        raise GpuplanError(field, provider, f"unknown provider; {hint + ' ' if hint else ''}known: {', '.join(known)}")


def _check_providers(text) -> list[str]:
    items = _split("providers", text)
    for p in items:
        if p.lower() not in ("owned", "purchase"):
            check_provider(p, "providers")
    return items


def build_layout(gpu: str, count=None, tp=1, pp=1, dp=None, zero=1, recompute="selective",
                 micro_batch=1, precision="bf16", acquisition="cloud", provider=None, ep=1,
                 ep_overlap=False, vp=1, cp=1) -> TrainLayout:
    acc = catalog.accelerator(gpu)
    tp_, pp_, vp_, cp_ = parse_int("tp", tp), parse_int("pp", pp), parse_int("vp", vp), parse_int("cp", cp)
    zero_ = parse_int("zero", zero, minimum=0)
    if zero_ > 3:
        raise GpuplanError("zero", zero, "ZeRO stage must be 0, 1, 2 or 3")
    if str(recompute).lower() not in RECOMPUTE:
        raise GpuplanError("recompute", recompute, f"must be one of {', '.join(RECOMPUTE)}")
    if str(precision).lower() not in PRECISIONS:
        raise GpuplanError("precision", precision, f"must be one of {', '.join(PRECISIONS)}")
    acq = ACQUISITIONS.get(str(acquisition).lower())
    if acq is None:
        raise GpuplanError("acquisition", acquisition, ACQUISITION_HELP)
    if dp is not None:
        dp_ = parse_int("dp", dp)
        if count is not None and parse_int("count", count) != tp_ * pp_ * dp_ * cp_:
            raise GpuplanError("count", count, f"must equal tp*pp*cp*dp = {tp_}*{pp_}*{cp_}*{dp_} = "
                                               f"{tp_ * pp_ * cp_ * dp_}")
    elif count is not None:
        n = parse_int("count", count)
        if n % (tp_ * pp_ * cp_):
            raise GpuplanError("count", count, f"must be a multiple of tp*pp*cp = {tp_ * pp_ * cp_}")
        dp_ = n // (tp_ * pp_ * cp_)
    else:
        dp_ = 1
    if provider is not None:
        check_provider(provider)
    return TrainLayout(accelerator=acc.id, tp=tp_, pp=pp_, vp=vp_, cp=cp_, dp=dp_, ep=parse_int("ep", ep), ep_overlap=ep_overlap,
                       zero=zero_,
                       recompute=str(recompute).lower(), micro_batch=parse_int("micro-batch", micro_batch),
                       precision=str(precision).lower(), acquisition=acq, provider=provider)


def evaluate_config(*, model=None, params=None, hf_config=None, layers=None, hidden=None, heads=None,
                    kv_heads=None, seq_len=None, tokens=None, global_batch=None, gpu: str, count=None,
                    tp=1, pp=1, dp=None, zero=1, recompute="selective", micro_batch=1,
                    precision="bf16", acquisition="cloud", provider=None, headroom=None,
                    amortize=False, own=0, ep=1, ep_overlap=False, method="full", lora_rank=None,
                    epochs=None, vp=1, cp=1, attention="flash", loss="standard", stack=None,
                    grad_sync="micro-batch", quant=None) -> Evaluation:
    """`gpuplan evaluate`: one fixed configuration in, the full breakdown out."""
    spec = build_model(model, params, hf_config, layers, hidden, heads, kv_heads, seq_len)
    job, notes = build_job(spec, tokens, global_batch, seq_len, method, lora_rank, epochs, attention=attention,
                           loss=loss, stack=stack, grad_sync=grad_sync, quant=quant)
    layout = build_layout(gpu, count, tp, pp, dp, zero, recompute, micro_batch, precision, acquisition, provider,
                          ep, ep_overlap, vp, cp)
    if headroom is not None:
        typed, headroom = headroom, parse_count("headroom", headroom, allow_zero=True)
        if headroom >= 1:
            raise GpuplanError("headroom", typed, "must be a fraction below 1, e.g. 0.1")
    from recommender import prices

    with prices.naming([layout.accelerator]):
        ev = evaluate(job, layout, headroom=headroom, amortize=amortize, owned=parse_int("own", own, minimum=0))
    return ev.model_copy(update={"warnings": notes + ev.warnings})


STACKS = ("megatron", "pytorch")


def calibrate(*, measured, stack=None, reset=False, **evaluate_kwargs) -> dict:
    """`gpuplan calibrate`: fit this accelerator's kernel efficiency (for one training stack) to a
    run the user measured on a stated layout, store it in $GPUPLAN_HOME/calibration.csv, and show
    the prediction before and after. Later `train`, `finetune`, `evaluate` and scenario files use it
    for that accelerator and stack."""
    import datetime

    if stack is not None and str(stack).lower() not in STACKS:
        raise GpuplanError("stack", stack, f"must be one of {', '.join(STACKS)}")
    acc = catalog.accelerator(evaluate_kwargs.get("gpu") or "h100-sxm")
    if reset:   # forgetting needs the part and the stack only, not a model
        kernels = str(stack).lower() if stack else ("megatron" if evaluate_kwargs.get("method", "full") == "full"
                                                     else "pytorch")
        path = catalog.calibration_path()
        _write_calibrations(path, [r for k, r in catalog.user_calibrations().items() if k != (acc.id, kernels)])
        return dict(accelerator=acc.id, stack=kernels, reset=True, path=str(path))
    spec = build_model(evaluate_kwargs.get("model"), evaluate_kwargs.get("params"), evaluate_kwargs.get("hf_config"),
                       evaluate_kwargs.get("layers"), evaluate_kwargs.get("hidden"), evaluate_kwargs.get("heads"),
                       evaluate_kwargs.get("kv_heads"), evaluate_kwargs.get("seq_len"))
    job, _ = build_job(spec, evaluate_kwargs.get("tokens") or "1B", evaluate_kwargs.get("global_batch"),
                       evaluate_kwargs.get("seq_len"), evaluate_kwargs.get("method", "full"),
                       evaluate_kwargs.get("lora_rank"), None, attention=evaluate_kwargs.get("attention", "flash"),
                       loss=evaluate_kwargs.get("loss", "standard"),
                       grad_sync=evaluate_kwargs.get("grad_sync", "micro-batch"),
                       quant=evaluate_kwargs.get("quant"))
    if stack is not None:
        job = job.model_copy(update={"stack": str(stack).lower()})
    path = catalog.calibration_path()
    key = (acc.id, job.kernels)
    kept = [r for k, r in catalog.user_calibrations().items() if k != key]
    text = re.sub(r"\s*(tokens|tok)/s(/gpu)?\s*$", "", str(measured).strip().lower())
    target = parse_count("measured", text)
    layout = build_layout(acc.id, evaluate_kwargs.get("count"), evaluate_kwargs.get("tp", 1),
                          evaluate_kwargs.get("pp", 1), evaluate_kwargs.get("dp"), evaluate_kwargs.get("zero", 1),
                          evaluate_kwargs.get("recompute", "selective"), evaluate_kwargs.get("micro_batch", 1),
                          evaluate_kwargs.get("precision", "bf16"), "cloud", None, evaluate_kwargs.get("ep", 1),
                          False, evaluate_kwargs.get("vp", 1), evaluate_kwargs.get("cp", 1))
    _write_calibrations(path, kept)  # predict "before" from the catalog's value
    before = evaluate(job, layout, headroom=0.0)
    rate = lambda e: evaluate(job, layout, headroom=0.0, efficiency=e).tokens_per_s_per_gpu  # noqa: E731
    lo, hi = catalog.CALIBRATION_RANGE
    if rate(hi) < target:
        raise GpuplanError("measured", measured, f"is faster than gpuplan's model allows for this layout at 100% kernel "
                                                 f"efficiency ({rate(hi):,.0f} tokens/s/GPU): check the layout")
    if rate(lo) > target:
        raise GpuplanError("measured", measured, f"is slower than 1% kernel efficiency predicts ({rate(lo):,.0f} "
                                                 "tokens/s/GPU): check the layout")
    for _ in range(50):  # tokens/s grows with the efficiency: bisect
        mid = (lo + hi) / 2
        lo, hi = (mid, hi) if rate(mid) < target else (lo, mid)
    base = (lo + hi) / 2  # in the catalog's terms: before the stack's ratio, which evaluate applies
    row = dict(accelerator=acc.id, stack=job.kernels, efficiency=f"{base:.4f}",
               measured=f"{target:,.0f} tokens/s/GPU, {spec.id} {layout.tp}x{layout.pp}x{layout.dp} "
                        f"(TP x PP x DP), {layout.precision}, seq {job.seq_len}",
               as_of=datetime.date.today().isoformat())
    _write_calibrations(path, kept + [row])
    after = evaluate(job, layout, headroom=0.0)
    return dict(accelerator=acc.id, stack=job.kernels, path=str(path), measured_tokens_per_s_per_gpu=target,
                before_tokens_per_s_per_gpu=before.tokens_per_s_per_gpu, after_tokens_per_s_per_gpu=after.tokens_per_s_per_gpu,
                before_efficiency=catalog.efficiency(acc.id).matmul_efficiency, after_efficiency=base,
                before_mfu=before.mfu, after_mfu=after.mfu, reset=False)


def _write_calibrations(path, rows) -> None:
    import csv

    path.parent.mkdir(parents=True, exist_ok=True)
    fields = list(catalog.CALIBRATION_COLUMNS)
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=fields, lineterminator="\n")
        w.writeheader()
        w.writerows([{k: r[k] for k in fields} for r in rows])


def catalog_frame(vendor: str | None = None, min_memory_gib: float | None = None) -> pd.DataFrame:
    """Accelerators with their headline figures, cheapest on-demand price and source."""
    import pandas as pd

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
    if not rows:
        vendors = sorted({a.vendor for a in catalog.accelerators().values()})
        if vendor and vendor.lower() not in vendors:
            raise GpuplanError("vendor", vendor, f"unknown vendor; known: {', '.join(vendors)}")
        raise GpuplanError("min-memory", f"{min_memory_gib:g}", "no accelerator has that much memory"
                           + (f" from vendor {vendor}" if vendor else ""))
    return pd.DataFrame(rows)


def prices_frame(gpu: str) -> pd.DataFrame:
    import pandas as pd

    acc = catalog.accelerator(gpu)
    rows = [p.model_dump(mode="json") for p in catalog.prices_for(acc.id)]
    buy = [p.model_dump(mode="json") | {"tier": "buy"} for p in catalog.purchase_prices() if p.accelerator == acc.id]
    return pd.DataFrame(rows + buy)


def prices_in_use(gpu: str | None = None, provider: str | None = None, tier: str | None = None) -> list[dict]:
    """`gpuplan prices`: every price the planner would use now (cloud rows per provider and tier,
    the purchase price per part), with its date, age, origin and source."""
    from datetime import date

    from recommender import prices as pr

    ids = [catalog.accelerator(gpu).id] if gpu else list(catalog.accelerators())
    tiers = None if tier is None else {ACQUISITIONS.get(str(tier).lower(), str(tier).lower())}
    if tiers and not tiers <= {"on_demand", "spot", "reserved", "serverless", "buy"}:
        raise GpuplanError("tier", tier, ACQUISITION_HELP)
    user = {catalog._price_key(p) for p in catalog._build(
        catalog.CloudPrice, pr.read_rows(pr.user_file()), str(pr.user_file()))}
    snap = {r["source"] for r in pr.read_rows(pr.SNAPSHOT)}
    rows = []
    for acc_id in ids:
        for p in catalog.prices_for(acc_id):
            origin = ("your file" if catalog._price_key(p) in user else
                      "snapshot" if p.source in snap else "catalog")
            rows.append(dict(accelerator=acc_id, provider=p.provider, tier=p.tier, region=p.region,
                             term_months=p.term_months, price_usd_per_gpu_hour=p.price_usd_per_gpu_hour,
                             published=None if p.currency == "USD" else f"{p.price:g} {p.currency}",
                             as_of=p.as_of.isoformat(), age_days=pr.age_days(p.as_of), origin=origin,
                             source=p.source))
        buy = catalog.purchase_for(acc_id)
        if buy is not None:
            rows.append(dict(accelerator=acc_id, provider="purchase", tier="buy", region="", term_months=None,
                             price_usd_per_gpu=buy.price_usd_per_gpu, basis=buy.basis,
                             published=None if buy.currency == "USD" else f"{buy.price:g} {buy.currency}",
                             as_of=buy.as_of.isoformat(), age_days=(date.today() - buy.as_of).days,
                             origin="catalog", source=buy.source))
    rows = [r for r in rows if (provider is None or r["provider"].lower() == provider.lower())
            and (tiers is None or r["tier"] in tiers)]
    if not rows:
        raise GpuplanError("gpu" if gpu else "provider" if provider else "tier", gpu or provider or tier,
                           "no price matches")
    return rows


def import_prices(path: str, as_of=None, regions=None, dry_run: bool = False
                  ) -> tuple[list[dict], str | None, list[str]]:
    """`gpuplan prices import`: SkyPilot-layout CSVs into the user's price file (or only read, with
    dry_run). Returns the rows, the file written and the broken prices skipped."""
    from datetime import date

    from recommender import prices as pr
    from recommender.spec import CLOUD_PRICE_RANGE_USD

    when = None
    if as_of is not None:
        try:
            when = date.fromisoformat(str(as_of))
        except ValueError:
            raise GpuplanError("as-of", as_of, "write the date as YYYY-MM-DD") from None
        if when > date.today():
            raise GpuplanError("as-of", as_of, f"is after today ({date.today().isoformat()}): a price is dated "
                               "when it was published or read")
    if not str(path).strip():
        raise GpuplanError("path", "''", "give a SkyPilot vms.csv, or a folder of <cloud>/vms.csv")
    skipped: list[str] = []
    rows = pr.import_catalog(path, when, tuple(regions or ()), skipped=skipped)
    if not rows and regions and pr.import_catalog(path, when):
        raise GpuplanError("region", ",".join(regions), "no priced accelerator row in this region; the file has "
                           "others (drop --region to see them)")
    if not rows:
        lo, hi = CLOUD_PRICE_RANGE_USD
        raise GpuplanError("path", path, f"no row names an accelerator gpuplan knows (catalog/skypilot_names.csv "
                           f"maps SkyPilot's names) at a price from ${lo:g} to ${hi:,.0f} per GPU-hour"
                           + (f"; skipped as broken: {'; '.join(skipped[:3])}" if skipped else ""))
    if dry_run:
        return rows, None, skipped
    return rows, str(pr.save_user_rows(rows)), skipped


def models_frame(family: str | None = None, search: str | None = None) -> pd.DataFrame:
    """Presets with their architecture, derived and published parameter counts, and source."""
    import pandas as pd

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
            "seq_len": m.seq_len, "train_seq_len": m.pretrain_seq_len, "experts": f"{m.experts_per_token}/{m.experts}" if m.is_moe else "",
            "source": m.source, "as_of": m.as_of.isoformat() if m.as_of else "",
        })
    if not rows:
        families = sorted({m.family.lower() for m in catalog.models().values()})
        if family and family.lower() not in families:
            raise GpuplanError("family", family, f"unknown family; known: {', '.join(families)}")
        raise GpuplanError("search", search, "no preset matches")
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
            acc_id = catalog.accelerator(gpu, field="own").id
            if acc_id in out:
                raise GpuplanError("own", part, f"{acc_id} is given twice: give its whole count once")
            out[acc_id] = parse_int("own", n)
    return out


def _allowed(gpus, vendors, acquisition):
    """The allowed accelerators, vendors and acquisitions a person typed (None = any)."""
    gpu_ids = None if gpus is None else tuple(catalog.accelerator(g, field="gpus").id for g in _split("gpus", gpus))
    vendor_list = _split("vendors", vendors)
    known_vendors = sorted({a.vendor for a in catalog.accelerators().values()})
    for v in vendor_list or []:
        if v.lower() not in known_vendors:
            raise GpuplanError("vendors", v, f"unknown vendor; known: {', '.join(known_vendors)}")
    acqs = None
    if acquisition is not None:
        acqs = []
        for a in _split("acquisition", acquisition):
            if a.lower() not in ACQUISITIONS:
                raise GpuplanError("acquisition", a, ACQUISITION_HELP)
            acqs.append(ACQUISITIONS[a.lower()])
        acqs = tuple(dict.fromkeys(acqs))
    return gpu_ids, vendor_list, acqs


@dataclass
class TrainQuery:
    """What `train` solves: the job, the limits and the search space, built from what a person typed."""

    job: TrainJob | None
    limits: object
    space: object
    objective: str
    top: int
    diverse: bool
    time_limit_s: float
    notes: list[str]
    space_kwargs: dict
    # the kernels and gradient accumulation the compute-optimal model (no job given) is planned with
    job_options: dict = field(default_factory=dict)


def train_query(*, model=None, params=None, hf_config=None, layers=None, hidden=None, heads=None, kv_heads=None,
                seq_len=None, tokens=None, global_batch=None, objective="cost", budget=None, deadline=None,
                max_gpus=None, power_kw=None, gpus=None, vendors=None, providers=None, precision=None,
                acquisition=None, own=None, top=5, diverse=False, amortize=False, time_limit="10s",
                method="full", lora_rank=None, epochs=None, finetune=False, compute_budget=None,
                attention="flash", loss="standard", stack=None, grad_sync="micro-batch",
                quant=None) -> TrainQuery:
    """Parse and check `train`'s arguments. job is None when no model is given and the objective is
    compute (the compute-optimal model is sized by `train`)."""
    from recommender.solver import Limits
    from recommender.units import parse_duration_s, parse_usd

    objective = str(objective).lower()
    owned = parse_own(own)
    gpu_ids, vendor_list, acqs = _allowed(gpus, vendors, acquisition)
    precisions = tuple(p.lower() for p in (_split("precision", precision) or ["bf16"]))
    for p in precisions:
        if p not in PRECISIONS:
            raise GpuplanError("precision", p, f"must be one of {', '.join(PRECISIONS)}")
    limits = Limits(
        budget_usd=None if budget is None else parse_usd("budget", budget),
        deadline_days=None if deadline is None else _deadline_days(deadline),
        max_gpus=None if max_gpus is None else parse_int("max-gpus", max_gpus),
        power_kw=None if power_kw is None else parse_count("power-kw", power_kw),
        compute_pf_days=None if compute_budget is None else _compute_budget(compute_budget),
        gpus=gpu_ids, vendors=None if vendor_list is None else tuple(vendor_list),
        providers=None if providers is None else tuple(_check_providers(providers)),
        precisions=None, acquisitions=acqs)
    space_kwargs = dict(precisions=precisions, owned=owned, acqs=acqs, gpu_ids=gpu_ids, amortize=amortize)
    # max-gpus is a limit (relaxable), not the space's edge
    space = _space(limits, **space_kwargs)
    job, notes, options = None, [], {}
    if not (objective == "compute" and model is None and params is None and hf_config is None):
        spec = build_model(model, params, hf_config, layers, hidden, heads, kv_heads, seq_len)
        job, notes = build_job(spec, tokens, global_batch, seq_len, method, lora_rank, epochs, finetune, attention,
                               loss, stack, grad_sync, quant)
    else:   # the options checked as for any job, and kept for the model train sizes
        probe, _ = build_job(catalog.dense_shape(1e9), "1B", None, None, method, lora_rank, None, finetune,
                             attention, loss, stack, grad_sync, quant)
        options = {k: getattr(probe, k) for k in ("attention", "loss", "stack", "grad_sync")}
    return TrainQuery(job=job, limits=limits, space=space, objective=objective, top=parse_int("top", top, maximum=units.MAX_TOP),
                      diverse=diverse, time_limit_s=parse_duration_s("time-limit", time_limit), notes=notes,
                      space_kwargs=space_kwargs, job_options=options)


def _compute_budget(text) -> float:
    """A compute budget in PF-days: from 0.001 (a GPU-minute of an H100) to 10^9 (over 100x the
    largest runs reported, about 6e6 PF-days)."""
    from recommender.units import parse_pf_days

    x = parse_pf_days("compute-budget", text)
    if not 1e-3 <= x <= 1e9:
        raise GpuplanError("compute-budget", text, "must be from 0.001 to 1e9 PF-days (8.64e16 to 8.64e28 FLOPs)")
    return x


def _deadline_days(deadline) -> float:
    """A training deadline: an hour to 100 years (below an hour no run is planned; past a century
    the costs of a purchase lose meaning)."""
    from recommender.units import parse_days

    days = parse_days("deadline", deadline)
    if not 1 / 24 <= days <= MAX_DEADLINE_DAYS:
        raise GpuplanError("deadline", deadline, "must be from 1 hour to 100 years")
    return days


def train(*, model=None, params=None, hf_config=None, layers=None, hidden=None, heads=None, kv_heads=None,
          seq_len=None, tokens=None, global_batch=None, objective="cost", budget=None, deadline=None,
          max_gpus=None, power_kw=None, gpus=None, vendors=None, providers=None, precision=None,
          acquisition=None, own=None, top=5, diverse=False, amortize=False, time_limit="10s",
          method="full", lora_rank=None, epochs=None, finetune=False, compute_budget=None, attention="flash",
          loss="standard", stack=None, grad_sync="micro-batch", quant=None):
    """`gpuplan train` (and `finetune`): the exact optimum over the catalog, ranked alternatives and why."""
    q = train_query(**locals())
    from recommender.planner import plan

    from recommender import prices

    with prices.naming(q.limits.gpus):
        if q.job is None:
            return _compute_optimal(q.limits, space_kwargs=q.space_kwargs, top=q.top, diverse=q.diverse,
                                    time_limit_s=q.time_limit_s, job_options=q.job_options)
        return plan(q.job, q.limits, q.space, objective=q.objective, top=q.top, diverse=q.diverse,
                    time_limit_s=q.time_limit_s, notes=q.notes)


def finetune_kwargs(*, model=None, hf_config=None, method="lora", lora_rank=None, epochs=None, **kwargs) -> dict:
    """`finetune`'s arguments as `train`'s: a checkpoint is required; LoRA by default."""
    if model is None and hf_config is None:
        raise GpuplanError("model", None, "fine-tuning starts from a model: give --model NAME or --hf-config PATH")
    return dict(model=model, hf_config=hf_config, method=method, lora_rank=lora_rank, epochs=epochs,
                finetune=True, **kwargs)


def finetune(*, model=None, hf_config=None, method="lora", lora_rank=None, epochs=None, **kwargs):
    """`gpuplan finetune`: `train` from a checkpoint, full or with LoRA/QLoRA adapters."""
    return train(**finetune_kwargs(model=model, hf_config=hf_config, method=method, lora_rank=lora_rank,
                                   epochs=epochs, **kwargs))


def _space(limits, precisions, owned, acqs, gpu_ids, amortize):
    from recommender.candidates import SearchSpace

    cap = max(16384, limits.max_gpus or 0)
    return SearchSpace(accelerators=gpu_ids or tuple(catalog.accelerators()), precisions=precisions, owned=owned,
                       acquisitions=acqs or ("on_demand", "spot", "reserved", "buy"),
                       max_gpus=max(cap, max(owned.values(), default=0)), amortize=amortize,
                       providers=limits.providers)


def _compute_optimal(limits, space_kwargs, top, diverse, time_limit_s, iterations=8, job_options=None):
    """No model given: the compute-optimal dense model for what budget, deadline and compute budget buy.

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
                       global_batch_tokens=catalog.assumption("default_global_batch_tokens"), seq_len=spec.seq_len,
                       **(job_options or {}))
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
                   global_batch_tokens=catalog.assumption("default_global_batch_tokens"), seq_len=spec.seq_len,
                   **(job_options or {}))
    result = plan(job, limits, space, objective="compute", top=top, diverse=diverse, time_limit_s=time_limit_s)
    if result.plans:
        best = result.plans[0]
        result.notes.insert(0, f"no model given: a {spec.total_params / 1e9:.1f}B dense model (standard shape) on "
                               f"{best.tokens:.3g} tokens, {best.tokens / spec.total_params:.0f} tokens per parameter; "
                               f"compute-optimal for {best.flops_6nd:.3g} FLOPs (6ND) is "
                               f"{(best.flops_6nd / 120) ** 0.5 / 1e9:.1f}B on 20 tokens per parameter "
                               f"(Hoffmann et al. 2022)")
    return result


WORDS_PER_TOKEN = 0.75  # OpenAI Help Center, "What are tokens and how to count them": 1 token ~= 3/4 word (English)


def parse_tokens(field: str, value) -> int:
    """'512' tokens, or '50w' / '50 words' converted at 0.75 words per token (English text)."""
    import math
    import re

    from recommender.units import parse_int

    text = str(value).strip().lower()
    m = re.fullmatch(r"(.+?)\s*(w|words?)", text)
    if m:
        words = parse_count(field, m.group(1))
        return max(1, math.ceil(words / WORDS_PER_TOKEN))
    return parse_int(field, re.sub(r"\s*(tokens?|tok)$", "", text))


def parse_percentile(text) -> float:
    """p50 | p90 | p95 | p99 | p99.9, or a fraction such as 0.99."""
    t = str(text).strip().lower()
    try:
        v = float(t[1:]) / 100.0 if t.startswith("p") else float(t)
    except ValueError:
        v = float("nan")
    if not 0.0 < v < 1.0:
        raise GpuplanError("percentile", text, "must be p50, p90, p95, p99 (or a fraction between 0 and 1)")
    return v


@dataclass
class ServeQuery:
    """What `serve` solves (no fixed --gpu): the workload, the limits and the search space."""

    workload: object
    limits: object
    space: object
    objective: str
    top: int
    time_limit_s: float


def _accept_rates(value):
    """--draft-accept: one share (0.7, 70%), or one per drafted position (0.8,0.7,0.6 or a YAML list)."""
    from recommender.units import parse_fraction

    if value is None:
        return None
    parts = list(value) if isinstance(value, (list, tuple)) else str(value).split(",")
    if len(parts) == 1:
        return parse_fraction("draft-accept", parts[0])
    if len(parts) > 16:
        raise GpuplanError("draft-accept", value, "at most 16 rates, one per drafted position")
    return tuple(parse_fraction("draft-accept", x) for x in parts)


def _draft(draft):
    """--draft: a catalog model id or alias, eagle or ngram (None: no speculative decoding)."""
    if draft is None:
        return None
    d = str(draft).strip().lower()
    return d if d in ("eagle", "ngram") else catalog.model(str(draft)).id


def _as_options(kind, /, **fields):
    """A pydantic model built from parsed options, its validation errors stated as the option's
    (token_budget=1: ... -> token-budget=1: ...)."""
    from pydantic import ValidationError

    try:
        return kind(**fields)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else "input"
        raise GpuplanError(_OPTION_OF.get(name, name.replace("_", "-")), err.get("input"), err["msg"]) from None


_OPTION_OF = {"prompt_tokens": "prompt", "output_tokens": "output", "rate_rps": "rate", "think_time_s": "think-time",
              "ttft_s": "ttft", "tpot_s": "tpot", "e2e_s": "e2e", "horizon_days": "horizon"}


def serve_query(*, model=None, params=None, hf_config=None, layers=None, hidden=None, heads=None, kv_heads=None,
                prompt="512", output="256", rate=None, users=None, think_time=None, ttft=None, tpot=None, e2e=None,
                horizon="1y", objective="cost", budget=None, max_gpus=None, power_kw=None, gpus=None, vendors=None,
                providers=None, precision=None, kv_precision="auto", acquisition=None, own=None, top=5,
                amortize=False, time_limit="10s", gpu=None, tp=None, pp="1", replicas=None, batch=None,
                headroom=None, percentile="p99", length_dist="exponential", token_budget=None, max_seqs=None,
                prefix_tokens=None, prefix_hit=None, draft=None, draft_tokens=None, draft_accept=None,
                disaggregate="auto", kv_reserve="paged"):
    """Parse and check `serve`'s arguments: a ServeQuery, or with --gpu the fixed configuration's
    evaluated result (a ServeResult)."""
    from recommender import serve_planner as sp
    from recommender.formulas.serving import SERVE_PRECISIONS
    from recommender.serving import ServeWorkload
    from recommender.units import parse_days, parse_duration_s, parse_fraction, parse_rate_per_s, parse_usd

    spec = build_model(model, params, hf_config, layers, hidden, heads, kv_heads)
    def dur(field, value, most_s=86400.0):
        """A latency target or think time: at most a day (past that the queue model's searches
        only spin; no service states one)."""
        if value is None:
            return None
        x = parse_duration_s(field, value)
        if x > most_s:
            raise GpuplanError(field, value, "must be at most a day (1d)")
        return x

    horizon_days = parse_days("horizon", horizon)
    if not 1.0 <= horizon_days <= MAX_DEADLINE_DAYS:
        raise GpuplanError("horizon", horizon, "must be from 1 day to 100 years (purchases are charged over it)")
    rates = _accept_rates(draft_accept)
    if isinstance(rates, tuple) and draft_tokens is None:
        draft_tokens = len(rates)                  # one rate per drafted position sets how many
    reserve = str(kv_reserve).lower()
    if reserve not in ("paged", "full"):
        raise GpuplanError("kv-reserve", kv_reserve, "must be paged (vLLM: KV for the tokens so far) or full "
                           "(TensorRT-LLM's default: each request reserves its prompt + output)")
    w = _as_options(ServeWorkload,
        model=spec, prompt_tokens=parse_tokens("prompt", prompt), output_tokens=parse_tokens("output", output),
        rate_rps=None if rate is None else parse_rate_per_s("rate", rate),
        users=None if users is None else parse_int("users", users),
        think_time_s=dur("think-time", think_time) or 0.0, ttft_s=dur("ttft", ttft), tpot_s=dur("tpot", tpot),
        e2e_s=dur("e2e", e2e), horizon_days=horizon_days,
        percentile=parse_percentile(percentile), length_dist=str(length_dist).lower(),
        token_budget=None if token_budget is None else parse_int("token-budget", token_budget),
        max_seqs=None if max_seqs is None else parse_int("max-seqs", max_seqs),
        prefix_tokens=0 if prefix_tokens is None else parse_tokens("prefix-tokens", prefix_tokens),
        prefix_hit=(0.0 if prefix_tokens is None and prefix_hit is None else
                    1.0 if prefix_hit is None else parse_fraction("prefix-hit", prefix_hit)),
        draft=_draft(draft), draft_tokens=4 if draft_tokens is None else parse_int("draft-tokens", draft_tokens),
        draft_accept=rates, kv_reserve=reserve)
    if draft_tokens is not None and draft is None:
        raise GpuplanError("draft-tokens", draft_tokens, "give the draft too (--draft MODEL|eagle|ngram)")
    if not 1 <= w.draft_tokens <= 16:
        raise GpuplanError("draft-tokens", draft_tokens, "must be 1 to 16 drafted tokens per step")
    if w.context > spec.seq_len:   # name the larger of the two, the one to shorten
        field, value = ("output", output) if w.output_tokens > w.prompt_tokens else ("prompt", prompt)
        raise GpuplanError(field, value, f"prompt + output = {w.context:,} tokens exceeds {spec.id}'s "
                           f"{spec.seq_len:,}-token context")
    kv = str(kv_precision).lower()
    if kv != "auto" and kv not in SERVE_PRECISIONS:
        raise GpuplanError("kv-precision", kv_precision, f"must be auto or one of {', '.join(SERVE_PRECISIONS)}")
    precisions = tuple(p.lower() for p in (_split("precision", precision) or sp.DEFAULT_PRECISIONS))
    for p in precisions:
        if p not in SERVE_PRECISIONS:
            raise GpuplanError("precision", p, f"must be one of {', '.join(SERVE_PRECISIONS)}")
    hr = None if headroom is None else parse_count("headroom", headroom, allow_zero=True)
    if hr is not None and hr >= 1:
        raise GpuplanError("headroom", headroom, "must be a fraction below 1")
    owned = parse_own(own)
    dis = str(disaggregate).lower()
    if dis not in sp.DISAGGREGATE:
        raise GpuplanError("disaggregate", disaggregate, f"must be one of {', '.join(sp.DISAGGREGATE)}")
    if dis == "only" and not sp.pools_apply(w):
        raise GpuplanError("disaggregate", disaggregate, "disaggregated pools are planned for an open loop (--rate) "
                           "without an --e2e target")
    if dis == "only" and gpu is not None:
        raise GpuplanError("disaggregate", disaggregate, "--gpu evaluates one aggregated replica configuration; "
                           "drop --gpu to plan disaggregated pools")
    if dis == "only" and str(objective).lower() == "latency":
        raise GpuplanError("disaggregate", disaggregate, "the latency objective plans aggregated replicas only "
                           "(a pool's latencies are shares of the fleet's); use --objective cost")
    if gpu is not None:
        if precision is None:   # one configuration: the part's 16-bit weights unless --precision says
            precisions = ("fp16",) if catalog.accelerator(gpu).fp16_only else ("bf16",)
        return _serve_fixed(w, gpu, tp, pp, replicas, batch, precisions, kv, acquisition, providers, hr, amortize,
                            owned)
    for name, v in (("tp", tp), ("replicas", replicas), ("batch", batch)):
        if v is not None:
            raise GpuplanError(name, v, "fixes a configuration: give --gpu too")
    gpu_ids, vendor_list, acqs = _allowed(gpus, vendors, acquisition)
    limits = sp.ServeLimits(
        budget_usd=None if budget is None else parse_usd("budget", budget),
        max_gpus=None if max_gpus is None else parse_int("max-gpus", max_gpus),
        power_kw=None if power_kw is None else parse_count("power-kw", power_kw),
        gpus=gpu_ids, vendors=None if vendor_list is None else tuple(vendor_list),
        providers=None if providers is None else tuple(_check_providers(providers)), acquisitions=acqs)
    space = sp.ServeSpace(accelerators=tuple(sorted(set(gpu_ids or ()) | set(owned))) if gpu_ids else
                          tuple(catalog.accelerators()), precisions=precisions, kv_precision=kv,
                          owned=owned, acquisitions=acqs or sp.ServeSpace.acquisitions,
                          amortize=amortize, headroom=hr, disaggregate=dis)
    return ServeQuery(workload=w, limits=limits, space=space, objective=str(objective).lower(),
                      top=parse_int("top", top, maximum=units.MAX_TOP), time_limit_s=parse_duration_s("time-limit", time_limit))


def serve(*, model=None, params=None, hf_config=None, layers=None, hidden=None, heads=None, kv_heads=None,
          prompt="512", output="256", rate=None, users=None, think_time=None, ttft=None, tpot=None, e2e=None,
          horizon="1y", objective="cost", budget=None, max_gpus=None, power_kw=None, gpus=None, vendors=None,
          providers=None, precision=None, kv_precision="auto", acquisition=None, own=None, top=5, amortize=False,
          time_limit="10s", gpu=None, tp=None, pp="1", replicas=None, batch=None, headroom=None,
          percentile="p99", length_dist="exponential", token_budget=None, max_seqs=None, prefix_tokens=None,
          prefix_hit=None, draft=None, draft_tokens=None, draft_accept=None, disaggregate="auto", kv_reserve="paged"):
    """`gpuplan serve`: the cheapest fleet meeting the latency targets (exact), or, with --gpu, one
    fixed replica configuration's performance (its maximum offline throughput when no target is set)."""
    q = serve_query(**locals())
    from recommender import serve_planner as sp

    if not isinstance(q, ServeQuery):
        return q
    from recommender import prices

    with prices.naming(q.limits.gpus):
        return sp.plan_serving(q.workload, q.limits, q.space, objective=q.objective, top=q.top,
                               time_limit_s=q.time_limit_s)


def _serve_fixed(w, gpu, tp, pp, replicas, batch, precisions, kv, acquisition, providers, headroom, amortize, owned):
    """One replica configuration evaluated, wrapped as a one-plan result."""
    import time

    from recommender import serve_planner as sp
    from recommender.serving import HOURS_PER_DAY, ServeLayout, evaluate_serving

    t0 = time.perf_counter()
    acc = catalog.accelerator(gpu)
    if len(precisions) != 1:
        raise GpuplanError("precision", ",".join(precisions), "a fixed configuration takes one precision")
    prec = precisions[0]
    if prec == "bf16" and acc.fp16_only:
        prec = "fp16"
    acq = ACQUISITIONS.get(str(acquisition or "cloud").lower())
    if acq is None:
        raise GpuplanError("acquisition", acquisition, ACQUISITION_HELP)
    provider = None if providers is None else _split("providers", providers)[0]
    layout = ServeLayout(accelerator=acc.id, tp=parse_int("tp", tp or 1), pp=parse_int("pp", pp),
                         precision=prec, kv_precision=sp.kv_for(prec, kv),
                         batch=None if batch is None else parse_int("batch", batch, maximum=MAX_BATCH),
                         replicas=None if replicas is None else parse_int("replicas", replicas),
                         acquisition=acq, provider=provider, speculative=w.draft is not None)
    from recommender import prices

    with prices.naming([acc.id]):
        part = evaluate_serving(w, layout, headroom=headroom, amortize=amortize, owned=owned.get(acc.id, 0))
    demand = w.demand
    hours = w.horizon_days * HOURS_PER_DAY
    plan = sp._fleet_plan(1, [part], hours, "best")
    unit = "users" if w.closed else "requests/s"
    explanation = []
    if not part.fits:
        explanation.append(f"does not fit: {part.memory_gib_per_gpu:.1f} GiB per GPU needed, "
                           f"{part.memory_limit_gib:.1f} GiB usable of {part.memory_capacity_gib:g} GiB")
    elif part.missed_targets:
        explanation.append("misses " + ", ".join(part.missed_targets) + f" at p{w.percentile * 100:g} with "
                           f"{part.replicas} replicas ({part.load_per_replica:,.2f} {unit} each)"
                           + (f"; a replica meets them up to {part.capacity_per_replica:,.2f} {unit}"
                              if part.capacity_per_replica else "; no load meets them"))
    elif demand is None:
        explanation.append("maximum offline throughput: every slot busy" if layout.batch is None else
                           f"every one of the {part.batch} slots busy")
    else:
        explanation.append(f"slot cap {part.batch} (max_num_seqs) gives the most capacity within the targets: "
                           f"{part.capacity_per_replica:,.2f} {unit} per replica" if layout.batch is None else
                           f"slot cap fixed at {part.batch}: {part.capacity_per_replica:,.2f} {unit} per replica "
                           "within the targets")
    status = "evaluated" if part.fits and not part.missed_targets else ("does not fit" if not part.fits
                                                                        else "misses targets")
    rps = part.requests_per_s
    return sp.ServeResult(status=status, objective="fixed", solve_seconds=time.perf_counter() - t0,
                          requests_per_s=rps, demand_tokens_per_s=rps * w.output_tokens, users=w.users,
                          think_time_s=w.think_time_s if w.closed else None, percentile=w.percentile,
                          plans=[plan], relaxations=[],
                          explanation=explanation, notes=[sp.queue_note(w)], candidates=1, replica_types=1)
