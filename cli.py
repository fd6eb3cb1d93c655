"""gpuplan's command line: parse options, call recommender.api, render. No domain logic here."""

from __future__ import annotations

import contextlib
import functools
import sys
from typing import Annotated, Optional

import typer

EXIT_CODES = {"infeasible": 3, "unknown": 4}  # 0 a plan, 2 bad input, 1 an internal error


class _OneCommandTyper(typer.Typer):
    """A Typer app that, run as `gpuplan COMMAND ...`, builds the click command of COMMAND alone:
    typer builds every command's options from their signatures on each start, and the others'
    are not needed to run one (help, completion and anything else get the whole app)."""

    def __call__(self, *args, **kwargs):
        import os
        from typer.main import get_command_name

        argv = kwargs.get("args", sys.argv[1:]) if not args else ()
        name = argv[0] if argv else None
        if name is None or any(k.endswith("_COMPLETE") for k in os.environ):
            return super().__call__(*args, **kwargs)
        commands = [c for c in self.registered_commands
                    if (c.name or get_command_name(c.callback.__name__)) == name]
        groups = [g for g in self.registered_groups if g.name == name]
        if len(commands) + len(groups) != 1:   # an unknown command: one line too
            return self._usage_in_one_line(None, kwargs)
        every = self.registered_commands, self.registered_groups
        self.registered_commands, self.registered_groups = commands, groups
        try:
            if args or "standalone_mode" in kwargs:
                return super().__call__(*args, **kwargs)
            return self._usage_in_one_line(name, kwargs)
        finally:
            self.registered_commands, self.registered_groups = every

    def _usage_in_one_line(self, name: str | None, kwargs: dict):
        """Run with click's usage errors (an unknown option, a missing value) printed as one
        `gpuplan: error:` line, exit 2, like every other input error, not as a framed box."""
        try:
            rv = super().__call__(**kwargs, standalone_mode=False)
        except typer.Abort:
            print("Aborted!", file=sys.stderr)
            sys.exit(1)
        except Exception as exc:   # click's ClickException family (typer vendors click: no public name)
            if not (hasattr(exc, "format_message") and isinstance(getattr(exc, "exit_code", None), int)):
                raise
            ctx = getattr(exc, "ctx", None)   # the (sub)command the error is in: `gpuplan prices import`
            path = ctx.command_path.split()[1:] if ctx is not None and ctx.command_path else ([name] if name else [])
            see = " ".join(["gpuplan", *path, "--help"])
            print(f"gpuplan: error: {exc.format_message()} (see `{see}`)", file=sys.stderr)
            sys.exit(exc.exit_code)
        sys.exit(rv if isinstance(rv, int) else 0)


app = _OneCommandTyper(help="gpuplan: plan GPU training and serving with an exact optimizer.\n\n"
                       "Exit status: 0 a plan (or a listing); 2 bad input (one line naming the field); "
                       "3 infeasible (the answer gives the least relaxations); 4 the time limit ran out with "
                       "no plan found; 1 an internal error (a bug: please report it).",
                  no_args_is_help=True, add_completion=True, pretty_exceptions_enable=False)

Opt = Optional[str]
JSON = Annotated[bool, typer.Option("--json", help="Machine-readable JSON on stdout.")]
CSV = Annotated[Opt, typer.Option("--csv", metavar="FILE", help="Also write the table as CSV to FILE ('-' = stdout).")]


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            print(f"gpuplan {version('gpuplan')}")
        except PackageNotFoundError:
            print("gpuplan (not installed)")
        raise typer.Exit()


@app.callback()
def _main(version: Annotated[bool, typer.Option("--version", callback=_version, is_eager=True,
                                                help="Print the version and exit.")] = False) -> None:
    """gpuplan: plan GPU training and serving with an exact optimizer."""


# options shared by the commands that take a model and a training job, declared once
ModelOpt = Annotated[Opt, typer.Option(metavar="NAME", help="Model preset, e.g. llama-2-70b (see `gpuplan models`).")]
ParamsOpt = Annotated[Opt, typer.Option(metavar="COUNT", help="Parameter count for a standard dense shape, e.g. 100B.")]
HfConfigOpt = Annotated[Opt, typer.Option(metavar="PATH", help="Local Hugging Face config.json (not downloaded).")]
LayersOpt = Annotated[Opt, typer.Option(metavar="N", help="Override the number of layers.")]
HiddenOpt = Annotated[Opt, typer.Option(metavar="N", help="Override the hidden size.")]
HeadsOpt = Annotated[Opt, typer.Option(metavar="N", help="Override the attention heads.")]
AttentionOpt = Annotated[str, typer.Option(metavar="flash|eager", help="Attention kernel: flash (FlashAttention / fused SDPA, the default: no s^2 scores stored) or eager.")]
CountOpt = Annotated[Opt, typer.Option(metavar="N", help="GPU count (= tp*pp*cp*dp).")]
DpOpt = Annotated[Opt, typer.Option(metavar="N", help="Data-parallel degree (instead of --count).")]
TpOpt = Annotated[str, typer.Option(metavar="N", help="Tensor-parallel degree.")]
PpOpt = Annotated[str, typer.Option(metavar="N", help="Pipeline-parallel degree.")]
VpOpt = Annotated[str, typer.Option(metavar="N", help="Virtual pipeline stages per GPU (interleaved 1F1B).")]
CpOpt = Annotated[str, typer.Option(metavar="N", help="Context-parallel degree: each sequence split over N GPUs (ring attention).")]
ZeroOpt = Annotated[str, typer.Option(metavar="0-3", help="ZeRO stage 0-3.")]
RecomputeOpt = Annotated[str, typer.Option(metavar="none|selective|full", help="Activation recomputation: none|selective|full.")]
MicroBatchOpt = Annotated[str, typer.Option(metavar="N", help="Micro-batch size in sequences.")]
PrecisionOneOpt = Annotated[str, typer.Option(metavar="PRECISION", help="bf16|fp16|fp8|fp32.")]
StackOpt = Annotated[Opt, typer.Option(metavar="megatron|pytorch", help="Training stack the kernels' speed is for: megatron (Megatron-LM / NeMo / TE) or pytorch (FSDP: torchtitan, llm-foundry, HF). Default: megatron for pre-training, pytorch for fine-tuning.")]
GradSyncOpt = Annotated[str, typer.Option(metavar="micro-batch|step", help="ZeRO-3 / FSDP gradient accumulation: micro-batch (reduce-scatter each micro-batch's gradients: DeepSpeed, Megatron, torchtitan; the default) or step (FSDP's no_sync: each GPU accumulates its stage's whole unsharded gradient and reduces once a step: Lightning Fabric / litgpt, Hugging Face Accelerate's default).")]
QuantOpt = Annotated[Opt, typer.Option(metavar="nf4-dq|nf4|torchao-nf4", help="QLoRA's 4-bit base: nf4-dq (bitsandbytes NF4 with double-quantized constants, the QLoRA paper's; the default), nf4 (bitsandbytes with an fp32 constant per 64 weights, Hugging Face's default) or torchao-nf4 (torchao's NF4, as torchtune runs it: its linears keep no input for the backward pass).")]
LossOpt = Annotated[str, typer.Option(metavar="standard|fused", help="Loss kernel: standard (cross-entropy on fp32 logits) or fused (fused / chunked cross-entropy: no fp32 logits held).")]
KvHeadsOpt = Annotated[Opt, typer.Option(metavar="N", help="Override the KV heads (GQA/MQA).")]
SeqLenOpt = Annotated[Opt, typer.Option(metavar="TOKENS", help="Training sequence length (default: the preset's published "
                                            "pre-training length, else 4096; fine-tuning 4096).")]
