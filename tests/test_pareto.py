"""`gpuplan pareto`: the exact frontier, checked against the single-objective solve at each bound
and (training) against a brute-force Pareto filter of the whole candidate table."""

import json
import struct
import subprocess
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest

from recommender import api, plot, report, scenario
from recommender.candidates import table
from recommender.planner import plan
from recommender.serve_planner import plan_serving
from recommender.solver import Limits

ROOT = Path(__file__).resolve().parents[1]
FILES = ROOT / "constraints"


def _no_point_dominated(xs, costs):
    for i in range(len(xs)):
        for j in range(len(xs)):
            if i != j:
                assert not (xs[j] <= xs[i] and costs[j] <= costs[i]), (i, j)


def _train_query(file, sets=()):
    s = scenario.load(FILES / file, list(sets))
    fn, kw = s.typed()
    return s, api.train_query(**(api.finetune_kwargs(**kw) if fn == "finetune" else kw))


@pytest.mark.parametrize("file", ["lora-finetune.yaml", "power-capped-2mw.yaml"])
def test_training_frontier_points_are_the_single_objective_optima(file):
    s, q = _train_query(file)
    fr = s.pareto()
    assert fr.status == "optimal" and len(fr.points) >= 5
    days = [p.days for p in fr.points]
    costs = [p.cost_usd for p in fr.points]
    _no_point_dominated(days, costs)
    assert days == sorted(days, reverse=True) and costs == sorted(costs)
    for p in fr.points:
        # the single-objective solve: least cost with the deadline at this point's days
        limits = Limits(**(q.limits.__dict__ | {"deadline_days": p.days}))
        best = plan(q.job, limits, q.space, objective="cost", top=1).plans[0]
        assert best.cost_usd == pytest.approx(p.cost_usd, rel=1e-12)
        assert best.total_days <= p.days
        assert p.plan.fits and p.plan.cost_usd == pytest.approx(p.cost_usd, rel=1e-9)


def test_training_frontier_equals_brute_force_pareto_filter():
    s, q = _train_query("cheapest-100b-60d.yaml", ["constraints.deadline=120d", "constraints.max_gpus=4096"])
    fr = s.pareto()
    df, _ = table(q.job, q.space)
    ok = ~np.logical_or.reduce(list(Limits.violations(q.limits, df, needs_price=True).values()))
    rows = df[ok]
    # brute force: a row is on the frontier when no row is at least as cheap (to the cent, as the
    # planner compares) and at least as fast, and better in one
    cost, d = rows.cost.round(2).values, rows.total_days.values
    front = set()
    for i in range(len(rows)):
        dominated = ((cost <= cost[i]) & (d <= d[i]) & ((cost < cost[i]) | (d < d[i]))).any()
        if not dominated:
            front.add((cost[i], d[i]))
    got = {(round(p.cost_usd, 2), p.days) for p in fr.points}
    assert got == front and len(got) >= 8


def _serve_query(file, sets=()):
    s = scenario.load(FILES / file, list(sets))
    return s, api.serve_query(**s.typed()[1])


def test_serving_frontier_points_are_the_single_objective_optima():
    s, q = _serve_query("buy-vs-cloud-3y.yaml")
    fr = s.pareto("e2e")
    assert fr.status == "optimal" and len(fr.points) >= 3
    lat = [p.latency_ms for p in fr.points]
    cph = [p.cost_per_hour_usd for p in fr.points]
    _no_point_dominated(lat, cph)
    assert lat == sorted(lat, reverse=True) and cph == sorted(cph)

    def least_cost(bound_s):
        w = q.workload.model_copy(update={"e2e_s": bound_s})
        r = plan_serving(w, q.limits, q.space, objective="cost", top=1)
        return r.plans[0].cost_per_hour_usd if r.plans else None

    for p in fr.points[:4]:
        assert p.plan.e2e_ms <= p.latency_ms * (1 + 1e-9)
        assert least_cost(p.latency_ms / 1e3) == pytest.approx(p.cost_per_hour_usd, rel=1e-9)


