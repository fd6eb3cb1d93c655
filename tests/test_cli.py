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
    (["--pp", "3", "--count", "24"], "pp=3: must divide the 80 layers"),
    (["--tp", "8", "--dp", "4", "--count", "64"], "count=64: must equal tp*pp*dp"),
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
