"""Scenario files: a YAML document that says everything the CLI takes, validated by pydantic.

    name: cheapest 100B in 60 days
    model: {params: 100B}
    workload: {kind: pretrain, tokens: 2T}
    constraints: {deadline: 60d}
    objective: cost

A file error names the field path and the line and suggests the fix; `--set a.b=v` edits the
document before it is validated. A scenario runs through the same API calls as the CLI flags
(`Scenario.call`), inside `catalog.overrides` for its catalog section.
"""

from __future__ import annotations

import contextlib
import re
from datetime import date
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from recommender import catalog, units
from recommender import prices as prices_mod
from recommender.errors import GpuplanError, did_you_mean
from recommender.spec import (CLOUD_PRICE_RANGE_USD, PURCHASE_PRICE_RANGE_USD, Accelerator, CloudPrice, Efficiency,
                              PurchasePrice)

Quantity = str | int | float


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


def _check(parse, field: str):
    """A field validator that runs one of the CLI's unit parsers and keeps the text as given."""
    def check(v):
        if v is not None:
            try:
                parse(field, v)
            except GpuplanError as exc:
                raise ValueError(exc.message) from None
        return v
    return check


class ModelSection(Section):
    """Exactly one of preset, params or hf_config, with optional shape overrides."""

    preset: str | None = None
    params: Quantity | None = None
    hf_config: str | None = None
    layers: int | None = Field(None, gt=0)
    hidden: int | None = Field(None, gt=0)
    heads: int | None = Field(None, gt=0)
    kv_heads: int | None = Field(None, gt=0)
    seq_len: int | None = Field(None, gt=0)

    _params = field_validator("params")(_check(units.parse_count, "params"))


TRAIN_FIELDS = ("tokens", "global_batch", "seq_len", "attention", "loss", "grad_sync")
FINETUNE_FIELDS = TRAIN_FIELDS + ("epochs", "method", "lora_rank", "quant")
SERVE_FIELDS = ("rate", "users", "think_time", "prompt", "output", "ttft", "tpot", "e2e", "horizon", "kv_precision",
                "prefix_tokens", "prefix_hit", "draft", "draft_tokens", "draft_accept", "disaggregate")


class Workload(Section):
    """pretrain (tokens, batch), finetune (+ epochs, method, LoRA rank) or serve (demand, lengths,
    latency targets, horizon)."""

    kind: Literal["pretrain", "finetune", "serve"]
    tokens: Quantity | None = None
    global_batch: Quantity | None = None
    seq_len: int | None = Field(None, gt=0)
    epochs: float | None = Field(None, gt=0)
    method: Literal["full", "lora", "qlora"] | None = None
    lora_rank: int | None = Field(None, gt=0)
    attention: Literal["flash", "eager"] | None = None  # the attention kernel (memory: eager stores s^2 scores)
    loss: Literal["standard", "fused"] | None = None  # the loss kernel (memory: standard holds fp32 logits)
    quant: Literal["nf4-dq", "nf4", "torchao-nf4"] | None = None  # QLoRA's 4-bit storage (memory: nf4 keeps fp32 constants)
    grad_sync: Literal["micro-batch", "step"] | None = None  # ZeRO-3 gradient accumulation (memory: step holds them unsharded)
    rate: Quantity | None = None
    users: Quantity | None = None   # a whole number of users, as on the command line (1000, 1e6, 10k)
    think_time: Quantity | None = None
    prompt: Quantity | None = None
    output: Quantity | None = None
    ttft: Quantity | None = None
    tpot: Quantity | None = None
    e2e: Quantity | None = None
    horizon: Quantity | None = None
    kv_precision: str | None = None
    prefix_tokens: Quantity | None = None   # prefix caching: a shared prompt prefix (tokens)
    prefix_hit: Quantity | None = None      # and the share of requests that find it cached
    draft: str | None = None                # speculative decoding: a catalog model, eagle or ngram
    draft_tokens: int | None = Field(None, ge=1, le=16)
    # the chance each drafted token is accepted: one rate, or one per drafted position ([0.8, 0.7, ...])
    draft_accept: Quantity | list[Quantity] | None = None
    disaggregate: Literal["auto", "off", "only"] | None = None   # separate prefill and decode pools

    _tokens = field_validator("tokens", "global_batch")(_check(units.parse_count, "tokens"))
    _times = field_validator("think_time", "ttft", "tpot", "e2e")(_check(units.parse_duration_s, "time"))
    _horizon = field_validator("horizon")(_check(units.parse_days, "horizon"))
    _rate = field_validator("rate")(_check(units.parse_rate_per_s, "rate"))
    _users = field_validator("users")(_check(units.parse_int, "users"))


