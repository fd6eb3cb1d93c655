"""Rendering of `gpuplan fleet`: the schedule, the periods, purchases and reservations as tables,
CSV for scripts, and a Gantt-style PNG of the jobs over the GPUs in use. No domain logic here."""

from __future__ import annotations

from rich.markup import escape

from recommender import money
from recommender.report import console, render_frame
from recommender.units import fmt_usd


def jobs_frame(r, numeric: bool = False):
    import pandas as pd

    rows = []
    for j in r.jobs:
        days = ("" if j.days is None else f"{j.days:,.1f} ({j.days_low:,.0f}-{j.days_high:,.0f})")
        row = {"job": j.name, "kind": j.kind, "accelerator": j.accelerator, "GPUs": j.count,
               "from": j.acquisition.replace("_", "-"), "start": j.start, "end": j.end,
               "deadline": j.deadline or "", "days": days, "cost": fmt_usd(j.cost_usd), "layout": j.layout}
        if numeric:
            row = {"job": j.name, "kind": j.kind, "accelerator": j.accelerator, "gpus": j.count,
                   "acquisition": j.acquisition, "start": j.start, "end": j.end, "deadline": j.deadline or "",
                   "days": j.days, "days_low": j.days_low, "days_high": j.days_high, "cost_usd": round(j.cost_usd, 2),
                   "layout": j.layout}
        rows.append(row)
    return pd.DataFrame(rows)


def periods_frame(r, numeric: bool = False):
    """One row a period (the CSV and JSON); the text table of weekly periods sums them by month
    (money and GPUs ordered summed, power and GPU counts at the month's most)."""
    import pandas as pd

    if numeric:
        return pd.DataFrame([p.model_dump() for p in r.periods])
    groups: dict[str, list] = {}
    for p in r.periods:
        groups.setdefault(p.start[:7] if r.step == "week" else p.start, []).append(p)
    rows = []
    for label, ps in groups.items():
        total = lambda f: sum(getattr(p, f) for p in ps)  # noqa: E731
        most = lambda f: max(getattr(p, f) for p in ps)  # noqa: E731
        rows.append({"period" if r.step == "month" else "month": label,
                     "spend": fmt_usd(total("spend_usd")), "rent": fmt_usd(total("rental_usd")),
                     "reserved": fmt_usd(total("reserved_usd")), "capex": fmt_usd(total("capex_usd")),
                     "energy+colo": fmt_usd(total("energy_usd") + total("colocation_usd")),
                     "kW": f"{most('power_kw'):,.0f}", "owned": most("owned"), "bought": most("bought"),
                     "ordered": total("ordered"), "reserved GPUs": most("reserved"), "rented": most("rented"),
                     "in use": most("in_use"), "idle on-prem": most("idle_onprem")})
    return pd.DataFrame(rows)


def render(r, csv_path: str | None = None) -> None:
    c = console()
    head = f"status: {r.status}"
    if r.status == "feasible" and r.gap is not None:
        head += f" (time limit: within {r.gap:.2%} of optimal, not proven)"
    c.print(f"[bold]{head}[/bold]; objective {r.objective}; {r.horizon} {r.step}s; {r.solve_seconds:.2f} s")
    if r.jobs:
        render_frame(jobs_frame(r), "Jobs")
        render_frame(periods_frame(r), "Periods")
        if r.purchases:
            c.print("Purchases: " + "; ".join(f"{p.gpus} x {p.accelerator} ordered {p.ordered}, in use from {p.arrives}, "
                                              f"{fmt_usd(p.capex_usd)} (book value at the end {fmt_usd(p.book_value_usd)})"
                                              for p in r.purchases))
        if r.reservations:
            c.print("Reservations: " + "; ".join(f"{x.gpus} x {x.accelerator} from {x.start} for {x.periods} "
                                                 f"{r.step}{'s' if x.periods != 1 else ''} at {money.symbol()}{money.in_display(x.usd_per_gpu_hour):.2f}/GPU-h "
                                                 f"({fmt_usd(x.committed_usd)})" for x in r.reservations))
        if r.skipped:
            c.print("Not run: " + ", ".join(f"{k.name} (value {fmt_usd(k.value_usd)})" for k in r.skipped))
        c.print(f"Total: {fmt_usd(r.total_cost_usd)} = spend {fmt_usd(r.spend_usd)}"
                + (f" + reserved terms owed after the horizon {fmt_usd(r.committed_after_usd)}" if r.committed_after_usd else "")
                + (f" - book value of purchases at the end {fmt_usd(r.book_value_usd)}" if r.book_value_usd else "")
                + ("" if r.budget_usd is None else f"; budget {fmt_usd(r.budget_usd)}"))
    for line in r.explanation:
        c.print(escape(line))
    for n in r.notes:
        c.print(f"[dim]note: {escape(n)}[/dim]")
    if csv_path:
        write_csv(r, csv_path)


