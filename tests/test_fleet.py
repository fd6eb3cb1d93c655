"""`gpuplan fleet`: portfolio files, the plans the example portfolios get, the JSON contract, exit
codes, errors, and the joint plan against the jobs planned one by one."""

from __future__ import annotations

import copy
import json
from dataclasses import replace
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

import fleet_brute
from cli import app
from recommender import fleet, portfolio
from recommender.errors import GpuplanError
from recommender.fleet_model import check
from recommender.fleet_solver import FleetModel
from test_fleet_exact import random_instance

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = sorted((ROOT / "constraints" / "portfolios").glob("*.yaml"))
runner = CliRunner()

SMALL = {"start": "2027-01-01", "horizon": 6, "gpus": ["h100-sxm", "a100-80g"],
         "jobs": [{"name": "tiny", "kind": "pretrain", "model": {"preset": "gpt-2-124m"}, "tokens": "20B",
                   "deadline": "2027-03-31"},
                  {"name": "tune", "kind": "finetune", "model": {"preset": "gpt-2-124m"}, "method": "full",
                   "tokens": "1B", "earliest": "2027-04-01"}]}


def write(tmp_path, doc, name="p.yaml") -> Path:
    p = tmp_path / name
    p.write_text(yaml.safe_dump(doc, sort_keys=False))
    return p


def run(args):
    return runner.invoke(app, [str(a) for a in args])