TokensOpt = Annotated[Opt, typer.Option(metavar="COUNT", help="Training tokens, e.g. 2T (default: 20 per parameter).")]
BatchOpt = Annotated[Opt, typer.Option(metavar="TOKENS", help="Global batch in tokens (default 4M; fine-tuning 64 sequences).")]
MethodOpt = Annotated[str, typer.Option(metavar="full|lora|qlora", help="full | lora | qlora (adapters on a frozen 16-bit / 4-bit base).")]
RankOpt = Annotated[Opt, typer.Option(metavar="R", help="LoRA rank (default 16), adapters on every linear layer.")]
EpochsOpt = Annotated[Opt, typer.Option(metavar="N", help="Passes over the --tokens (default 1).")]
# limits and output options of the planning commands
MaxGpusOpt = Annotated[Opt, typer.Option(metavar="N", help="At most this many GPUs.")]
PowerOpt = Annotated[Opt, typer.Option(metavar="KW", help="Facility power envelope in kW (TDP x PUE).")]
ComputeBudgetOpt = Annotated[Opt, typer.Option(metavar="PF-DAYS", help="Compute budget: the run's model FLOPs "
                                                   "(6ND + attention) at most this, in PF-days (8.64e19 FLOPs), "
                                                   "e.g. 5000PFd, or 3.14e23FLOPs. With --objective compute it "
                                                   "caps the tokens.")]
VendorsOpt = Annotated[Opt, typer.Option(metavar="LIST", help="Allowed vendors, e.g. nvidia,amd.")]
ProvidersOpt = Annotated[Opt, typer.Option(metavar="LIST", help="Allowed cloud providers, e.g. aws,lambda.")]
AcquisitionsOpt = Annotated[Opt, typer.Option(metavar="LIST", help="Allowed: cloud,spot,reserved,serverless,buy (default all but serverless).")]
OwnOpt = Annotated[Optional[list[str]], typer.Option(metavar="GPU:COUNT", help="GPUs you own, GPU:COUNT (repeatable).")]
TopOpt = Annotated[str, typer.Option(metavar="N", help="How many ranked plans.")]
DiverseOpt = Annotated[bool, typer.Option(help="The best plan per accelerator type.")]
AmortizeOpt = Annotated[bool, typer.Option(help="Buying: charge this job's share of the GPUs' life "
                                              "(default 5 years, --depreciation-years).")]
TimeLimitOpt = Annotated[str, typer.Option(metavar="DURATION", help="Solver time limit per solve.")]
CurrencyOpt = Annotated[str, typer.Option(metavar="USD|CNY|EUR", help="Show money in USD | CNY | EUR (dated rates, catalog/fx.yaml); "
                                              "plain budgets are read in it too. JSON stays in USD.")]
MarketOpt = Annotated[Opt, typer.Option(metavar="global|china|all", help="Prices from: global (default; a scenario file may say), china (its "
                                            "clouds and channel prices, global where China has none), or all.")]
# what a user says of their own site (replacing catalog/assumptions.yaml for this command)
SITE_OPTIONS = ("goodput", "pue", "electricity", "colo", "depreciation_years")
GoodputOpt = Annotated[Opt, typer.Option(metavar="SHARE", help="Share of wall-clock time spent training, e.g. 0.9 or 30% (default 0.90).")]
PueOpt = Annotated[Opt, typer.Option(metavar="RATIO", help="Facility power / IT power of your site (default 1.56).")]
ElectricityOpt = Annotated[Opt, typer.Option(metavar="PRICE", help="Electricity price per kWh, e.g. 0.12 or ¥0.6 (default $0.08).")]
ColoOpt = Annotated[Opt, typer.Option(metavar="PRICE", help="Colocation per kW of IT load per month (default $184).")]
BuyPriceOpt = Annotated[Optional[list[str]], typer.Option(metavar="GPU=PRICE", help="Your purchase price per GPU, server included, "
                                                         "GPU=PRICE (repeatable), e.g. a100-80g=15000.")]
DepreciationOpt = Annotated[Opt, typer.Option(metavar="YEARS", help="Useful life of bought GPUs in years, for --amortize (default 5).")]
# scenario-file commands
FileArg = Annotated[str, typer.Argument(metavar="FILE", help="Scenario YAML file (see `gpuplan schema`, constraints/).")]
SetOpt = Annotated[Optional[list[str]], typer.Option("--set", help="Edit the file first: path=value, "
                                                     "e.g. constraints.deadline=30d (repeatable).")]


OUTPUT_OPTIONS = ("csv", "png")   # options that name a file gpuplan writes ('-': stdout)


