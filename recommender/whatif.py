"""`gpuplan whatif`: a scenario file solved over a grid of edits, one row per grid point with its
best plan and what changed against the file as written.

    --vary deadline=30d,60d,90d --vary budget=2M,4M      6 scenarios (+ the base)
    --vary gpus=h100-sxm+b200,mi300x                      '+' joins the items of one list value
    --vary price.h100-sxm.spot=1.80,2.20                  a price for every provider of H100 spot
    --vary compute=2000PFd,5000PFd                        a compute budget (PF-days of model FLOPs)

A short name is looked up in constraints, workload, model and the top level (deadline ->
constraints.deadline, tokens -> workload.tokens); a dotted path is taken as written. Every grid
point goes through `scenario.load` (the same validation and errors as the file) and the same solve
as `gpuplan solve`, with only the best plan asked for.
"""

from __future__ import annotations

import itertools
import re
import time

import yaml
from pydantic import BaseModel

from recommender.errors import GpuplanError, Infeasible, did_you_mean
from recommender.planner import Plan, plan_summary
from recommender.scenario import Constraints, ModelSection, Scenario, Workload, load
from recommender.serve_planner import ServePlan, fleet_summary

SECTIONS = (("constraints", Constraints), ("workload", Workload), ("model", ModelSection))
ALIASES = {"power": "power_kw", "gpu": "gpus", "vendor": "vendors", "provider": "providers",
           "acquisitions": "acquisition", "precisions": "precision", "batch": "global_batch",
           "compute": "compute_budget", "pf_days": "compute_budget"}


class WhatIfRow(BaseModel):
    scenario: str                      # "base" or 1, 2, ...
    values: dict[str, str]             # the varied paths and their values here
    status: str
    summary: str                       # the best plan, or the first fix when infeasible
    cost_usd: float | None = None      # training: the run; serving: over the horizon
    days: float | None = None
    cost_per_hour_usd: float | None = None
    e2e_ms: float | None = None
    vs_base: str
    plan: Plan | ServePlan | None = None


class WhatIf(BaseModel):
    file: str
    kind: str
    varied: list[str]
    rows: list[WhatIfRow]
    seconds: float


def resolve(name: str) -> str:
    """A --vary name as a document path."""
    name = name.strip()
    if "." in name:
        return name
    key = ALIASES.get(name, name)
    hits = [f"{sec}.{key}" for sec, model in SECTIONS if key in model.model_fields]
    if key in ("objective", "top"):
        hits.append(key)
    if len(hits) == 1:
        return hits[0]
    if len(hits) > 1:
        raise GpuplanError("vary", name, f"ambiguous: write the path, {' or '.join(hits)}")
    known = sorted({f for _, m in SECTIONS for f in m.model_fields} | {"objective", "top"} | set(ALIASES))
    hint = did_you_mean(name, known)
    raise GpuplanError("vary", name, f"unknown setting; {hint + ' ' if hint else ''}"
                       "use a short name (deadline, budget, tokens, gpus, ...), a path such as "
                       "constraints.deadline, or price.GPU.TIER")


def _is_list(path: str) -> bool:
    parts = path.split(".")
    if len(parts) != 2:
        return False
    model = dict(SECTIONS).get(parts[0])
    f = None if model is None else model.model_fields.get(parts[1])
    return f is not None and "list" in str(f.annotation)


def _value_at(sc: Scenario, path: str) -> str:
    """The base scenario's value at a varied path, as text ('-' where unset)."""
    if path.startswith("price."):
        return "catalog"
    node = sc
    for part in path.split("."):
        node = getattr(node, part, None)
    if node is None:
        return "-"
    return "+".join(map(str, node)) if isinstance(node, list) else str(node)


def parse_vary(spec: str) -> tuple[str, list[tuple[str, str]]]:
    """'deadline=30d,60d' -> ('constraints.deadline', [('30d', '30d'), ('60d', '60d')]): each value as
    typed and as --set text ('h100+b200' -> '[h100, b200]')."""
    name, sep, values = spec.partition("=")
    if not sep or not name.strip() or not values.strip():
        raise GpuplanError("vary", spec, "write it as name=v1,v2,..., e.g. deadline=30d,60d,90d")
    path = resolve(name)
    out = []
    for v in values.split(","):
        v = v.strip()
        if not v:
            raise GpuplanError("vary", spec, "an empty value in the list")
        if re.match(r"0[0-9]", v):  # '1,000' split into '1' and '000'
            raise GpuplanError("vary", spec, "commas separate the values here, so no thousands separators: "
                               "write 1M or 1000000, not 1,000,000")
        text = v
        if "+" in v or _is_list(path):
            text = yaml.safe_dump([x.strip() for x in v.split("+")], default_flow_style=True).strip()
        out.append((v, text))
    return path, out


