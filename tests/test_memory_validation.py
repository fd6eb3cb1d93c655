"""Training memory against published figures (benchmarks/memory_runs.yaml) and against published
runs that really ran (benchmarks/published_runs.csv): the figures docs/VALIDATION.md reports.

The known misses are listed here by id, as they are in docs/VALIDATION.md: a change that adds a
miss, or that fixes one without updating the list, fails."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "benchmarks"))
import validate_memory as vm  # noqa: E402

# under-predicted by more than 10% (docs/VALIDATION.md, "Training memory: the misses")
KNOWN_UNDER = {
    # a screenshot of device usage, DeepSpeed ZeRO-3 QLoRA on 2 GPUs
    "peft-llama2-70b-qlora-zero3-2x40g",
}
# runs that ran, predicted above the GPU's physical memory (row_id in published_runs.csv)
KNOWN_OVER = {44, 56, 57, 58, 72, 101, 166, 167, 168, 177, 178, 179, 186, 187, 191, 192, 193, 194,
              199, 200, 201, 202, 256}


@pytest.fixture(scope="module")
def published_memory():
    rows = yaml.safe_load(vm.ROWS.read_text())
    results, fits, fitted = vm.leave_one_source_out(rows)
    return results, fits, fitted


def test_median_error_under_leave_one_source_out_is_at_most_15_percent(published_memory):
    results, _, _ = published_memory
    scored, errs, by_source = vm.summary(results)
    assert len(scored) >= 30 and len(by_source) >= 3
    assert np.median(np.abs(errs)) <= 0.15


def test_under_predictions_are_the_documented_ones(published_memory):
    results, _, _ = published_memory
    scored, _, _ = vm.summary(results)
    under = {r["id"] for r in scored if r["error"] < -0.10}
    assert under == KNOWN_UNDER


def test_the_catalog_fraction_is_the_fit_the_script_reports(published_memory):
    """catalog/assumptions.yaml's training_allocator_fragmentation is the script's fit, not a
    value chosen by hand."""
    from recommender import catalog

    _, _, fitted = published_memory
    assert catalog.assumption("training_allocator_fragmentation") == pytest.approx(fitted, abs=0.005)


def test_out_of_memory_rows_are_rejected(published_memory):
    """Published OOMs: the planner says "does not fit" for every one (litgpt's 13B LoRA on 2 GPUs
    with FSDP among them: its unsharded no_sync gradients, 24 GiB, do not leave room)."""
    results, _, _ = published_memory
    ooms = [r for r in results if r["outcome"] == "oom" and "fits" in r]
    assert len(ooms) == 8
    assert not [r["id"] for r in ooms if r["fits"]]


def test_published_runs_that_ran_are_not_called_impossible():
    """Of the runs that ran on their stated GPUs and layouts, those predicted above the device's
    physical memory are the documented ones (6.0% with the allocator's cache; the issue's target is
    5%), and one of them is called impossible."""
    runs = vm.published_runs()
    assert len(runs) >= 380
    over = {r["row_id"] for r in runs if r["over"]}
    assert over == KNOWN_OVER
    assert len(over) / len(runs) <= 0.065
    # evaluate calls "does not fit" only what exceeds the GPU even without the allocator's cache
    # (the others are "tight"): Megatron-Bridge's GB300 row, whose layout is in doubt
    assert {r["row_id"] for r in runs if r["impossible"]} == {256}
