"""Cost and power of a job: cloud GPU-hours, or buying (capex, energy with PUE, operations).

cloud = GPU-hours x price per GPU-hour (on-demand, spot or reserved).
buy   = capex x (amortized share of the useful life, or all of it)
        + energy (TDP x PUE x hours x $/kWh) + operations (colocation: $ per kW of IT load per
        month, which covers space, power delivery and cooling, not the energy itself);
        buying adds its lead time before the job can start.
owned = energy + operations only (the capex is already spent).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from recommender.formulas.compute import _scalar

DAYS_PER_MONTH = 365.0 / 12.0


@dataclass(frozen=True)
class Cost:
    """Dollars for the job, by component."""

    rental: object = 0.0
    capex: object = 0.0
    energy: object = 0.0
    operations: object = 0.0

    @property
    def total(self):
        return self.rental + self.capex + self.energy + self.operations


def gpu_hours(count, days):
    return _scalar(np.asarray(count) * np.asarray(days) * 24.0)


def cloud_cost(count, days, price_usd_per_gpu_hour) -> Cost:
    return Cost(rental=_scalar(gpu_hours(count, days) * price_usd_per_gpu_hour))


def it_power_kw(count, tdp_w):
    """IT power drawn by the accelerators: count x TDP."""
    return _scalar(np.asarray(count) * tdp_w / 1000.0)


def facility_power_kw(count, tdp_w, pue):
    """Facility power: IT power x PUE (power usage effectiveness)."""
    return _scalar(it_power_kw(count, tdp_w) * pue)


def energy_cost(count, days, tdp_w, pue, usd_per_kwh):
    return _scalar(facility_power_kw(count, tdp_w, pue) * np.asarray(days) * 24.0 * usd_per_kwh)


def colocation_cost(count, days, tdp_w, usd_per_kw_month):
    """Colocation: $ per kW of IT load per month x IT kW x months (space, power delivery, cooling)."""
    return _scalar(it_power_kw(count, tdp_w) * usd_per_kw_month * np.asarray(days) / DAYS_PER_MONTH)


def buy_cost(count, days, system_price_per_gpu, tdp_w, pue, usd_per_kwh, colo_usd_per_kw_month,
             useful_life_years, amortize=True, owned=False) -> Cost:
    """Buying (or using owned) accelerators for `days` of work.

    capex share = price x count x min(1, days / useful life) when amortized, else the full price;
    operations = colocation $/kW-month x IT kW x months (also for owned hardware).
    """
    capex_full = np.asarray(count) * system_price_per_gpu
    share = np.minimum(1.0, np.asarray(days) / (useful_life_years * 365.0)) if amortize else 1.0
    return Cost(
        capex=0.0 if owned else _scalar(capex_full * share),
        energy=energy_cost(count, days, tdp_w, pue, usd_per_kwh),
        operations=colocation_cost(count, days, tdp_w, colo_usd_per_kw_month),
    )