def _writable(name: str, path: str) -> None:
    """An output path, checked before any work: not a folder, in a folder that exists and can be
    written (one line naming the option, exit 2, rather than a traceback after the solve)."""
    import os
    from pathlib import Path

    from recommender.errors import GpuplanError

    if path == "-" and name == "csv":
        return
    p = Path(path)
    field = f"--{name}"
    if not str(path).strip():
        raise GpuplanError(field, path, "give a file path" + (" (or '-' for stdout)" if name == "csv" else ""))
    if p.is_dir():
        raise GpuplanError(field, path, "is a folder; give a file path in it")
    parent = p.parent if str(p.parent) else Path(".")
    if not parent.is_dir():
        raise GpuplanError(field, path, f"its folder {parent} does not exist")
    if not os.access(parent, os.W_OK) or (p.exists() and not os.access(p, os.W_OK)):
        raise GpuplanError(field, path, "cannot be written (permission denied)")


def _no_empty_values(fn, kwargs: dict) -> None:
    """An option given as '' (or a list item given so) is named, not read as "not given"."""
    from recommender.errors import GpuplanError

    for name, value in kwargs.items():
        items = value if isinstance(value, (list, tuple)) else [value]
        if name in ("file", "path") or not any(isinstance(v, str) and not v.strip() for v in items):
            continue
        import typing

        from typer.models import ArgumentInfo

        hint = typing.get_type_hints(fn, include_extras=True).get(name)
        positional = any(isinstance(m, ArgumentInfo) for m in getattr(hint, "__metadata__", ()))
        raise GpuplanError(name if positional else f"--{name.replace('_', '-')}", "''",
                           "is empty: give a value, or leave the option out")