@pytest.mark.parametrize("path", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_example_portfolios_solve_and_recheck(path):
    pf = portfolio.load(path)
    inst = portfolio.compile(pf)
    with portfolio.context(pf):
        r = fleet.plan_fleet(inst, notes=fleet.standard_notes(inst))
    assert r.status == "optimal", r.explanation
    assert {j.name for j in r.jobs} == {j.name for j in pf.jobs}  # every job and service is scheduled
    assert len(r.periods) == pf.horizon
    assert abs(sum(p.spend_usd for p in r.periods) - r.spend_usd) < 1e-6 * r.spend_usd
    assert r.budget_usd is None or r.spend_usd + r.committed_after_usd <= r.budget_usd * (1 + 1e-9)
    for j in r.jobs:  # deadlines hold in the dates shown
        if j.deadline:
            assert j.end <= j.deadline, j
    if pf.power_kw:
        assert max(p.power_kw for p in r.periods) <= pf.power_kw


def test_json_contract(tmp_path):
    p = write(tmp_path, SMALL)
    r = run(["fleet", p, "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.output)
    assert d["status"] == "optimal" and d["objective"] == "cost"
    assert {"total_cost_usd", "budget_usd", "jobs", "periods", "relaxations"} <= set(d)
    assert {"name", "kind", "accelerator", "count", "acquisition", "start", "end", "cost_usd"} <= set(d["jobs"][0])
    assert {"period", "start", "spend_usd", "power_kw", "owned", "bought", "rented"} <= set(d["periods"][0])
    assert d["jobs"][0]["end"] <= "2027-03-31" and d["jobs"][1]["start"] >= "2027-04-01"


def test_csv_and_gantt_chart(tmp_path):
    p = write(tmp_path, SMALL)
    out = tmp_path / "jobs.csv"
    png = tmp_path / "g.png"
    r = run(["fleet", p, "--csv", out, "--png", png])
    assert r.exit_code == 0, r.output
    assert out.read_text().splitlines()[0].startswith("job,kind,accelerator,gpus,acquisition,start,end")
    assert (tmp_path / "jobs-periods.csv").read_text().splitlines()[0].startswith("period,start,spend_usd")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_infeasible_exit_3_with_the_least_relaxation(tmp_path):
    doc = copy.deepcopy(SMALL)
    doc["budget"] = {"total": "$1"}
    r = run(["fleet", write(tmp_path, doc), "--json"])
    assert r.exit_code == 3, r.output
    d = json.loads(r.output)
    assert d["status"] == "infeasible" and d["relaxations"][0]["constraint"] == "budget"
    needed = float(d["relaxations"][0]["needed"].lstrip("$").rstrip("k")) * (1e3 if "k" in d["relaxations"][0]["needed"] else 1)
    doc["budget"] = {"total": needed * 1.01}  # the relaxation it names is enough
    assert run(["fleet", write(tmp_path, doc, "q.yaml")]).exit_code == 0


def test_deadline_relaxation_names_the_job_and_a_date(tmp_path):
    doc = copy.deepcopy(SMALL)
    doc["jobs"][0]["model"] = {"preset": "llama-3-8b"}  # about four months on 8 GPUs
    doc["jobs"][0]["tokens"] = "500B"
    doc["jobs"][0]["deadline"] = "2027-02-15"
    doc["max_gpus"] = 8
    r = run(["fleet", write(tmp_path, doc)])
    assert r.exit_code == 3, r.output
    assert "deadline:tiny" in r.output and "needs 2027-" in r.output


def test_time_limit_without_a_schedule_exits_4_or_finds_one(tmp_path):
    r = run(["fleet", write(tmp_path, SMALL), "--time-limit", "1ms", "--json"])
    d = json.loads(r.output)
    assert (r.exit_code, d["status"]) in ((4, "unknown"), (0, "optimal"), (0, "feasible"))
    if d["status"] == "unknown":
        assert not d["jobs"] and "time limit" in d["explanation"][0]


@pytest.mark.parametrize("edit,needle", [
    ({"horizon": 0}, "p.yaml:2: horizon=0: "),
    ({"step": "day"}, "step=day: must be 'month' or 'week'"),
    ({"jobs": [{"name": "a", "kind": "pretrain", "model": {"preset": "gpt-2-124m"}}]}, "jobs[0].tokens=None"),
    ({"jobs": [{"name": "a", "kind": "pretrain", "model": {"preset": "gpt-2-124m"}, "tokens": "1B", "rate": 5}]},
     "jobs[0].rate=5: applies to serve jobs"),
    ({"jobz": []}, "jobz=[]: unknown key; did you mean 'jobs'?"),
    ({"gpus": ["h1000"]}, "gpus=h1000: unknown accelerator"),
    ({"budget": {"per": "quarter"}}, "budget.per=quarter: a budget per period needs both"),
    ({"jobs": [{**SMALL["jobs"][0], "earliest": "2028-01-01"}]}, "jobs[0].earliest=2028-01-01: is after the last"),
    ({"jobs": [{**SMALL["jobs"][0], "deadline": "2026-06-01"}]}, "jobs[0].deadline=2026-06-01: leaves no whole month"),
    ({"jobs": SMALL["jobs"] + [SMALL["jobs"][0]]}, "jobs[2].name=tiny: two jobs have this name"),
])
def test_bad_portfolio_one_line_exit_2(tmp_path, edit, needle):
    r = run(["fleet", write(tmp_path, {**SMALL, **edit})])
    assert r.exit_code == 2, r.output
    assert needle in r.output and "Traceback" not in r.output


def test_files_that_are_not_portfolios(tmp_path):
    assert "is a folder" in run(["fleet", str(tmp_path)]).output
    assert "not found" in run(["fleet", str(tmp_path / "nope.yaml")]).output
    (tmp_path / "bad.yaml").write_text("start: [\n")
    r = run(["fleet", str(tmp_path / "bad.yaml")])
    assert r.exit_code == 2 and "not valid YAML" in r.output


def test_the_joint_plan_is_never_dearer_than_the_jobs_alone():
    """Without owned GPUs (which each solo plan would count as its own), combining the solo optimal
    schedules is a joint schedule (purchases and rentals add up), so the joint optimum costs at most
    their sum; it is often less (a purchase shared, a server bought once)."""
    checked = cheaper = 0
    for seed in range(400):
        inst = random_instance(seed)
        inst = replace(inst, budget_usd=None, budget_per=None, power_kw=None, space_gpus=None, objective="cost",
                       types=tuple(replace(t, owned=0) for t in inst.types))
        if len(inst.jobs) + len(inst.services) < 2 or fleet_brute.combos(inst) > 20000:
            continue
        joint = FleetModel(inst).solve()
        solos = [FleetModel(replace(inst, jobs=(j,), services=())).solve() for j in inst.jobs]
        solos += [FleetModel(replace(inst, jobs=(), services=(v,))).solve() for v in inst.services]
        if joint.status != "optimal" or any(s.status != "optimal" for s in solos):
            continue
        assert joint.cost_cents <= sum(s.cost_cents for s in solos)
        cheaper += joint.cost_cents < sum(s.cost_cents for s in solos)
        checked += 1
        if checked >= 20:
            break
    assert checked >= 20 and cheaper >= 3, (checked, cheaper)


def test_lateness_objective_moves_deadlines_to_due_dates(tmp_path):
    doc = copy.deepcopy(SMALL)
    doc["objective"] = "lateness"
    doc["jobs"][0]["model"] = {"preset": "llama-3-8b"}
    doc["jobs"][0]["tokens"] = "500B"
    doc["jobs"][0]["deadline"] = "2027-01-31"
    doc["max_gpus"] = 8
    pf = portfolio.load(write(tmp_path, doc))
    inst = portfolio.compile(pf)
    r = fleet.plan_fleet(inst)
    assert r.status == "optimal" and r.objective_value > 0  # late, not infeasible
    tiny = next(j for j in r.jobs if j.name == "tiny")
    assert tiny.end > "2027-01-31"


def test_compile_rejects_a_job_no_accelerator_can_run(tmp_path):
    doc = copy.deepcopy(SMALL)
    doc["jobs"][0] = {"name": "huge", "kind": "pretrain", "model": {"preset": "llama-3.1-405b"}, "tokens": "15T"}
    doc["max_gpus"] = 8
    with pytest.raises(GpuplanError, match="no accelerator among those allowed can run it"):
        portfolio.compile(portfolio.load(write(tmp_path, doc)))


# -- a bounded fuzz over portfolio contents ----------------------------------------------------------
JUNK = st.one_of(st.sampled_from([None, True, -1, 0, 2.5, float("nan"), 10**30, "", "abc", "1,5", "-5T", "60d",
                                  "$2M", "¥1M", "5rps", "h100-sxm", "nope", "lora", "serve", "month", "week",
                                  "2027-13-01", "2027-02-01", [], ["h100-sxm"], {}, {"a": 1}, {"h100-sxm": 8},
                                  {"start": "5rps", "growth": "10%"}, [1, 2]]),
                 st.text(max_size=4), st.integers(-5, 10**5))
TOP_FIELDS = sorted(portfolio.Portfolio.model_fields)
JOB_FIELDS = sorted(portfolio.PortfolioJob.model_fields)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(st.booleans(), st.data()), min_size=1, max_size=2))
def test_fuzz_portfolio_files_no_traceback(tmp_path_factory, edits):
    doc = copy.deepcopy(SMALL)
    for top, data in edits:
        if top:
            doc[data.draw(st.sampled_from(TOP_FIELDS))] = data.draw(JUNK)
        else:
            doc["jobs"][0][data.draw(st.sampled_from(JOB_FIELDS))] = data.draw(JUNK)
    path = tmp_path_factory.mktemp("fz") / "p.yaml"
    path.write_text(yaml.safe_dump(doc, sort_keys=False, allow_unicode=True))
    r = run(["fleet", path, "--time-limit", "5s"])
    assert r.exit_code in (0, 2, 3, 4), (doc, r.exit_code, r.output)
    assert "Traceback" not in r.output


def test_random_instances_are_deterministic():
    inst = random_instance(3)
    a, b = FleetModel(inst).solve(), FleetModel(inst).solve()
    assert a.schedule == b.schedule and check(inst, a.schedule).total == check(inst, b.schedule).total


def test_schema_portfolio():
    r = run(["schema", "--portfolio"])
    schema = json.loads(r.output)
    assert r.exit_code == 0 and {"start", "step", "horizon", "jobs", "budget", "own"} <= set(schema["properties"])
    assert set(schema["required"]) == {"start", "jobs"}


def test_optional_jobs_are_skipped_only_when_worth_less_than_they_cost(tmp_path):
    doc = copy.deepcopy(SMALL)
    doc["jobs"][1]["value"] = "$1"          # worth less than any month of a GPU: not run
    r = json.loads(run(["fleet", write(tmp_path, doc), "--json"]).output)
    assert r["status"] == "optimal" and [k["name"] for k in r["skipped"]] == ["tune"]
    assert r["forgone_value_usd"] == 1.0 and {j["name"] for j in r["jobs"]} == {"tiny"}
    doc["jobs"][1]["value"] = "$1M"         # worth more than it costs: run
    r = json.loads(run(["fleet", write(tmp_path, doc, "q.yaml"), "--json"]).output)
    assert not r["skipped"] and {j["name"] for j in r["jobs"]} == {"tiny", "tune"}
    doc["objective"] = "makespan"
    out = run(["fleet", write(tmp_path, doc, "m.yaml")])
    assert out.exit_code == 2 and "jobs[1].value=$1M: optional jobs (a value) need objective cost" in out.output
