"""Regenerate the example outputs in README.md and docs/ from the real commands (keeps them true).

    python benchmarks/readme_examples.py
"""

import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SEED = ["serve", "--model", "chatglm2-6b", "--users", "1000", "--prompt", "50w", "--output", "1000w"]
EXAMPLES = {
    "train": ("README.md", ["train", "--params", "100B", "--tokens", "2T", "--deadline", "60d"]),
    "finetune": ("README.md", ["finetune", "--model", "llama-3-70b", "--tokens", "1B", "--method", "lora",
                               "--top", "3"]),
    "evaluate": ("README.md", ["evaluate", "--model", "llama-2-70b", "--tokens", "2T", "--gpu", "a100", "--tp", "8",
                               "--pp", "4", "--count", "2048"]),
    "serve": ("README.md", ["serve", "--model", "llama-3-70b", "--users", "1000", "--think-time", "3s", "--prompt",
                            "512", "--output", "256", "--ttft", "1s", "--tpot", "50ms", "--top", "3"]),
    "seed-strict": ("docs/SERVING.md", SEED + ["--e2e", "3s", "--gpus", "a100-80g,a100-40g", "--precision",
                                               "bf16,int8,int4"]),
    "seed-stream": ("docs/SERVING.md", SEED + ["--ttft", "3s", "--tpot", "50ms", "--gpus", "a100-80g,a100-40g",
                                               "--precision", "bf16,int8,int4", "--top", "3"]),
    "seed-a100": ("docs/SERVING.md", SEED + ["--ttft", "3s", "--tpot", "50ms", "--gpu", "a100-80g",
                                             "--precision", "bf16"]),
    "seed-mlu-bf16": ("docs/SERVING.md", SEED + ["--ttft", "3s", "--tpot", "50ms", "--gpu", "mlu370-x8",
                                                 "--precision", "bf16"]),
    "seed-mlu-int8": ("docs/SERVING.md", SEED + ["--ttft", "3s", "--tpot", "50ms", "--gpu", "mlu370-x8",
                                                 "--precision", "int8"]),
    "seed-mlu-strict": ("docs/SERVING.md", SEED + ["--e2e", "3s", "--gpu", "mlu370-x8", "--precision", "int4"]),
    "guide-train": ("docs/GUIDE.md", ["train", "--model", "llama-3-8b", "--tokens", "1T", "--deadline", "14d",
                                      "--top", "3"]),
    "guide-finetune": ("docs/GUIDE.md", ["finetune", "--model", "llama-3-8b", "--tokens", "100M", "--method",
                                         "qlora", "--top", "3"]),
    "guide-evaluate": ("docs/GUIDE.md", ["evaluate", "--model", "llama-3-8b", "--tokens", "1T", "--gpu", "h100",
                                         "--count", "64", "--tp", "2"]),
    "guide-serve": ("docs/GUIDE.md", ["serve", "--model", "llama-3-8b", "--rate", "20rps", "--prompt", "1024",
                                      "--output", "256", "--ttft", "500ms", "--tpot", "40ms", "--top", "3"]),
    "guide-spec": ("docs/GUIDE.md", ["serve", "--model", "llama-3-70b", "--rate", "2rps", "--prompt", "512", "--output",
                                     "256", "--ttft", "1s", "--tpot", "20ms", "--draft", "llama-3.2-1b",
                                     "--draft-accept", "0.7", "--gpus", "h100-sxm,h200", "--top", "3"]),
    "serving-disagg": ("docs/SERVING.md", ["serve", "--model", "llama-3-70b", "--rate", "8rps", "--prompt", "4000",
                                           "--output", "200", "--ttft", "1s", "--tpot", "30ms", "--gpus", "h200",
                                           "--acquisition", "cloud", "--top", "1"]),
    "guide-solve": ("docs/GUIDE.md", ["solve", "constraints/fastest-under-budget.yaml"]),
    "guide-robust": ("docs/GUIDE.md", ["solve", "constraints/lora-finetune.yaml", "--robust"]),
    "guide-whatif": ("docs/GUIDE.md", ["whatif", "constraints/cheapest-100b-60d.yaml", "--vary",
                                       "deadline=30d,60d,90d", "--vary", "budget=2M,4M"]),
    "guide-pareto-train": ("docs/GUIDE.md", ["pareto", "constraints/cheapest-100b-60d.yaml", "--png",
                                             "docs/img/cheapest-100b-60d-pareto.png"]),
    "guide-pareto-serve": ("docs/GUIDE.md", ["pareto", "constraints/buy-vs-cloud-3y.yaml", "--png",
                                             "docs/img/buy-vs-cloud-3y-pareto.png"]),
    "guide-fleet": ("docs/GUIDE.md", ["fleet", "constraints/portfolios/shared-purchase.yaml", "--png",
                                      "docs/img/shared-purchase-fleet.png"]),
    "guide-fleet-solo-train": ("docs/GUIDE.md", ["train", "--model", "llama-3-8b", "--tokens", "2T", "--deadline",
                                                 "116d", "--gpus", "b200,h100-sxm", "--acquisition",
                                                 "cloud,reserved,buy", "--top", "1"]),
    "guide-fleet-solo-serve": ("docs/GUIDE.md", ["serve", "--model", "llama-3-8b", "--rate", "85rps", "--prompt",
                                                 "1000", "--output", "300", "--ttft", "1s", "--tpot", "50ms",
                                                 "--horizon", "245d", "--gpus", "b200,h100-sxm", "--acquisition",
                                                 "cloud,reserved,buy", "--top", "1"]),
    "guide-fleet-nocredit": ("docs/GUIDE.md", ["fleet", "constraints/portfolios/shared-purchase.yaml", "--set",
                                               "book_value=false"]),
    "guide-catalog": ("docs/GUIDE.md", ["catalog", "--vendor", "amd"]),
    "guide-models": ("docs/GUIDE.md", ["models", "--family", "qwen2"]),
    "guide-schema": ("docs/GUIDE.md", ["schema"], 25),
    "guide-tier-1m": ("docs/GUIDE.md", ["train", "--params", "70B", "--budget", "1M", "--objective", "compute",
                                        "--deadline", "270d", "--top", "3"]),
    "guide-tier-5m": ("docs/GUIDE.md", ["train", "--params", "70B", "--budget", "5M", "--objective", "compute",
                                        "--deadline", "270d", "--top", "3"]),
    "guide-tier-10m": ("docs/GUIDE.md", ["train", "--params", "70B", "--budget", "10M", "--objective", "compute",
                                         "--deadline", "270d", "--top", "3"]),
    "catalog-prices": ("docs/CATALOG.md", ["prices", "--gpu", "h100-sxm"]),
    "catalog-china-seed": ("docs/CATALOG.md", ["serve", "--model", "chatglm2-6b", "--users", "1000", "--think-time",
                                               "3s", "--prompt", "512", "--output", "256", "--ttft", "1s",
                                               "--tpot", "50ms", "--gpus", "a100-80g,mlu370-x8", "--acquisition",
                                               "buy", "--market", "china", "--currency", "CNY", "--top", "3"]),
    "catalog-h100-mi300x": ("docs/CATALOG.md", ["train", "--model", "llama-3-70b", "--tokens", "15T", "--deadline",
                                                "90d", "--gpus", "h100-sxm,mi300x", "--diverse"]),
    "catalog-deepseek": ("docs/CATALOG.md", ["evaluate", "--model", "deepseek-r1-671b", "--tokens", "14.8T", "--gpu",
                                             "h800", "--count", "2048", "--tp", "1", "--pp", "16", "--ep", "64",
                                             "--precision", "fp8", "--market", "china"]),
    "catalog-qlora-4090": ("docs/CATALOG.md", ["finetune", "--model", "qwen2.5-7b", "--tokens", "100M", "--method",
                                               "qlora", "--gpus", "rtx4090", "--max-gpus", "1", "--top", "2"]),
}
ONLY = sys.argv[1:]  # names to regenerate (default: all)