class Constraints(Section):
    budget: Quantity | None = None
    deadline: Quantity | None = None
    compute_budget: Quantity | None = None  # PF-days of model FLOPs (5000, 5000PFd, 3.14e23FLOPs)
    max_gpus: int | None = Field(None, gt=0)
    power_kw: float | None = Field(None, gt=0)
    gpus: list[str] | None = None
    vendors: list[str] | None = None
    providers: list[str] | None = None
    precision: list[str] | None = None
    acquisition: list[str] | None = None
    own: dict[str, int] | None = None
    amortize: bool = False

    _budget = field_validator("budget")(_check(units.parse_usd, "budget"))
    _deadline = field_validator("deadline")(_check(units.parse_days, "deadline"))
    _compute = field_validator("compute_budget")(_check(units.parse_pf_days, "compute_budget"))


class CustomAccelerator(Section):
    """An accelerator not in the catalog, with its own figures, price and efficiency."""

    id: str
    name: str | None = None
    vendor: str = "custom"
    # bounds far outside any part made (as for prices): a typo or 1e-300 is refused, not divided by
    memory_gib: float = Field(ge=1, le=10_000)
    memory_bw_gb_s: float | None = Field(None, ge=10, le=1e6)
    bf16_tflops: float | None = Field(None, ge=1, le=1e6)
    fp8_tflops: float | None = Field(None, ge=1, le=1e6)
    int8_tops: float | None = Field(None, ge=1, le=1e6)
    gpus_per_node: int = Field(8, ge=1, le=1024)
    scale_up_domain: int | None = Field(None, ge=1, le=100_000)
    intra_node_bw_gb_s: float | None = Field(None, ge=0.1, le=1e5)
    inter_node_bw_gb_s: float | None = Field(None, ge=0.1, le=1e5)
    tdp_w: float | None = Field(None, ge=1, le=100_000)
    matmul_efficiency: float = Field(0.555, ge=catalog.CALIBRATION_RANGE[0], le=catalog.CALIBRATION_RANGE[1])
    usd_per_gpu_hour: float | None = Field(None, ge=CLOUD_PRICE_RANGE_USD[0], le=CLOUD_PRICE_RANGE_USD[1],
                                           allow_inf_nan=False)
    purchase_usd_per_gpu: float | None = Field(None, ge=PURCHASE_PRICE_RANGE_USD[0], le=PURCHASE_PRICE_RANGE_USD[1],
                                               allow_inf_nan=False)
    source: str = "scenario file"


class Price(Section):
    """A negotiated cloud price: replaces the catalog's for the same GPU, provider and tier; with no
    provider, every listed provider's price for that GPU and tier ("what if H100 spot is $1.80")."""

    gpu: str
    provider: str | None = None
    tier: Literal["on_demand", "spot", "reserved", "serverless"] = "on_demand"
    usd_per_gpu_hour: float = Field(ge=CLOUD_PRICE_RANGE_USD[0], le=CLOUD_PRICE_RANGE_USD[1], allow_inf_nan=False)


