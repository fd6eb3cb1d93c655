"""gpuplan's library: units, specs, catalog, formulas, evaluator, solver and reports."""

__version__ = "0.1.0"