def user_errors(fn):
    """Print a GpuplanError as one line on stderr and exit 2 (Infeasible: exit 3), never a traceback."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from pydantic import ValidationError

        from recommender.errors import GpuplanError, Infeasible, PlanCheckError
        try:
            for name in OUTPUT_OPTIONS:
                if kwargs.get(name) is not None:
                    _writable(name, kwargs[name])
            _no_empty_values(fn, kwargs)
            if {"currency", "market", "buy_price", *SITE_OPTIONS} & set(kwargs):
                from recommender import api, catalog, money, prices

                market = kwargs.get("market")
                with contextlib.ExitStack() as stack:
                    stack.enter_context(money.shown_in(kwargs.get("currency")))
                    if market is not None:
                        stack.enter_context(prices.shopping_in(market))
                    site = api.site_values(**{k: kwargs.get(k) for k in SITE_OPTIONS})
                    stack.enter_context(catalog.assuming(**site))
                    if kwargs.get("buy_price"):
                        stack.enter_context(catalog.overrides(purchase_prices=api.own_purchase_prices(
                            kwargs["buy_price"])))
                    return fn(*args, **kwargs)
            return fn(*args, **kwargs)
        except Infeasible as exc:
            if kwargs.get("json_out"):   # a script reading --json gets a document on exit 3 too
                import json

                print(json.dumps({"status": "infeasible", "field": exc.field, "value": str(exc.value),
                                  "message": exc.message}, indent=2))
            print(f"gpuplan: infeasible: {exc}", file=sys.stderr)
            raise typer.Exit(EXIT_CODES["infeasible"]) from None
        except GpuplanError as exc:
            print(f"gpuplan: error: {exc}", file=sys.stderr)
            raise typer.Exit(2) from None
        except PlanCheckError as exc:
            print(f"gpuplan: internal error (a bug, please report it): a returned plan failed its re-check: {exc}",
                  file=sys.stderr)
            raise typer.Exit(1) from None
        except BrokenPipeError:   # stdout closed early (`gpuplan ... | head`): click stops quietly
            raise
        except OSError as exc:   # writing an output the checks above passed (a full disk, a race)
            print(f"gpuplan: error: {exc.filename or 'output'}: cannot write ({exc.strerror or exc})", file=sys.stderr)
            raise typer.Exit(2) from None
        except ValidationError as exc:
            err = exc.errors()[0]
            field = ".".join(str(p) for p in err["loc"]) or "input"
            print(f"gpuplan: error: {field}={err.get('input')!s}: {err['msg']}", file=sys.stderr)
            raise typer.Exit(2) from None

    return wrapper


@app.command()
@user_errors
def evaluate(
    model: ModelOpt = None,
    params: ParamsOpt = None,
    hf_config: HfConfigOpt = None,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    seq_len: SeqLenOpt = None,
    tokens: TokensOpt = None,
    global_batch: BatchOpt = None,
    gpu: Annotated[str, typer.Option(metavar="ID", help="Accelerator id or alias, e.g. h100-sxm, 'A100 80GB'.")] = "h100-sxm",
    count: CountOpt = None,
    dp: DpOpt = None,
    tp: TpOpt = "1",
    pp: PpOpt = "1",
    vp: VpOpt = "1",
    cp: CpOpt = "1",
    zero: ZeroOpt = "1",
    recompute: RecomputeOpt = "selective",
    micro_batch: MicroBatchOpt = "1",
    precision: PrecisionOneOpt = "bf16",
    acquisition: Annotated[str, typer.Option(metavar="LIST", help="cloud|spot|reserved|serverless|buy.")] = "cloud",
    provider: Annotated[Opt, typer.Option(metavar="NAME", help="Cloud provider (default: cheapest published).")] = None,
    headroom: Annotated[Opt, typer.Option(metavar="SHARE", help="Memory kept free, as a fraction (default 0.10).")] = None,
    amortize: Annotated[bool, typer.Option(help="Buying: charge this job's share of the GPUs' life (--depreciation-years), not the whole purchase.")] = False,
    own: Annotated[str, typer.Option(metavar="COUNT", help="How many of these GPUs (--gpu) you already own (energy and colocation only).")] = "0",
    ep: Annotated[str, typer.Option(metavar="N", help="Expert-parallel degree (MoE): experts split over EP of the DP ranks.")] = "1",
    ep_overlap: Annotated[bool, typer.Option(help="Hide the MoE all-to-all behind compute (DualPipe-style).")] = False,
    attention: AttentionOpt = "flash",
    loss: LossOpt = "standard",
    grad_sync: GradSyncOpt = "micro-batch",
    quant: QuantOpt = None,
    stack: StackOpt = None,
    method: MethodOpt = "full",
    lora_rank: RankOpt = None,
    epochs: EpochsOpt = None,
    goodput: GoodputOpt = None,
    pue: PueOpt = None,
    electricity: ElectricityOpt = None,
    colo: ColoOpt = None,
    buy_price: BuyPriceOpt = None,
    depreciation_years: DepreciationOpt = None,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """Memory, time and cost of ONE fixed training or fine-tuning configuration, fully explained."""
    from recommender import api, report

    ev = api.evaluate_config(model=model, params=params, hf_config=hf_config, layers=layers, hidden=hidden,
                             heads=heads, kv_heads=kv_heads, seq_len=seq_len, tokens=tokens,
                             global_batch=global_batch, gpu=gpu, count=count, tp=tp, pp=pp, dp=dp,
                             zero=zero, recompute=recompute, micro_batch=micro_batch, precision=precision,
                             acquisition=acquisition, provider=provider, headroom=headroom,
                             amortize=amortize, own=own, ep=ep, ep_overlap=ep_overlap, method=method,
                             lora_rank=lora_rank, epochs=epochs, vp=vp, cp=cp, attention=attention, loss=loss, stack=stack, grad_sync=grad_sync, quant=quant)
    if csv:
        report.evaluation_csv(ev).to_csv(csv if csv != "-" else sys.stdout, index=False)
        if csv == "-":
            return
    if json_out:
        print(report.to_json(ev))
    else:
        report.render_evaluation(ev)


@app.command()
@user_errors
def calibrate(
    measured: Annotated[Opt, typer.Option(metavar="TOKENS/S", help="Your run's measured throughput per GPU, e.g. 3500 or 3.5k tok/s.")] = None,
    model: ModelOpt = None,
    params: ParamsOpt = None,
    hf_config: HfConfigOpt = None,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    seq_len: SeqLenOpt = None,
    global_batch: BatchOpt = None,
    gpu: Annotated[str, typer.Option(metavar="ID", help="The accelerator the run used.")] = "h100-sxm",
    count: CountOpt = None,
    dp: DpOpt = None,
    tp: TpOpt = "1",
    pp: PpOpt = "1",
    vp: VpOpt = "1",
    cp: CpOpt = "1",
    zero: ZeroOpt = "1",
    recompute: RecomputeOpt = "selective",
    micro_batch: MicroBatchOpt = "1",
    precision: PrecisionOneOpt = "bf16",
    method: MethodOpt = "full",
    lora_rank: RankOpt = None,
    grad_sync: GradSyncOpt = "micro-batch",
    quant: QuantOpt = None,
    stack: StackOpt = None,
    reset: Annotated[bool, typer.Option(help="Forget your calibration for this accelerator and stack.")] = False,
    json_out: JSON = False,
):
    """Fit this accelerator's kernel efficiency to a run you measured (stored in $GPUPLAN_HOME/calibration.csv; train, finetune and evaluate then use it)."""
    from recommender import api, report
    from recommender.errors import GpuplanError

    if measured is None and not reset:
        raise GpuplanError("measured", None, "give your run's throughput per GPU, e.g. --measured 3500 (tokens/s/GPU)")
    out = api.calibrate(measured=measured, stack=stack, reset=reset, model=model, params=params, hf_config=hf_config,
                        layers=layers, hidden=hidden, heads=heads, kv_heads=kv_heads, seq_len=seq_len,
                        global_batch=global_batch, gpu=gpu, count=count, dp=dp, tp=tp, pp=pp, vp=vp, cp=cp, zero=zero,
                        recompute=recompute, micro_batch=micro_batch, precision=precision, method=method,
                        lora_rank=lora_rank, grad_sync=grad_sync, quant=quant)
    if json_out:
        print(report.to_json(out))
    elif out["reset"]:
        print(f"calibration for {out['accelerator']} ({out['stack']} stack) removed from {out['path']}")
    else:
        print(f"{out['accelerator']}, {out['stack']} stack: measured {out['measured_tokens_per_s_per_gpu']:,.0f} tokens/s/GPU\n"
              f"  before: {out['before_tokens_per_s_per_gpu']:,.0f} tokens/s/GPU predicted (MFU {out['before_mfu']:.1%}), "
              f"kernel efficiency {out['before_efficiency']:.3f} (catalog)\n"
              f"  after:  {out['after_tokens_per_s_per_gpu']:,.0f} tokens/s/GPU (MFU {out['after_mfu']:.1%}), "
              f"kernel efficiency {out['after_efficiency']:.3f} (yours)\n"
              f"stored in {out['path']}: train, finetune and evaluate use it for {out['accelerator']} on the "
              f"{out['stack']} stack (--reset forgets it)")