def write_csv(r, path: str) -> None:
    """The jobs table at PATH and the periods table beside it (PATH's stem + -periods.csv)."""
    import sys
    from pathlib import Path

    jobs = jobs_frame(r, numeric=True)
    if path == "-":
        jobs.to_csv(sys.stdout, index=False)
        return
    jobs.to_csv(path, index=False)
    p = Path(path)
    periods_frame(r, numeric=True).to_csv(p.with_name(p.stem + "-periods" + (p.suffix or ".csv")), index=False)


# -- the chart -----------------------------------------------------------------------------
COLORS = [(70, 110, 190), (200, 90, 40), (40, 150, 90), (150, 80, 170), (190, 160, 30), (60, 160, 170),
          (170, 60, 90), (110, 110, 110)]


def gantt_png(r, title: str) -> bytes:
    """Jobs as bars over the periods (one row each), and below them the GPUs in use against the
    on-premises GPUs installed per period."""
    from recommender.plot import BLACK, GREY, LIGHT, Canvas, text_width

    T = r.horizon
    rows = r.jobs
    left, top, width = 36 + max([text_width(j.name.upper(), 2) for j in rows] + [80]), 50, 60 * max(T, 6)
    row_h = 26
    chart_h = 160
    W = left + width + 30
    H = top + row_h * len(rows) + 40 + chart_h + 60
    c = Canvas(W, H)
    c.text(20, 16, title.upper().replace("'", "")[:60], scale=2)
    col = lambda p: left + int(p * width / T)  # noqa: E731
    for p in range(T + 1):
        c.line(col(p), top - 6, col(p), top + row_h * len(rows), LIGHT)
    for p in range(0, T, max(1, T // 12)):
        c.text(col(p) + 2, top + row_h * len(rows) + 6, r.periods[p].start[:7], GREY, scale=1)
    for i, j in enumerate(rows):
        y = top + i * row_h
        c.text(20, y + 6, j.name.upper()[:24], scale=2)
        color = COLORS[i % len(COLORS)]
        if j.replicas:
            for p, n in enumerate(j.replicas):
                if n:
                    c.rect(col(p) + 1, y + 2, col(p + 1) - 1, y + row_h - 4, color)
        else:
            c.rect(col(j.start_period) + 1, y + 2, col(j.end_period) - 1, y + row_h - 4, color)
        c.text(col(j.start_period) + 4, y + 8, f"{j.count} {j.accelerator}".upper()[:30], (255, 255, 255), scale=1)
    # GPUs in use (bars) and on-prem installed (line)
    y0 = top + row_h * len(rows) + 40 + chart_h
    most = max([p.in_use for p in r.periods] + [p.owned + p.bought for p in r.periods] + [1])
    scale = chart_h / most
    c.text(20, y0 - chart_h, f"GPUS {most:,}", GREY, scale=1)
    c.line(left, y0, left + width, y0, BLACK)
    for p in r.periods:
        h_use = int(p.in_use * scale)
        c.rect(col(p.period) + 6, y0 - h_use, col(p.period + 1) - 6, y0, (150, 170, 210))
        h_on = int((p.owned + p.bought) * scale)
        if h_on:
            c.line(col(p.period), y0 - h_on, col(p.period + 1), y0 - h_on, (200, 60, 40), width=2)
    c.text(left, y0 + 10, "BARS: GPUS IN USE. RED: ON-PREMISES GPUS INSTALLED", GREY, scale=1)
    return c.png()
