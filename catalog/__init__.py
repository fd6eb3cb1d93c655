"""gpuplan's data: accelerators, prices, efficiencies, assumptions and model presets.

Data only (CSV and YAML, each row with `source` and `as_of`); recommender.catalog loads it.
"""

from pathlib import Path

DATA_DIR = Path(__file__).resolve().parent
