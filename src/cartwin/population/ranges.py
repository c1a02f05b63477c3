"""Physiologic ranges and accepted units of the covariates a protocol may give.

Draws are truncated to these ranges (intersected with any bounds the protocol gives), and an
explicit patient outside them is rejected: they are the limits of the adult and adolescent
lupus populations the default model was built for, not reference intervals.
"""

from __future__ import annotations

# quantity: (low, high, canonical unit)
PHYSIOLOGIC_RANGES: dict[str, tuple[float, float, str]] = {
    "age": (12.0, 90.0, "years"),
    "weight": (30.0, 250.0, "kg"),
    "height": (120.0, 220.0, "cm"),
    "creatinine": (20.0, 1500.0, "umol/L"),
    "dsdna": (0.0, 10000.0, "IU/mL"),
    "c3": (0.05, 3.0, "g/L"),
    "c4": (0.005, 1.0, "g/L"),
    "proteinuria": (0.0, 20.0, "g/24h"),
    "pga": (0.0, 3.0, "points"),
}

# quantity: {unit: factor to the canonical unit}
UNIT_FACTORS: dict[str, dict[str, float]] = {
    "creatinine": {"umol/L": 1.0, "mg/dL": 88.42},
    "c3": {"g/L": 1.0, "mg/dL": 0.01},
    "c4": {"g/L": 1.0, "mg/dL": 0.01},
    "dsdna": {"IU/mL": 1.0},
    "proteinuria": {"g/24h": 1.0, "mg/24h": 0.001},
}