@app.command()
@user_errors
def train(
    model: ModelOpt = None,
    params: ParamsOpt = None,
    hf_config: HfConfigOpt = None,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    seq_len: SeqLenOpt = None,
    tokens: TokensOpt = None,
    global_batch: BatchOpt = None,
    objective: Annotated[str, typer.Option(metavar="cost|time|compute", help="cost | time | compute (most tokens within budget/deadline).")] = "cost",
    budget: Annotated[Opt, typer.Option(metavar="MONEY", help="Budget, e.g. $3M.")] = None,
    deadline: Annotated[Opt, typer.Option(metavar="DURATION", help="Deadline, e.g. 60d (buying adds its lead time).")] = None,
    compute_budget: ComputeBudgetOpt = None,
    max_gpus: MaxGpusOpt = None,
    power_kw: PowerOpt = None,
    gpus: Annotated[Opt, typer.Option(metavar="LIST", help="Allowed accelerators, e.g. h100-sxm,mi300x.")] = None,
    vendors: VendorsOpt = None,
    providers: ProvidersOpt = None,
    precision: Annotated[Opt, typer.Option(metavar="LIST", help="Allowed precisions (default bf16), e.g. bf16,fp8.")] = None,
    acquisition: AcquisitionsOpt = None,
    own: OwnOpt = None,
    top: TopOpt = "5",
    diverse: DiverseOpt = False,
    amortize: AmortizeOpt = False,
    time_limit: TimeLimitOpt = "10s",
    goodput: GoodputOpt = None,
    pue: PueOpt = None,
    electricity: ElectricityOpt = None,
    colo: ColoOpt = None,
    buy_price: BuyPriceOpt = None,
    depreciation_years: DepreciationOpt = None,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    attention: AttentionOpt = "flash",
    loss: LossOpt = "standard",
    grad_sync: GradSyncOpt = "micro-batch",
    quant: QuantOpt = None,
    stack: StackOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """The cheapest (or fastest) training setup over the whole catalog, exact, ranked and explained."""
    from recommender import api

    result = api.train(model=model, params=params, hf_config=hf_config, layers=layers, hidden=hidden,
                       heads=heads, kv_heads=kv_heads, seq_len=seq_len, tokens=tokens, global_batch=global_batch,
                       objective=objective, budget=budget, deadline=deadline, max_gpus=max_gpus,
                       power_kw=power_kw, gpus=gpus, vendors=vendors, providers=providers, precision=precision,
                       acquisition=acquisition, own=own, top=top, diverse=diverse, amortize=amortize,
                       time_limit=time_limit, compute_budget=compute_budget, attention=attention, loss=loss, stack=stack, grad_sync=grad_sync, quant=quant)
    _print_train(result, json_out, csv)


def _emit(result, frame, render, json_out: bool, csv: str | None) -> None:
    """--json: the whole result on stdout (and the table as CSV with --csv); else the rendering."""
    from recommender import report

    if json_out:
        print(report.to_json(result))
        if csv:
            numeric = {report.train_frame: report.train_csv, report.serve_frame: report.serve_csv,
                       report.whatif_frame: report.whatif_csv,
                       report.frontier_frame: report.frontier_csv}.get(frame, frame)
            numeric(result).to_csv(csv if csv != "-" else sys.stdout, index=False)
    else:
        render(result, csv_path=csv)
    code = EXIT_CODES.get(getattr(result, "status", None), 0)
    if code:
        raise typer.Exit(code)


def _print_train(result, json_out: bool, csv: str | None) -> None:
    from recommender import report

    _emit(result, report.train_frame, report.render_train, json_out, csv)


@app.command()
@user_errors
def finetune(
    model: ModelOpt = None,
    hf_config: HfConfigOpt = None,
    tokens: Annotated[Opt, typer.Option(metavar="COUNT", help="Fine-tuning dataset size in tokens, e.g. 1B.")] = None,
    epochs: EpochsOpt = None,
    method: MethodOpt = "lora",
    lora_rank: RankOpt = None,
    seq_len: SeqLenOpt = None,
    global_batch: BatchOpt = None,
    objective: Annotated[str, typer.Option(metavar="cost|time|compute", help="cost | time | compute (most tokens within budget/deadline).")] = "cost",
    budget: Annotated[Opt, typer.Option(metavar="MONEY", help="Budget, e.g. $20k.")] = None,
    deadline: Annotated[Opt, typer.Option(metavar="DURATION", help="Deadline, e.g. 2d (buying adds its lead time).")] = None,
    compute_budget: ComputeBudgetOpt = None,
    max_gpus: MaxGpusOpt = None,
    power_kw: PowerOpt = None,
    gpus: Annotated[Opt, typer.Option(metavar="LIST", help="Allowed accelerators, e.g. h100-sxm,l40s.")] = None,
    vendors: VendorsOpt = None,
    providers: ProvidersOpt = None,
    precision: Annotated[Opt, typer.Option(metavar="LIST", help="Allowed compute precisions (default bf16).")] = None,
    acquisition: AcquisitionsOpt = None,
    own: OwnOpt = None,
    top: TopOpt = "5",
    diverse: DiverseOpt = False,
    amortize: AmortizeOpt = False,
    time_limit: TimeLimitOpt = "10s",
    goodput: GoodputOpt = None,
    pue: PueOpt = None,
    electricity: ElectricityOpt = None,
    colo: ColoOpt = None,
    buy_price: BuyPriceOpt = None,
    depreciation_years: DepreciationOpt = None,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    attention: AttentionOpt = "flash",
    loss: LossOpt = "standard",
    grad_sync: GradSyncOpt = "micro-batch",
    quant: QuantOpt = None,
    stack: StackOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """The cheapest (or fastest) way to fine-tune a model: full, LoRA or QLoRA, exact and ranked."""
    from recommender import api

    result = api.finetune(model=model, hf_config=hf_config, tokens=tokens, epochs=epochs, method=method,
                          lora_rank=lora_rank, seq_len=seq_len, global_batch=global_batch, objective=objective,
                          budget=budget, deadline=deadline, max_gpus=max_gpus, power_kw=power_kw, gpus=gpus,
                          vendors=vendors, providers=providers, precision=precision, acquisition=acquisition,
                          own=own, top=top, diverse=diverse, amortize=amortize, time_limit=time_limit,
                          compute_budget=compute_budget, attention=attention, loss=loss, stack=stack, grad_sync=grad_sync, quant=quant)
    _print_train(result, json_out, csv)


@app.command()
@user_errors
def solve(
    file: FileArg,
    set_: SetOpt = None,
    robust: Annotated[bool, typer.Option(help="Also: how far efficiency, price and tokens (serving: demand) "
                                         "can move before #1 changes, and to what.")] = False,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """Solve a scenario file: the same plan as the equivalent train / finetune / serve flags."""
    from recommender import report, scenario

    sc = scenario.load(file, set_ or [])
    kind, result = sc.run()
    if not robust:
        (_print_serve if kind == "serve" else _print_train)(result, json_out, csv)
        return
    from recommender import robust as rob

    rb = rob.analyse(sc, kind, result)
    if json_out:
        print(report.to_json({"result": result.model_dump(mode="json"), "robustness": rb.model_dump(mode="json")}))
        return
    (_print_serve if kind == "serve" else _print_train)(result, False, csv)
    report.render_robust(rb)


@app.command()
@user_errors
def whatif(
    file: FileArg,
    vary: Annotated[list[str], typer.Option(help="name=v1,v2,...: a setting and its values (repeatable; the grid "
                                            "is every combination). Names: deadline, budget, tokens, gpus "
                                            "('+' joins list items), ..., a path, or price.GPU.TIER.")],
    set_: SetOpt = None,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """A scenario file over a grid of edits: one row per scenario, its best plan and what changed."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from recommender import report, whatif as wf

    with Progress(TextColumn("solving"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("grid", total=None)
        result = wf.run(file, vary, set_ or [], progress=lambda done, total: bar.update(task, completed=done,
                                                                                         total=total))
    _emit(result, report.whatif_frame, report.render_whatif, json_out, csv)


@app.command()
@user_errors
def pareto(
    file: FileArg,
    set_: SetOpt = None,
    latency: Annotated[str, typer.Option(metavar="e2e|ttft|tpot", help="Serving: the latency traded against cost, e2e | ttft | tpot.")] = "e2e",
    png: Annotated[Opt, typer.Option(metavar="PATH", help="Write the chart here (default: FILE's name + -pareto.png).")] = None,
    plot: Annotated[bool, typer.Option(help="Write the PNG chart.")] = True,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """The exact cost-vs-time (training) or cost-vs-latency (serving) frontier of a scenario file:
    one CP-SAT solve per point, as a table and a PNG chart."""
    from pathlib import Path

    from recommender import report, scenario

    sc = scenario.load(file, set_ or [])
    fr = sc.pareto(latency.lower())
    _emit(fr, report.frontier_frame, report.render_frontier, json_out, csv)
    if plot and fr.points:
        path = Path(png or f"{Path(file).stem}-pareto.png")
        path.write_bytes(report.frontier_chart(fr, sc.name or Path(file).stem))
        print(f"chart: {path}", file=sys.stderr if json_out or csv == "-" else sys.stdout)


@app.command()
@user_errors
def fleet(
    file: Annotated[str, typer.Argument(metavar="FILE", help="Portfolio YAML file (see constraints/portfolios/, "
                                        "`gpuplan schema --portfolio`).")],
    set_: Annotated[Optional[list[str]], typer.Option("--set", help="Edit the file first: path=value, e.g. "
                                                      "budget.total=8M (repeatable).")] = None,
    time_limit: TimeLimitOpt = "30s",
    png: Annotated[Opt, typer.Option(metavar="PATH", help="Write the Gantt chart here (default: FILE's name + -fleet.png).")] = None,
    plot: Annotated[bool, typer.Option(help="Write the Gantt chart PNG.")] = False,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: Annotated[Opt, typer.Option("--csv", metavar="FILE", help="Also write the jobs as CSV to FILE and the "
                                     "periods beside it (FILE-periods.csv); '-' = jobs to stdout.")] = None,
):
    """A portfolio of training runs and services over a horizon on one budget: what to buy, reserve
    and rent, and when (one exact CP-SAT model over every job, period and GPU source)."""
    from pathlib import Path

    from recommender import fleet as fl
    from recommender import fleet_report, portfolio, report
    from recommender.units import parse_duration_s

    pf = portfolio.load(file, set_ or [])
    limit = parse_duration_s("time-limit", time_limit)
    inst = portfolio.compile(pf)
    with portfolio.context(pf):
        result = fl.plan_fleet(inst, time_limit_s=limit, notes=fl.standard_notes(inst))
    if json_out:
        print(report.to_json(result))
        if csv:
            fleet_report.write_csv(result, csv)
    else:
        fleet_report.render(result, csv_path=csv)
    if (plot or png) and result.jobs:
        path = Path(png or f"{Path(file).stem}-fleet.png")
        path.write_bytes(fleet_report.gantt_png(result, pf.name or Path(file).stem))
        print(f"chart: {path}", file=sys.stderr if json_out or csv == "-" else sys.stdout)
    code = EXIT_CODES.get(result.status, 0)
    if code:
        raise typer.Exit(code)


@app.command()
@user_errors
def schema(portfolio_: Annotated[bool, typer.Option("--portfolio", help="The portfolio files' schema "
                                                  "(gpuplan fleet) instead.")] = False):
    """The scenario files' JSON schema (or, with --portfolio, the portfolio files'), for editors and validators."""
    import json

    from recommender import scenario

    if portfolio_:
        from recommender import portfolio

        print(json.dumps(portfolio.Portfolio.model_json_schema(), indent=2))
        return
    print(json.dumps(scenario.json_schema(), indent=2))


@app.command()
@user_errors
def serve(
    model: ModelOpt = None,
    params: ParamsOpt = None,
    hf_config: HfConfigOpt = None,
    layers: LayersOpt = None,
    hidden: HiddenOpt = None,
    heads: HeadsOpt = None,
    kv_heads: KvHeadsOpt = None,
    prompt: Annotated[str, typer.Option(metavar="TOKENS", help="Prompt length: tokens, or words as 50w (0.75 words/token).")] = "512",
    output: Annotated[str, typer.Option(metavar="TOKENS", help="Output length: tokens, or words as 1000w.")] = "256",
    rate: Annotated[Opt, typer.Option(metavar="RATE", help="Demand in requests/s, e.g. 20rps, 1200/min or 30/h (at least one an hour).")] = None,
    users: Annotated[Opt, typer.Option(metavar="N", help="Concurrent users (rate = users / (think time + latency)).")] = None,
    think_time: Annotated[Opt, typer.Option(metavar="DURATION", help="Users' think time between requests, e.g. 3s.")] = None,
    ttft: Annotated[Opt, typer.Option(metavar="DURATION", help="Time-to-first-token target, e.g. 1s.")] = None,
    tpot: Annotated[Opt, typer.Option(metavar="DURATION", help="Time-per-output-token target, e.g. 50ms.")] = None,
    e2e: Annotated[Opt, typer.Option(metavar="DURATION", help="End-to-end latency target per request, e.g. 3s.")] = None,
    horizon: Annotated[str, typer.Option(metavar="DURATION", help="Serving horizon for cost, e.g. 1y, 6mo.")] = "1y",
    objective: Annotated[str, typer.Option(metavar="cost|latency", help="cost | latency (lowest end-to-end, then cheapest).")] = "cost",
    budget: Annotated[Opt, typer.Option(metavar="MONEY", help="Budget over the horizon, e.g. $2M.")] = None,
    max_gpus: Annotated[Opt, typer.Option(metavar="N", help="At most this many GPUs in the fleet.")] = None,
    power_kw: PowerOpt = None,
    gpus: Annotated[Opt, typer.Option(metavar="LIST", help="Allowed accelerators, e.g. h100-sxm,mi300x.")] = None,
    vendors: VendorsOpt = None,
    providers: ProvidersOpt = None,
    precision: Annotated[Opt, typer.Option(metavar="LIST", help="Weight precisions to consider (default bf16,fp8; fp16 on parts without bf16; with --gpu: bf16): bf16,fp16,fp8,int8,int4.")] = None,
    kv_precision: Annotated[str, typer.Option(metavar="auto|PREC", help="KV-cache precision: auto (8-bit with 8-bit weights) or bf16,fp8,int8...")] = "auto",
    acquisition: AcquisitionsOpt = None,
    own: OwnOpt = None,
    top: Annotated[str, typer.Option(metavar="N", help="How many ranked fleets.")] = "5",
    amortize: Annotated[bool, typer.Option(help="Buying: charge the horizon's share of the GPUs' life (--depreciation-years).")] = False,
    time_limit: TimeLimitOpt = "10s",
    gpu: Annotated[Opt, typer.Option(metavar="ID", help="Fix the accelerator: evaluate one configuration instead of searching.")] = None,
    tp: Annotated[Opt, typer.Option(metavar="N", help="Fixed configuration: tensor-parallel degree per replica.")] = None,
    pp: Annotated[str, typer.Option(metavar="N", help="Fixed configuration: pipeline stages per replica.")] = "1",
    replicas: Annotated[Opt, typer.Option(metavar="N", help="Fixed configuration: replicas (default: enough for the demand).")] = None,
    batch: Annotated[Opt, typer.Option(metavar="N", help="Fixed configuration: slot cap, the most sequences at once (default: the one with the most capacity within the targets).")] = None,
    headroom: Annotated[Opt, typer.Option(metavar="SHARE", help="Memory kept free, as a fraction (default 0.10).")] = None,
    percentile: Annotated[str, typer.Option(metavar="p50|p90|p99", help="The percentile the --ttft / --tpot / --e2e targets hold at (default p99).")] = "p99",
    length_dist: Annotated[str, typer.Option(metavar="exponential|fixed", help="Output lengths around the --output mean: exponential (default) or fixed.")] = "exponential",
    token_budget: Annotated[Opt, typer.Option(metavar="TOKENS", help="Tokens per engine step (max_num_batched_tokens; default: vLLM V1's, 8192 or 2048).")] = None,
    max_seqs: Annotated[Opt, typer.Option(metavar="N", help="Most sequences a replica runs at once (max_num_seqs; default: vLLM V1's, 1024 or 256).")] = None,
    kv_reserve: Annotated[str, typer.Option(metavar="paged|full", help="KV a running request holds: paged (vLLM, default: the tokens so far) or full (TensorRT-LLM's default GUARANTEED_NO_EVICT: its prompt + output reserved at admission).")] = "paged",
    prefix_tokens: Annotated[Opt, typer.Option(metavar="TOKENS", help="Prefix caching: the first TOKENS of every prompt are shared (a system prompt).")] = None,
    prefix_hit: Annotated[Opt, typer.Option(metavar="SHARE", help="Prefix caching: the share of requests that find the shared prefix cached, e.g. 0.9 or 90% (default 1 with --prefix-tokens).")] = None,
    draft: Annotated[Opt, typer.Option(metavar="MODEL|eagle|ngram", help="Speculative decoding: the draft (a catalog model with the target's tokenizer, an EAGLE head, or n-gram lookup); every replica is priced with and without it. Needs --draft-accept.")] = None,
    draft_tokens: Annotated[Opt, typer.Option(metavar="N", help="Speculative decoding: tokens drafted per step (default 4).")] = None,
    draft_accept: Annotated[Opt, typer.Option(metavar="SHARE[,SHARE...]", help="Speculative decoding: the chance each drafted token is accepted, e.g. 0.7, or one rate per drafted position, e.g. 0.8,0.7,0.6,0.5 (measure it on your traffic: vLLM reports both).")] = None,
    disaggregate: Annotated[str, typer.Option(metavar="auto|off|only", help="Disaggregated prefill/decode (separate prefill and decode pools, the KV cache handed over the network): auto prices them beside aggregated replicas and takes the cheaper; off or only. Open loop (--rate) only.")] = "auto",
    pue: PueOpt = None,
    electricity: ElectricityOpt = None,
    colo: ColoOpt = None,
    buy_price: BuyPriceOpt = None,
    depreciation_years: DepreciationOpt = None,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """The cheapest fleet that serves a model within latency targets (exact, mixed fleets allowed),
    or one fixed configuration's performance with --gpu."""
    from recommender import api

    result = api.serve(model=model, params=params, hf_config=hf_config, layers=layers, hidden=hidden, heads=heads,
                       kv_heads=kv_heads, prompt=prompt, output=output, rate=rate, users=users,
                       think_time=think_time, ttft=ttft, tpot=tpot, e2e=e2e, horizon=horizon, objective=objective,
                       budget=budget, max_gpus=max_gpus, power_kw=power_kw, gpus=gpus, vendors=vendors,
                       providers=providers, precision=precision, kv_precision=kv_precision,
                       acquisition=acquisition, own=own, top=top, amortize=amortize, time_limit=time_limit,
                       gpu=gpu, tp=tp, pp=pp, replicas=replicas, batch=batch, headroom=headroom,
                       percentile=percentile, length_dist=length_dist, token_budget=token_budget, max_seqs=max_seqs,
                       prefix_tokens=prefix_tokens, prefix_hit=prefix_hit, draft=draft, draft_tokens=draft_tokens,
                       draft_accept=draft_accept, disaggregate=disaggregate, kv_reserve=kv_reserve)
    _print_serve(result, json_out, csv)


def _print_serve(result, json_out: bool, csv: str | None) -> None:
    from recommender import report

    _emit(result, report.serve_frame, report.render_serve, json_out, csv)


@app.command("catalog")
@user_errors
def catalog_cmd(
    gpu: Annotated[Opt, typer.Argument(metavar="[ID]", help="Show one accelerator in full, with every price.")] = None,
    vendor: Annotated[Opt, typer.Option(metavar="NAME", help="Only this vendor (nvidia, amd, google, intel, ...).")] = None,
    min_memory: Annotated[Opt, typer.Option(metavar="GIB", help="Only accelerators with at least this many GiB.")] = None,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """List the accelerators gpuplan knows, with figures, prices and sources."""
    from recommender import api, catalog, report
    from recommender.units import parse_count

    if gpu:
        acc = catalog.accelerator(gpu)
        prices = api.prices_frame(acc.id)
        if json_out:
            print(report.to_json({"accelerator": acc.model_dump(mode="json"),
                                  "prices": prices.to_dict("records")}))
            return
        fields = [(k, "" if v is None else str(v), "") for k, v in acc.model_dump(mode="json").items()]
        report.console().print(report._kv_table(acc.name, fields))
        if len(prices):
            report.render_frame(prices, title="\nPrices", csv_path=csv)
        return
    df = api.catalog_frame(vendor, None if min_memory is None else parse_count("min-memory", min_memory))
    if json_out:
        print(df.to_json(orient="records", indent=2))
    else:
        report.render_frame(df.drop(columns=["source"]), title="Accelerators (dense peaks; sources: --json or "
                                                                "`gpuplan catalog ID`)", csv_path=csv)


prices_app = typer.Typer(help="The cloud and purchase prices in use, with their age; import a fresh "
                                "SkyPilot catalog.", no_args_is_help=False)
app.add_typer(prices_app, name="prices")


@prices_app.callback(invoke_without_command=True)
@user_errors
def prices_cmd(
    ctx: typer.Context,
    gpu: Annotated[Opt, typer.Option(metavar="ID", help="Only this accelerator.")] = None,
    provider: Annotated[Opt, typer.Option(metavar="NAME", help="Only this provider (or 'purchase').")] = None,
    tier: Annotated[Opt, typer.Option(metavar="TIER", help="Only this tier: cloud, spot, reserved, serverless, buy.")] = None,
    currency: CurrencyOpt = "USD",
    market: MarketOpt = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """List the prices in use (newest per provider and tier), with their date and age."""
    if ctx.invoked_subcommand is not None:
        return
    import pandas as pd

    from recommender import api, money, prices, report

    rows = api.prices_in_use(gpu, provider, tier)
    if json_out:
        print(report.to_json(rows))
        return
    df = pd.DataFrame(rows)
    sym = money.symbol()
    if "price_usd_per_gpu_hour" in df:   # purchase prices alone have no hourly column
        df[f"{sym}/GPU-h"] = [None if pd.isna(x) else round(money.in_display(x), 4)
                              for x in df["price_usd_per_gpu_hour"]]
    if "price_usd_per_gpu" in df:
        df[f"{sym}/GPU"] = [None if pd.isna(x) else round(money.in_display(x)) for x in df["price_usd_per_gpu"]]
    df["stale"] = ["yes" if a > prices.STALE_DAYS else "" for a in df["age_days"]]
    keep = [c for c in ["accelerator", "provider", "tier", "region", "term_months", f"{sym}/GPU-h", f"{sym}/GPU",
                        "published", "as_of", "age_days", "stale", "origin"] if c in df]
    report.render_frame(df[keep], title=f"Prices in use ({len(df)} rows; older than {prices.STALE_DAYS} days "
                                        "marked stale; sources: --json)", csv_path=csv)
    note = money.rate_note()
    if note:
        report.console().print(f"note: {note}")


@prices_app.command("import")
@user_errors
def prices_import(
    path: Annotated[str, typer.Argument(metavar="PATH", help="A SkyPilot vms.csv, or a folder of <cloud>/vms.csv.")],
    as_of: Annotated[Opt, typer.Option(metavar="YYYY-MM-DD", help="The prices' date, YYYY-MM-DD (default: the file's date).")] = None,
    region: Annotated[Optional[list[str]], typer.Option(help="Only these regions (glob, repeatable); "
                                                             "default the cheapest region.")] = None,
    dry_run: Annotated[bool, typer.Option(help="Show what would be imported; write nothing.")] = False,
    json_out: JSON = False,
):
    """Import SkyPilot-layout price CSVs into your price file ($GPUPLAN_HOME/prices.csv), which every
    command then uses over the shipped snapshot."""
    import pandas as pd

    from recommender import api, report

    rows, target, skipped = api.import_prices(path, as_of, region, dry_run)
    if json_out:
        print(report.to_json({"written": target, "rows": rows, "skipped": skipped}))
        return
    report.render_frame(pd.DataFrame(rows).drop(columns=["source", "term_months"]),
                        title=f"{len(rows)} prices read from {path}")
    if skipped:
        from recommender.spec import CLOUD_PRICE_RANGE_USD as lo_hi

        report.console().print(f"note: {len(skipped)} broken price(s) skipped (not a positive number, or outside "
                               f"${lo_hi[0]:g}-{lo_hi[1]:,.0f} per GPU-hour): " + "; ".join(skipped))
    report.console().print(f"written to {target}" if target else "dry run: nothing written")


@app.command()
@user_errors
def models(
    search: Annotated[Opt, typer.Argument(metavar="[TEXT]", help="Only presets whose id, name or alias contains this.")] = None,
    family: Annotated[Opt, typer.Option(metavar="NAME", help="Only this family (llama, qwen2, mistral, deepseek-v3, ...).")] = None,
    json_out: JSON = False,
    csv: CSV = None,
):
    """List the model presets with their architecture, parameter counts and sources."""
    from recommender import api, report

    df = api.models_frame(family, search)
    if json_out:
        print(df.to_json(orient="records", indent=2))
    else:
        report.render_frame(df.drop(columns=["source", "as_of"]), title="Model presets", csv_path=csv)


if __name__ == "__main__":
    app()