class Site(Section):
    """Your own site, in place of catalog/assumptions.yaml (the CLI's --goodput, --pue, ...)."""

    goodput: float | None = Field(None, gt=0, le=catalog.SITE_RANGE["goodput"][1])
    pue: float | None = Field(None, ge=catalog.SITE_RANGE["pue"][0], le=catalog.SITE_RANGE["pue"][1])
    electricity_usd_per_kwh: float | None = Field(None, ge=0, le=catalog.SITE_RANGE["electricity_usd_per_kwh"][1])
    colocation_usd_per_kw_month: float | None = Field(None, ge=0,
                                                      le=catalog.SITE_RANGE["colocation_usd_per_kw_month"][1])
    useful_life_years: float | None = Field(None, ge=catalog.SITE_RANGE["useful_life_years"][0],
                                            le=catalog.SITE_RANGE["useful_life_years"][1])


class CatalogSection(Section):
    accelerators: list[CustomAccelerator] = []
    prices: list[Price] = []
    exclude_providers: list[str] = []


class Scenario(Section):
    name: str = ""
    description: str = ""
    model: ModelSection
    workload: Workload
    catalog: CatalogSection = CatalogSection()
    constraints: Constraints = Constraints()
    objective: Literal["cost", "time", "latency", "compute"] = "cost"
    top: int = Field(5, gt=0, le=units.MAX_TOP)
    # where prices come from (--market overrides it): global, china (its clouds and channel prices), all
    market: Literal["global", "china", "all"] = "global"
    site: Site = Site()

    # -- running -----------------------------------------------------------------------------
    def overrides(self):
        today = date.today()
        accs, prices, buys, effs = [], [], [], []
        for c in self.catalog.accelerators:
            accs.append(Accelerator(id=c.id, name=c.name or c.id, vendor=c.vendor, memory_gib=c.memory_gib,
                                    memory_bw_gb_s=c.memory_bw_gb_s, bf16_tflops=c.bf16_tflops,
                                    fp8_tflops=c.fp8_tflops, int8_tops=c.int8_tops, gpus_per_node=c.gpus_per_node,
                                    scale_up_domain=c.scale_up_domain, intra_node_bw_gb_s=c.intra_node_bw_gb_s, inter_node_bw_gb_s=c.inter_node_bw_gb_s,
                                    tdp_w=c.tdp_w, source=c.source, as_of=today))
            effs.append(Efficiency(accelerator=c.id, matmul_efficiency=c.matmul_efficiency, calibrated=False,
                                   basis="given in the scenario file", source=c.source, as_of=today))
            if c.usd_per_gpu_hour:
                prices.append(CloudPrice(accelerator=c.id, provider="scenario", tier="on_demand",
                                         price_usd_per_gpu_hour=c.usd_per_gpu_hour, source=c.source, as_of=today))
            if c.purchase_usd_per_gpu:
                buys.append(PurchasePrice(accelerator=c.id, price_usd_per_gpu=c.purchase_usd_per_gpu,
                                          basis="gpu_only", source=c.source, as_of=today))
        with catalog.overrides(accelerators=accs, efficiencies=effs):
            for i, p in enumerate(self.catalog.prices):
                acc_id = catalog.accelerator(p.gpu).id
                listed = [r for r in catalog.prices_for(acc_id) if r.tier == p.tier]
                if p.provider is None and not listed:
                    raise ScenarioError(f"catalog.prices[{i}].provider", None, f"no provider lists {acc_id} "
                                        f"{p.tier}; name the provider the price is from")
                same = [dict(provider=r.provider, region=r.region, term_months=r.term_months) for r in listed]
                for where in (same if p.provider is None else [dict(provider=p.provider)]):
                    prices.append(CloudPrice(accelerator=acc_id, tier=p.tier, price_usd_per_gpu_hour=p.usd_per_gpu_hour,
                                             source="negotiated price (scenario file)", as_of=today, **where))
        named = [catalog.accelerator_id(g) for g in self.constraints.gpus or []]
        return _both(prices_mod.shopping_in(prices_mod.market() if prices_mod.explicit() else self.market),
                     prices_mod.naming(named),
                     catalog.assuming(**{k: v for k, v in self.site.model_dump().items() if v is not None}),
                     catalog.overrides(accelerators=accs, cloud_prices=prices, purchase_prices=buys,
                                       efficiencies=effs, exclude_providers=self.catalog.exclude_providers))

    def call(self) -> tuple[str, dict]:
        """The API function and the keyword arguments the equivalent CLI flags give it."""
        m, w, c = self.model, self.workload, self.constraints
        joined = lambda xs: None if xs is None else ",".join(xs)  # noqa: E731
        kw = dict(model=m.preset, hf_config=m.hf_config, layers=m.layers, hidden=m.hidden, heads=m.heads,
                  kv_heads=m.kv_heads, budget=c.budget, max_gpus=c.max_gpus, power_kw=c.power_kw,
                  gpus=joined(c.gpus), vendors=joined(c.vendors), providers=joined(c.providers),
                  precision=joined(c.precision), acquisition=joined(c.acquisition),
                  own=None if not c.own else [f"{g}:{n}" for g, n in c.own.items()], top=self.top,
                  amortize=c.amortize, objective=self.objective)
        given = {f for f in Workload.model_fields if f != "kind" and getattr(w, f) is not None}
        allowed = {"pretrain": TRAIN_FIELDS, "finetune": FINETUNE_FIELDS, "serve": SERVE_FIELDS}[w.kind]
        for f in sorted(given - set(allowed)):
            raise ScenarioError(f"workload.{f}", getattr(w, f), f"does not apply to kind {w.kind}; "
                                f"{w.kind} takes: {', '.join(allowed)}")
        fields = {f: getattr(w, f) for f in allowed if getattr(w, f) is not None}
        if w.kind == "serve":
            if c.deadline is not None:
                raise ScenarioError("constraints.deadline", c.deadline, "does not apply to serving; "
                                    "set workload.horizon for the serving period")
            if c.compute_budget is not None:
                raise ScenarioError("constraints.compute_budget", c.compute_budget, "applies to training and "
                                    "fine-tuning only (a limit on the run's model FLOPs)")
            return "serve", kw | {"params": m.params} | fields
        if m.seq_len is not None and w.seq_len is not None and m.seq_len != w.seq_len:
            raise ScenarioError("workload.seq_len", w.seq_len, f"differs from model.seq_len ({m.seq_len}): give the "
                                "training sequence length once")
        kw |= {"params": m.params, "deadline": c.deadline, "seq_len": m.seq_len, "compute_budget": c.compute_budget}
        if w.kind == "finetune":
            kw.pop("params")
            return "finetune", kw | fields
        return "train", kw | fields

    def typed(self) -> tuple[str, dict]:
        """`call()` with quantities as text, as a person types them on the command line."""
        fn, kw = self.call()
        return fn, {k: (str(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else v)
                    for k, v in kw.items() if v is not None}

    def check(self) -> None:
        """Every check the solve makes of its input, without solving (whatif checks each grid
        point before it solves any)."""
        from recommender import api

        fn, kw = self.typed()
        with self.overrides():
            if fn == "serve":
                api.serve_query(**kw)
            else:
                api.train_query(**(api.finetune_kwargs(**kw) if fn == "finetune" else kw))

    def run(self, extra: dict | None = None):
        """Solve; `extra` is a further catalog.overrides layer on top of the file's (what-ifs). An
        error the solve raises names CLI options in its advice: they are said as the file's paths."""
        from recommender import api

        fn, kw = self.typed()
        with self.overrides(), catalog.overrides(**(extra or {})):
            try:
                return fn, getattr(api, fn)(**kw)
            except GpuplanError as exc:
                raise type(exc)(exc.field, exc.value, _as_paths(exc.message, self)) from None

    def pareto(self, metric: str = "e2e"):
        """The exact cost-vs-time (training) or cost-vs-latency (serving) frontier of this scenario."""
        from recommender import api, pareto

        fn, kw = self.typed()
        with self.overrides():
            if fn == "serve":
                q = api.serve_query(**kw)
                return pareto.serve_frontier(q.workload, q.limits, q.space, metric, q.time_limit_s)
            q = api.train_query(**(api.finetune_kwargs(**kw) if fn == "finetune" else kw))
            if q.job is None:
                raise GpuplanError("model", None, "the frontier needs a model: give model.preset, params or hf_config")
            return pareto.train_frontier(q.job, q.limits, q.space, q.time_limit_s, q.notes)


@contextlib.contextmanager
def _both(*managers):
    with contextlib.ExitStack() as stack:
        for m in managers:
            stack.enter_context(m)
        yield


class ScenarioError(GpuplanError):
    """A problem at a path (its `field`) in the scenario document, found after validation."""


# -- loading -------------------------------------------------------------------------------------
TIERS = ("on_demand", "spot", "reserved", "serverless")


def _set_price(doc: dict, key: str, text: str) -> None:
    """price.GPU[.TIER][.PROVIDER]=USD: a catalog.prices entry (tier on_demand unless given)."""
    parts = key.split(".")[1:]
    if not 1 <= len(parts) <= 3 or (len(parts) > 1 and parts[1] not in TIERS):
        raise GpuplanError("set", f"{key}={text}", "write a price as price.GPU[.TIER][.PROVIDER]=USD per GPU-hour, "
                           f"TIER one of {', '.join(TIERS)}, e.g. price.h100-sxm.spot=1.80")
    gpu, tier, provider = parts[0], parts[1] if len(parts) > 1 else "on_demand", parts[2] if len(parts) > 2 else None
    if doc.get("catalog") is None:
        doc["catalog"] = {}
    section = doc["catalog"]
    if isinstance(section, dict) and section.get("prices") is None:
        section["prices"] = []
    if not isinstance(section, dict) or not isinstance(section["prices"], list):
        raise GpuplanError("set", f"{key}={text}", "the file's catalog is not a section with a list of prices "
                           "(catalog: {prices: [...]}), so a price cannot be added to it")
    prices = section["prices"]
    entry = {"gpu": gpu, "tier": tier, "usd_per_gpu_hour": _yaml_value(f"{key}={text}", text.strip().lstrip("$"))}
    if provider is not None:
        entry["provider"] = provider
    same = lambda e: (e.get("gpu"), e.get("tier", "on_demand"), e.get("provider")) == (gpu, tier, provider)  # noqa: E731
    prices[:] = [e for e in prices if not (isinstance(e, dict) and same(e))] + [entry]


def _set(doc: dict, assignment: str) -> None:
    key, sep, text = assignment.partition("=")
    if not sep or not key.strip():
        raise GpuplanError("set", assignment, "write it as path=value, e.g. constraints.deadline=30d")
    if key.strip().startswith("price."):
        return _set_price(doc, key.strip(), text)
    steps = _set_path(assignment, key.strip())
    node = doc
    for i, (step, nxt) in enumerate(zip(steps, steps[1:])):
        if isinstance(step, int):
            _check_item(assignment, node, step, steps[: i + 1])
            node = node[step]
        else:
            if not isinstance(node, dict):
                raise GpuplanError("set", assignment, f"{_shown_path(steps[:i]) or 'the file'} is not a section")
            if node.get(step) is None:
                node[step] = [] if isinstance(nxt, int) else {}
            node = node[step]
    last = steps[-1]
    value = _yaml_value(assignment, text) if text.strip() else None
    if isinstance(last, int):
        _check_item(assignment, node, last, steps)
        node[last] = value
    elif not isinstance(node, dict):
        raise GpuplanError("set", assignment, f"{_shown_path(steps[:-1])} is not a section")
    else:
        node[last] = value


def _check_item(assignment: str, node, index: int, steps) -> None:
    """--set's list item `index` of `node` (at path steps) exists."""
    if not isinstance(node, list):
        raise GpuplanError("set", assignment, f"{_shown_path(steps[:-1])} is not a list (set the whole of it, "
                           f"e.g. {_shown_path(steps[:-1])}=[a, b])")
    if not -len(node) <= index < len(node):
        raise GpuplanError("set", assignment, f"{_shown_path(steps)}: no such item (the list has {len(node)})")


def _set_path(assignment: str, key: str) -> list[str | int]:
    """A --set path's steps: 'jobs[0].tokens' -> ['jobs', 0, 'tokens'] (keys and list indexes)."""
    steps: list[str | int] = []
    for part in key.split("."):
        m = re.fullmatch(r"([^\[\]]+)((?:\[-?\d+\])*)", part.strip())
        if not m:
            raise GpuplanError("set", assignment, "write the path as keys joined by '.', with [N] for a list "
                               "item, e.g. constraints.deadline=30d or jobs[0].tokens=1T")
        steps.append(m.group(1))
        steps += [int(i) for i in re.findall(r"\[(-?\d+)\]", m.group(2))]
    return steps


def _shown_path(steps) -> str:
    return "".join(f"[{s}]" if isinstance(s, int) else f".{s}" for s in steps).lstrip(".")


def _yaml_value(assignment: str, text: str):
    """The value of a --set as YAML reads it ('30d', 8, [a, b]); text YAML cannot read is an input error."""
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise GpuplanError("set", assignment, f"the value is not valid YAML ({getattr(exc, 'problem', None) or exc}); "
                           "quote it, or write a list as [a, b]") from None


def _line(root, path: list) -> int | None:
    """The 1-based line of `path` (keys and list indexes) in the composed YAML node tree."""
    node, line = root, None
    for key in path:
        if isinstance(node, yaml.MappingNode):
            for k, v in node.value:
                if k.value == str(key):
                    node, line = v, k.start_mark.line + 1
                    break
            else:
                return line
        elif isinstance(node, yaml.SequenceNode) and isinstance(key, int) and key < len(node.value):
            node = node.value[key]
            line = node.start_mark.line + 1
        else:
            return line
    return line


def _fields_at(path: list, root=None) -> list[str]:
    model = root or Scenario
    for key in path[:-1]:
        if isinstance(key, int):
            continue
        ann = model.model_fields.get(key)
        if ann is None:
            return []
        t = ann.annotation
        t = getattr(t, "__args__", (t,))[0] if hasattr(t, "__args__") else t
        if isinstance(t, type) and issubclass(t, BaseModel):
            model = t
        else:
            return []
    return list(model.model_fields)


def _explain(err: dict, root=None) -> tuple[list, str]:
    loc = [p for p in err["loc"] if not (isinstance(p, str) and ("[" in p or p.startswith("function-")))]
    kind, msg = err["type"], err["msg"]
    if kind == "extra_forbidden":
        known = _fields_at(loc, root)
        hint = did_you_mean(str(loc[-1]), known)
        return loc, f"unknown key; {hint + ' ' if hint else ''}allowed here: {', '.join(known)}"
    if kind == "missing":
        return loc, "is required"
    if kind == "value_error":
        return loc, msg.removeprefix("Value error, ")
    if kind in ("int_parsing", "int_type", "float_parsing", "float_type", "int_from_float"):
        return loc, f"{msg.lower()}: write a number (units only where the field takes them)"
    if kind in ("literal_error",):
        return loc, msg.replace("Input should be", "must be")
    return loc, msg


def read_yaml(path: str | Path, what: str = "scenario", see: str = "constraints/") -> tuple[object, dict]:
    """A YAML mapping file's node tree (for line numbers) and its data; one-line errors for a
    missing, unreadable or folder path and for invalid YAML."""
    p = Path(path)
    if not str(path).strip():
        raise GpuplanError("file", path, f"give the path of a {what} YAML file")
    if p.is_dir():
        raise GpuplanError("file", str(path), f"is a folder; give a {what} YAML file (see {see})")
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise GpuplanError("file", str(path), "not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise GpuplanError("file", str(path), f"cannot read ({exc.__class__.__name__})") from None
    try:
        root = yaml.compose(text)
        doc = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{p}:{mark.line + 1}" if mark else str(p)
        raise GpuplanError("file", where, f"not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(doc, dict):
        raise GpuplanError("file", str(path), f"must be a YAML mapping (see gpuplan schema, {see})")
    return root, doc


def load(path: str | Path, sets: list[str] | tuple[str, ...] = ()) -> Scenario:
    """Read, edit (--set) and validate a scenario; errors say FILE:LINE: path=value: reason."""
    p = Path(path)
    root, doc = read_yaml(path)
    for s in sets:
        _set(doc, s)
    try:
        scenario = Scenario.model_validate(doc)
    except ValidationError as exc:
        loc, reason = _explain(exc.errors()[0])
        value = exc.errors()[0].get("input")
        field = ".".join(f"[{k}]" if isinstance(k, int) else str(k) for k in loc).replace(".[", "[")
        line = _line(root, loc)
        shown = value if not isinstance(value, dict) else "{...}"
        raise GpuplanError(f"{p}:{line}: {field}" if line else f"{p}: {field}", shown, reason) from None
    try:
        _check_names(scenario)
        scenario.call()
        try:
            scenario.check()
        except ScenarioError:
            raise
        except GpuplanError as exc:   # the API's checks name CLI options: say them as the file's paths
            raise ScenarioError(_path_of(exc.field, scenario), exc.value,
                                _as_paths(exc.message, scenario)) from None
        except ValidationError as exc:   # a model the API builds from the file's values
            err = exc.errors()[0]
            raise ScenarioError(_path_of(str(err["loc"][0]) if err["loc"] else "workload", scenario),
                                err.get("input"), err["msg"]) from None
    except ScenarioError as exc:
        loc = [int(k) if k.isdigit() else k for k in exc.field.replace("[", ".").replace("]", "").split(".")]
        line = _line(root, loc)
        raise GpuplanError(f"{p}:{line}: {exc.field}" if line else f"{p}: {exc.field}", exc.value, exc.message) from None
    return scenario


_FLAG = re.compile(r"--([a-z][a-z0-9-]*)")
_FLAG_PATHS = {"model": "model.preset", "top": "top", "objective": "objective"}


def _as_paths(message: str, sc: Scenario) -> str:
    """The --options a message names, as the scenario paths that set them (others, such as
    --time-limit, a flag of `solve` itself, left as written)."""
    def one(m):
        path = _path_of(m.group(1), sc)
        return m.group(0) if path == m.group(1) else path

    return _FLAG.sub(one, message)


def _path_of(option: str, sc: Scenario) -> str:
    """A CLI option's name (tpot, think-time, hf-config) as the scenario path that sets it (of two,
    the one the file sets: seq_len in model or workload)."""
    name = option.replace("-", "_")
    if name in _FLAG_PATHS:
        return _FLAG_PATHS[name]
    hits = [section for section, model in (("workload", Workload), ("model", ModelSection),
                                           ("constraints", Constraints)) if name in model.model_fields]
    if not hits:
        return option
    given = [h for h in hits if getattr(getattr(sc, h), name, None) is not None]
    return f"{(given or hits)[0]}.{name}"


def _check_names(s: Scenario) -> None:
    """Accelerator and model names resolve (custom accelerators of the file included)."""
    with s.overrides():
        for section, names in (("constraints.gpus", s.constraints.gpus or []),
                               ("constraints.own", list((s.constraints.own or {}))),
                               ("catalog.prices", [p.gpu for p in s.catalog.prices])):
            for i, name in enumerate(names):
                try:
                    catalog.accelerator(name)
                except GpuplanError as exc:
                    path = f"{section}[{i}]" if section != "constraints.own" else f"{section}.{name}"
                    if section == "catalog.prices":
                        path = f"catalog.prices[{i}].gpu"
                    raise ScenarioError(path, name, exc.message) from None
    if s.model.preset is not None:
        try:
            catalog.model(s.model.preset)
        except GpuplanError as exc:
            raise ScenarioError("model.preset", s.model.preset, exc.message) from None


def json_schema() -> dict:
    return Scenario.model_json_schema()
