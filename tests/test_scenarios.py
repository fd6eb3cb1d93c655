"""Scenario files: every file in constraints/ solves, and its plan equals the one the equivalent
CLI flags give; file errors name the path and the line and suggest the fix."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from recommender import scenario
from recommender.errors import GpuplanError

ROOT = Path(__file__).resolve().parent.parent
FILES = sorted((ROOT / "constraints").glob("*.yaml"))


def flags(doc: dict) -> list[str]:
    """The CLI command line a person would type for the same question, written out independently
    of recommender.scenario: section keys become --options, lists are comma-joined."""
    w = dict(doc["workload"])
    kind = w.pop("kind")
    cmd = {"pretrain": "train", "finetune": "finetune", "serve": "serve"}[kind]
    args = [cmd]
    model = doc["model"]
    for key, value in model.items():
        args += [f"--{'model' if key == 'preset' else key.replace('_', '-')}", str(value)]
    for key, value in {**w, **doc.get("constraints", {})}.items():
        if isinstance(value, list):
            value = ",".join(value)
        elif isinstance(value, dict):
            for gpu, n in value.items():
                args += ["--own", f"{gpu}:{n}"]
            continue
        args += [f"--{key.replace('_', '-')}", str(value)]
    args += ["--objective", doc.get("objective", "cost"), "--top", str(doc.get("top", 5)), "--json"]
    if "market" in doc:
        args += ["--market", doc["market"]]
    return args


def cli(args: list[str]) -> dict:
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, cwd=ROOT)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    out.pop("solve_seconds")
    return out


@pytest.mark.parametrize("path", FILES, ids=[f.stem for f in FILES])
def test_constraint_file_solves_like_its_cli_flags(path):
    doc = yaml.safe_load(path.read_text())
    from_file = cli(["solve", str(path), "--json"])
    assert from_file["status"] == "optimal" and from_file["plans"], path.name
    assert from_file == cli(flags(doc))


def test_there_is_a_file_per_use_case():
    assert {f.stem for f in FILES} == {"cheapest-100b-60d", "fastest-under-budget", "buy-vs-cloud-3y",
                                       "serve-70b-chat", "lora-finetune", "deepseek-r1-671b",
                                       "china-accelerators", "power-capped-2mw"}


def test_set_edits_before_solving(tmp_path):
    s = scenario.load(ROOT / "constraints/cheapest-100b-60d.yaml", ["constraints.deadline=30d", "top=2"])
    assert s.constraints.deadline == "30d" and s.top == 2


def write(tmp_path, text: str) -> Path:
    p = tmp_path / "s.yaml"
    p.write_text(text)
    return p


BASE = "model:\n  preset: llama-2-7b\nworkload:\n  kind: pretrain\n  tokens: 1T\n"


@pytest.mark.parametrize("extra,needle", [
    # unknown key: path, line, and the closest allowed key
    ("constraints:\n  deadlin: 30d\n", "s.yaml:7: constraints.deadlin=30d: unknown key; did you mean 'deadline'?"),
    # wrong type
    ("constraints:\n  max_gpus: many\n", "s.yaml:7: constraints.max_gpus=many: input should be a valid integer"),
    # bad unit
    ("constraints:\n  deadline: 60 dayz\n", "s.yaml:7: constraints.deadline=60 dayz: "),
    # unknown accelerator, inside a list
    ("constraints:\n  gpus: [h100-sxm, H1000]\n", "s.yaml:7: constraints.gpus[1]=H1000: unknown accelerator; did you mean"),
    # a field of another workload kind
    ("  ttft: 1s\n", "s.yaml:6: workload.ttft=1s: does not apply to kind pretrain"),
])
def test_file_errors_name_path_line_and_fix(tmp_path, extra, needle):
    with pytest.raises(GpuplanError) as info:
        scenario.load(write(tmp_path, BASE + extra))
    message = str(info.value)
    assert needle in message, message


def test_file_error_from_cli_is_one_line_exit_2(tmp_path):
    p = write(tmp_path, BASE + "constraints:\n  deadline: 60 dayz\n")
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "solve", str(p)], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert "s.yaml:7: constraints.deadline=60 dayz" in r.stderr


def test_schema_is_json_schema_of_the_format():
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "schema"], capture_output=True, text=True, check=True)
    schema = json.loads(r.stdout)
    assert {"model", "workload", "constraints", "catalog", "objective", "top"} <= set(schema["properties"])
    assert schema["required"] == ["model", "workload"]


def test_catalog_overrides_negotiated_price_and_custom_accelerator(tmp_path):
    p = write(tmp_path, BASE.replace("1T", "100B") + """catalog:
  prices:
    - {gpu: h100-sxm, provider: lambda, usd_per_gpu_hour: 0.5}
  accelerators:
    - {id: my-chip, memory_gib: 96, bf16_tflops: 500, memory_bw_gb_s: 3000, intra_node_bw_gb_s: 300,
       inter_node_bw_gb_s: 50, tdp_w: 600, usd_per_gpu_hour: 0.1}
constraints:
  gpus: [h100-sxm, my-chip]
top: 2
""")
    s = scenario.load(p)
    _, result = s.run()
    assert result.plans[0].accelerator == "my-chip"  # the cheapest by far
    with s.overrides():
        from recommender import catalog
        assert any(x.price_usd_per_gpu_hour == 0.5 for x in catalog.prices_for("h100-sxm") if x.provider == "lambda")
    from recommender import catalog
    assert "my-chip" not in catalog.accelerators()  # the override ends with the solve


def test_compute_budget_in_a_file_is_the_cli_flag(tmp_path):
    doc = {"model": {"params": "7B"}, "workload": {"kind": "pretrain", "tokens": "200B"},
           "constraints": {"gpus": ["h100-sxm"], "compute_budget": "5k PF-days"}}
    path = tmp_path / "s.yaml"
    path.write_text(yaml.safe_dump(doc))
    fn, kw = scenario.load(path).typed()
    assert fn == "train" and kw["compute_budget"] == "5k PF-days"
    with pytest.raises(GpuplanError, match=r"s.yaml:\d+: constraints.compute_budget=lots: cannot parse as compute"):
        scenario.load(path, ["constraints.compute_budget=lots"])


def test_compute_budget_does_not_apply_to_serving():
    serve = ROOT / "constraints" / "serve-70b-chat.yaml"
    with pytest.raises(GpuplanError, match="constraints.compute_budget=100: applies to training and fine-tuning only"):
        scenario.load(serve, ["constraints.compute_budget=100"])


# regressions from the scenario fuzz (tests/test_errors.py)
@pytest.mark.parametrize("sets,match", [
    (["top=[1"], r"set=top=\[1: the value is not valid YAML"),
    (["price.h100-sxm.spot={"], r"set=price.h100-sxm.spot=\{: the value is not valid YAML"),
    (["catalog.prices=30d", "price.h100-sxm.spot=2"], "the file's catalog is not a section with a list of prices"),
    (["catalog=3", "price.h100-sxm=2"], "the file's catalog is not a section with a list of prices"),
])
def test_set_with_unreadable_yaml_or_into_a_non_section_is_an_input_error(sets, match):
    with pytest.raises(GpuplanError, match=match):
        scenario.load(ROOT / "constraints" / "lora-finetune.yaml", sets)


def test_set_a_price_after_emptying_the_catalog():
    s = scenario.load(ROOT / "constraints" / "lora-finetune.yaml", ["catalog=", "price.h100-sxm.spot=2"])
    assert [(p.gpu, p.tier, p.usd_per_gpu_hour) for p in s.catalog.prices] == [("h100-sxm", "spot", 2.0)]
