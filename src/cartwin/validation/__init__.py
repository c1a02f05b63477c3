"""Validation of the default model against published targets (``cartwin validate-model``).

The suite is data: ``targets.toml`` (published quantitative targets with source, scenario,
statistic, acceptance range and calibration flag) and ``scenarios.toml`` (the protocols they are
read on). ``statistics`` computes each statistic from the clinical layer's scores; ``suite`` runs
the scenarios and scores the targets; ``sensitivity`` computes elasticities on common random
numbers; ``report`` writes docs/validation.md.
"""

from cartwin.validation.suite import Result, Suite, SuiteError, load_suite, run_suite

__all__ = ["Result", "Suite", "SuiteError", "load_suite", "run_suite"]