def run(args):
    env = dict(os.environ, COLUMNS="150", GPUPLAN_HOME=tempfile.mkdtemp())  # no user price file
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), *args], capture_output=True, text=True, env=env,
                       cwd=ROOT)
    if r.returncode not in (0, 3):  # 3: an infeasible answer, shown as it is
        raise SystemExit(f"gpuplan {' '.join(args)} exited {r.returncode}: {r.stderr}")
    out = r.stdout
    lines = [line.rstrip() for line in out.splitlines()]
    out = "\n".join(line for line in lines if line.strip())
    out = re.sub(r"; \d+\.\d\d s$", "; (solve time varies)", out, flags=re.M)
    out = re.sub(r"; \d+\.\d s(;|$)", r"; (time varies)\1", out, flags=re.M)
    return re.sub(r"solves, \d+\.\d s", "solves, (time varies)", out)


def shown(out: str, head: list[int]) -> str:
    if not head:
        return out
    lines = out.splitlines()
    return "\n".join(lines[:head[0]] + ([f"... ({len(lines) - head[0]} more lines)"] if len(lines) > head[0] else []))


def main():
    for name, (path, args, *limit) in EXAMPLES.items():
        if ONLY and name not in ONLY:
            continue
        doc = (ROOT / path).read_text()
        start, end = f"<!-- example:{name}:start -->", f"<!-- example:{name}:end -->"
        head, rest = doc.split(start, 1)
        _, tail = rest.split(end, 1)
        doc = head + start + "\n```\n$ gpuplan " + " ".join(args) + "\n" + shown(run(args), limit) + "\n```\n" + end + tail
        (ROOT / path).write_text(doc)


if __name__ == "__main__":
    main()
