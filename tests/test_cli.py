"""The command line: real processes, exit codes, one-line errors, JSON that parses."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def gpuplan(*args):
    return subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True,
                          cwd=ROOT, timeout=120)


def test_evaluate_json():
    r = gpuplan("evaluate", "--model", "llama-2-70b", "--tokens", "2T", "--gpu", "A100 80GB", "--tp", "8",
                "--pp", "4", "--count", "2048", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert data["accelerator"] == "a100-80g" and data["dp"] == 64 and data["fits"] is True


def test_evaluate_table():
    r = gpuplan("evaluate", "--params", "7B", "--tokens", "100B", "--gpu", "h100", "--count", "8")
    assert r.returncode == 0, r.stderr
    assert "Memory per GPU" in r.stdout and "MFU" in r.stdout


@pytest.mark.parametrize("args,needle", [
    (["--gpu", "H1000"], "gpu=H1000: unknown accelerator; did you mean"),
    (["--tokens", "-5T"], "tokens=-5T: must be greater than zero"),
    (["--tokens", "5 trillions"], "tokens=5 trillions: cannot parse"),
    (["--tp", "3"], "tp=3: must divide the 64 attention heads"),
    (["--pp", "96", "--count", "96"], "pp=96: exceeds the 80 layers"),
    (["--ep", "8", "--count", "64"], "ep=8: expert parallelism needs a mixture-of-experts model"),
    (["--method", "dora"], "method=dora: must be one of full, lora, qlora"),
    (["--lora-rank", "8"], "lora-rank=8: applies to --method lora or qlora"),
    (["--tp", "8", "--dp", "4", "--count", "64"], "count=64: must equal tp*pp*cp*dp"),
    (["--model", "llama-2-70"], "model=llama-2-70: unknown model; did you mean 'llama-2-70b'"),
])
def test_bad_input_one_line_exit_2(args, needle):
    base = ["evaluate", "--model", "llama-2-70b", "--tokens", "1T", "--gpu", "a100"]
    r = gpuplan(*base, *args)
    assert r.returncode == 2
    assert needle in r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr + r.stdout


def test_catalog_and_models_list():
    r = gpuplan("catalog", "--json")
    assert r.returncode == 0
    ids = {row["id"] for row in json.loads(r.stdout)}
    assert {"h100-sxm", "mi300x", "ascend-910b"} <= ids
    r = gpuplan("models", "llama", "--json")
    assert r.returncode == 0
    assert all("llama" in row["id"] for row in json.loads(r.stdout))


def test_catalog_one_accelerator_with_prices():
    r = gpuplan("catalog", "h100", "--json")
    assert r.returncode == 0
    data = json.loads(r.stdout)
    assert data["accelerator"]["id"] == "h100-sxm" and len(data["prices"]) > 0


SERVE = ["serve", "--model", "llama-3-70b", "--users", "1000", "--think-time", "3s", "--prompt", "512",
         "--output", "256", "--ttft", "1s", "--tpot", "50ms"]
PLAN_KEYS = {"rank", "accelerator", "count", "replicas", "tp", "pp", "precision", "batch", "ttft_ms", "tpot_ms",
             "tokens_per_s", "cost_per_hour_usd", "cost_per_million_tokens_usd", "acquisition",
             "memory_gib_per_gpu", "fits", "parts"}


def test_serve_json_contract():
    r = gpuplan(*SERVE, "--top", "3", "--json")
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    assert {"status", "objective", "solve_seconds", "plans", "relaxations"} <= set(data)
    assert data["status"] == "optimal" and 1 <= len(data["plans"]) <= 3
    for p in data["plans"]:
        assert PLAN_KEYS <= set(p)
        assert p["fits"] and p["ttft_ms"] <= 1000 and p["tpot_ms"] <= 50
        # closed loop: the users are the demand; each fleet serves them at its own rate
        assert sum(pt["capacity_per_replica"] * pt["replicas"] for pt in p["parts"]) >= data["users"]
        assert p["tokens_per_s"] >= p["served_tokens_per_s"] * (1 - 1e-9)
        assert p["count"] == sum(pt["count"] for pt in p["parts"])
    costs = [p["cost_per_hour_usd"] for p in data["plans"]]
    assert costs == sorted(costs)


def test_serve_table_and_rate():
    r = gpuplan("serve", "--model", "llama-2-7b", "--rate", "20rps", "--tpot", "40ms", "--top", "2")
    assert r.returncode == 0, r.stderr
    assert "status: optimal" in r.stdout and "$/Mtok" in r.stdout


def test_serve_fixed_configuration_offline():
    r = gpuplan("serve", "--model", "llama-2-70b", "--gpu", "h200", "--tp", "1", "--precision", "fp8",
                "--prompt", "684", "--output", "294", "--json")
    assert r.returncode == 0, r.stderr
    p = json.loads(r.stdout)["plans"][0]
    assert p["replicas"] == 1 and p["parts"][0]["batch"] == p["parts"][0]["max_batch"]


def test_serve_infeasible_is_explained():
    r = gpuplan("serve", "--model", "chatglm2-6b", "--users", "1000", "--prompt", "50w", "--output", "1000w",
                "--e2e", "3s", "--gpus", "a100-80g", "--json")
    assert r.returncode == 3, r.stderr  # infeasible: exit status 3, the JSON still printed
    data = json.loads(r.stdout)
    assert data["status"] == "infeasible" and not data["plans"]
    assert any("cannot be met on any accelerator" in e for e in data["explanation"])
    assert data["relaxations"] and data["relaxations"][0]["constraint"] == "e2e"


@pytest.mark.parametrize("args,needle", [
    (["--rate", "fast"], "rate=fast: cannot parse as a rate"),
    (["--tpot", "50 msec"], "tpot=50 msec"),
    (["--prompt", "-3"], "prompt=-3"),
    (["--precision", "fp4"], "precision=fp4: must be one of"),
    (["--gpus", "H1000"], "gpus=H1000: unknown accelerator"),
    (["--tp", "2"], "tp=2: fixes a configuration: give --gpu too"),
    (["--gpu", "a100", "--precision", "fp8"], "precision=fp8: a100-80g has no published fp8 peak"),
    (["--users", "10"], "rate=5.0: give either --rate or --users, not both"),
    (["--prompt", "8000"], "prompt=8000: prompt + output"),
])
def test_serve_bad_input_one_line_exit_2(args, needle):
    r = gpuplan("serve", "--model", "llama-2-7b", "--rate", "5", *args)
    assert r.returncode == 2, r.stdout
    assert needle in r.stderr, r.stderr
    assert len(r.stderr.strip().splitlines()) == 1
    assert "Traceback" not in r.stderr + r.stdout


def test_serve_needs_demand():
    r = gpuplan("serve", "--model", "llama-2-7b")
    assert r.returncode == 2 and "give the demand" in r.stderr


def test_models_unknown_family_is_one_line_not_a_traceback():
    import subprocess
    import sys
    from pathlib import Path

    r = subprocess.run([sys.executable, str(Path(__file__).resolve().parents[1] / "cli.py"), "models", "--family",
                        "qwen"], capture_output=True, text=True)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [
        r.stderr.strip()] and "family=qwen: unknown family; known:" in r.stderr and "qwen2" in r.stderr


def test_csv_cells_are_plain_numbers_with_units_in_the_headers(tmp_path):
    import csv as csvmod

    out = tmp_path / "plans.csv"
    r = gpuplan("train", "--model", "gpt-2-124m", "--tokens", "1B", "--gpus", "h100", "--top", "2",
                "--currency", "CNY", "--csv", str(out))
    assert r.returncode == 0, r.stderr
    rows = list(csvmod.DictReader(out.open()))
    assert rows and "cost_cny" in rows[0] and "days" in rows[0]
    assert all(float(row["cost_cny"]) > 0 and float(row["days"]) > 0 and float(row["mfu"]) <= 1 for row in rows)


def test_evaluate_csv_is_one_row_of_the_json_fields():
    import csv as csvmod
    import io

    r = gpuplan("evaluate", "--model", "llama-2-7b", "--tokens", "10B", "--gpu", "h100", "--count", "8", "--csv", "-")
    assert r.returncode == 0, r.stderr
    (row,) = list(csvmod.DictReader(io.StringIO(r.stdout)))
    assert float(row["days"]) > 0 and float(row["cost_usd"]) > 0 and float(row["memory_breakdown_gib.weights"]) > 0


@pytest.mark.parametrize("argv", [["train", "--help"], ["prices", "--help"], ["evaluate", "--gpu"]])
def test_one_command_start_gives_what_the_whole_app_gives(argv, monkeypatch, capsys):
    """`gpuplan COMMAND` builds COMMAND's options alone (cli._OneCommandTyper): the same help, the
    same errors as the app with every command (as one line), and the app's commands left as they were."""
    from typer.testing import CliRunner

    from cli import app

    before = list(app.registered_commands), list(app.registered_groups)
    monkeypatch.setattr(sys, "argv", ["gpuplan", *argv])
    with pytest.raises(SystemExit) as done:
        app(prog_name="gpuplan")
    lazy = capsys.readouterr()
    assert (list(app.registered_commands), list(app.registered_groups)) == before
    whole = CliRunner().invoke(app, argv, prog_name="gpuplan")
    assert done.value.code == whole.exit_code
    if done.value.code == 2:   # a usage error: one line here, inside click's framed box in the whole app
        (line,) = lazy.err.strip().splitlines()
        message = line.removeprefix("gpuplan: error: ").rsplit(" (see `gpuplan", 1)[0]
        assert line.startswith("gpuplan: error: ") and " ".join(message.split()) in " ".join(
            whole.output.replace("│", " ").split())
    else:
        assert (lazy.out + lazy.err).split() == whole.output.split()