def test_serving_frontier_with_users_prices_each_point_at_its_demand():
    sets = ["constraints.gpus=[h100-sxm]", "constraints.acquisition=[cloud]"]
    s, q = _serve_query("serve-70b-chat.yaml", sets)
    fr = s.pareto("tpot")
    _no_point_dominated([p.latency_ms for p in fr.points], [p.cost_per_hour_usd for p in fr.points])
    for p in fr.points[:: max(1, len(fr.points) // 3)]:
        w = q.workload.model_copy(update={"tpot_s": p.latency_ms / 1e3})
        best = plan_serving(w, q.limits, q.space, top=1).plans[0]
        assert best.cost_per_hour_usd == pytest.approx(p.cost_per_hour_usd, rel=1e-9)
        assert best.served_tokens_per_s == pytest.approx(p.plan.served_tokens_per_s, rel=1e-12)
    assert any("grid" in n for n in fr.notes)


def _png_pixels(data: bytes):
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    pos, idat, size = 8, b"", None
    while pos < len(data):
        n, kind = struct.unpack(">I4s", data[pos:pos + 8])
        body = data[pos + 8:pos + 8 + n]
        assert struct.unpack(">I", data[pos + 8 + n:pos + 12 + n])[0] == zlib.crc32(kind + body)
        if kind == b"IHDR":
            size = struct.unpack(">II", body[:8])
        elif kind == b"IDAT":
            idat += body
        pos += 12 + n
    w, h = size
    raw = zlib.decompress(idat)
    rows = [raw[y * (3 * w + 1) + 1:(y + 1) * (3 * w + 1)] for y in range(h)]
    assert all(raw[y * (3 * w + 1)] == 0 for y in range(h))
    return w, h, lambda x, y: tuple(rows[y][3 * x:3 * x + 3])


def test_chart_draws_every_point_where_the_axes_put_it():
    xs, ys = [44.9, 34.8, 27.6, 5.1], [2.47e6, 2.56e6, 2.70e6, 4.52e6]
    png, ax = plot.frontier_png(xs, ys, "days", "cost", "test", str, str, width=640, height=400)
    w, h, pixel = _png_pixels(png)
    assert (w, h) == (640, 400)
    for x, y in zip(xs, ys):
        assert pixel(*ax.px(x, y)) in (plot.MARK, plot.FIRST)
    # the cheapest point is the highlighted one; a spot with no point is background
    assert pixel(*ax.px(44.9, 2.47e6)) == plot.FIRST
    assert pixel(*ax.px(15.0, 4.0e6)) in (plot.WHITE, plot.LIGHT)
    assert not ax.logy
    _, ax_log = plot.frontier_png([1, 2], [1.0, 500.0], "x", "y", "t", str, str)
    assert ax_log.logy and ax_log.yt[0] == 1.0 and ax_log.yt[-1] == 500.0


def test_cli_pareto_json_csv_and_chart(tmp_path):
    png, csv = tmp_path / "f.png", tmp_path / "f.csv"
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "pareto", str(FILES / "lora-finetune.yaml"), "--json",
                        "--png", str(png), "--csv", str(csv)], capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    fr = json.loads(r.stdout)
    assert fr["kind"] == "train" and fr["status"] == "optimal" and fr["points"]
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert len(csv.read_text().splitlines()) == len(fr["points"]) + 1
    assert "chart:" in r.stderr


@pytest.mark.parametrize("file, args, needle", [
    ("buy-vs-cloud-3y.yaml", ["--latency", "speed"], "latency=speed: must be one of e2e, ttft, tpot"),
    ("china-accelerators.yaml", ["--set", "constraints.gpus=[mi250x]"],
     "catalog.prices=mi250x: a cost frontier needs prices"),
])
def test_cli_pareto_errors_are_one_line(file, args, needle, tmp_path):
    r = subprocess.run([sys.executable, str(ROOT / "cli.py"), "pareto", str(FILES / file), *args],
                       capture_output=True, text=True, cwd=tmp_path)
    assert r.returncode == 2 and needle in r.stderr and len(r.stderr.strip().splitlines()) == 1, r.stderr


def test_frontier_frame_has_a_row_per_point():
    s = scenario.load(FILES / "lora-finetune.yaml")
    fr = s.pareto()
    df = report.frontier_frame(fr)
    assert list(df["#"]) == list(range(1, len(fr.points) + 1)) and df["vs #1"].iloc[0] == "cheapest"


def _csv_and_json(args, tmp_path):
    import csv as csvmod

    from typer.testing import CliRunner

    from cli import app

    out = tmp_path / "f.csv"
    r = CliRunner().invoke(app, ["pareto", *args, "--no-plot", "--json", "--csv", str(out)])
    assert r.exit_code == 0, r.output
    return list(csvmod.DictReader(out.open())), json.loads(r.stdout)


def test_pareto_csv_cells_are_plain_numbers_equal_to_the_json(tmp_path):
    rows, fr = _csv_and_json([str(FILES / "lora-finetune.yaml")], tmp_path)
    assert list(rows[0])[:4] == ["point", "days", "cost_usd", "cost_vs_first"]
    assert len(rows) == len(fr["points"])
    for row, pt in zip(rows, fr["points"]):
        assert float(row["cost_usd"]) == pytest.approx(pt["cost_usd"], rel=1e-12)
        assert float(row["days"]) == pytest.approx(pt["days"], rel=1e-12)
        assert int(row["gpus"]) == pt["plan"]["count"]
        assert float(row["cost_vs_first"]) == pytest.approx(pt["cost_usd"] / fr["points"][0]["cost_usd"] - 1)
    assert not any("$" in v for row in rows for v in row.values())


def test_serving_pareto_csv_cells_equal_the_json(tmp_path):
    small = ["--set", "constraints.gpus=[h100-sxm]", "--set", "model.preset=llama-3-8b", "--set",
             "constraints.precision=[bf16]", "--set", "workload.users=50", "--set", "constraints.acquisition=[spot]"]
    rows, fr = _csv_and_json([str(FILES / "serve-70b-chat.yaml"), *small], tmp_path)
    assert list(rows[0])[:5] == ["point", "e2e_ms", "cost_per_hour_usd", "horizon_cost_usd", "cost_vs_first"]
    for row, pt in zip(rows, fr["points"]):
        assert float(row["e2e_ms"]) == pytest.approx(pt["latency_ms"], rel=1e-12)
        assert float(row["cost_per_hour_usd"]) == pytest.approx(pt["cost_per_hour_usd"], rel=1e-12)
        assert float(row["horizon_cost_usd"]) == pytest.approx(pt["cost_usd"], rel=1e-12)