def _figures(kind: str, result):
    if not result.plans:
        return None
    p = result.plans[0]
    if kind == "serve":
        return dict(summary=fleet_summary(p), cost_usd=p.horizon_cost_usd, cost_per_hour_usd=p.cost_per_hour_usd,
                    e2e_ms=p.e2e_ms, plan=p)
    return dict(summary=plan_summary(p), cost_usd=p.cost_usd, days=p.total_days, plan=p)


def _change(x: float) -> str:
    return f"{x:+.1%}" if abs(x) < 0.01 else f"{x:+.0%}"


def _versus(kind: str, fig: dict | None, base: dict | None) -> str:
    """What changed in the best plan against the base scenario's."""
    if fig is None or base is None:
        return "no plan" if fig is None else "base has no plan"
    a, b = fig["plan"], base["plan"]
    parts = []
    if (a.accelerator, a.acquisition) != (b.accelerator, b.acquisition):
        parts.append(f"{b.accelerator} {b.acquisition} -> {a.accelerator} {a.acquisition}")
    elif a.count != b.count:
        parts.append(f"{b.count} -> {a.count} GPUs")
    elif fig["summary"] != base["summary"]:
        parts.append("layout changed")
    if fig["cost_usd"] is not None and base["cost_usd"] and abs(fig["cost_usd"] / base["cost_usd"] - 1) > 1e-9:
        parts.append(f"{_change(fig['cost_usd'] / base['cost_usd'] - 1)} cost")
    if kind == "serve" and abs(fig["e2e_ms"] / base["e2e_ms"] - 1) > 1e-9:
        parts.append(f"{_change(fig['e2e_ms'] / base['e2e_ms'] - 1)} e2e")
    if kind == "train" and abs(fig["days"] - base["days"]) > 1e-9:
        parts.append(f"{fig['days'] - base['days']:+.1f} days")
    return ", ".join(parts) or "same plan"


def run(file: str, vary: list[str], sets: list[str] = (), progress=None) -> WhatIf:
    """Solve the base scenario and every grid point; `progress(done, total)` after each."""
    t0 = time.perf_counter()
    if not vary:
        raise GpuplanError("vary", None, "give at least one --vary name=v1,v2")
    axes = [parse_vary(v) for v in vary]
    paths = [p for p, _ in axes]
    if len(set(paths)) < len(paths):
        raise GpuplanError("vary", ",".join(paths), "each setting may be varied once")
    grid = list(itertools.product(*[vals for _, vals in axes]))
    # load (and so check, as the solve would) every grid point before solving any
    base_sc = load(file, list(sets))
    scenarios: list[tuple[str, dict[str, str], Scenario]] = [("base", {p: _value_at(base_sc, p) for p in paths},
                                                              base_sc)]
    for k, combo in enumerate(grid, 1):
        edits = [f"{p}={text}" for p, (_, text) in zip(paths, combo)]
        values = {p: shown for p, (shown, _) in zip(paths, combo)}
        try:
            scenarios.append((str(k), values, load(file, [*sets, *edits])))
        except GpuplanError as exc:   # say which grid point (each is checked before any is solved)
            where = ", ".join(f"{p}={v}" for p, v in values.items())
            raise type(exc)(exc.field, exc.value, f"{exc.message} (grid point {where})") from None
    kinds = {s.workload.kind == "serve" for _, _, s in scenarios}
    if len(kinds) > 1:
        raise GpuplanError("vary", "workload.kind", "a grid mixes training and serving; vary one kind at a time")

    rows: list[WhatIfRow] = []
    base = None
    kind = "serve" if scenarios[0][2].workload.kind == "serve" else "train"
    for n, (name, values, sc) in enumerate(scenarios):
        try:
            _, result = sc.model_copy(update={"top": 1}).run()
        except Infeasible as exc:   # no candidate holds the model here: a row, not the grid's end
            rows.append(WhatIfRow(scenario=name, values=values, status="infeasible", summary=f"no plan: {exc.message}",
                                  vs_base="" if name == "base" else _versus(kind, None, base)))
            if progress:
                progress(n + 1, len(scenarios))
            continue
        fig = _figures(kind, result)
        if name == "base":
            base = fig
        if fig is None:
            fix = result.relaxations[0] if result.relaxations else None
            summary = "no plan" + (f"; fix: {fix.needed}" if fix else "")
            rows.append(WhatIfRow(scenario=name, values=values, status=result.status, summary=summary,
                                  vs_base="" if name == "base" else _versus(kind, None, base)))
        else:
            rows.append(WhatIfRow(scenario=name, values=values, status=result.status,
                                  vs_base="" if name == "base" else _versus(kind, fig, base), **fig))
        if progress:
            progress(n + 1, len(scenarios))
    return WhatIf(file=str(file), kind=kind, varied=paths, rows=rows, seconds=time.perf_counter() - t0)
