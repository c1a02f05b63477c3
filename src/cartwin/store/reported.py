"""A run's observations as a laboratory reports them.

With the observation model on (docs/protocol.md), a run's observations carry the true value, the
LLOQ and a BLQ flag beside the observed value (``cartwin.store.layout.OBSERVATION_MODEL_COLUMNS``).
Every reader that scores a run (``cartwin score``, the report's per-part scores, the CDISC export)
hands the clinical layer the values a trial would have, through :func:`as_reported`; the clinical
layer itself knows nothing of run directories.
"""

from __future__ import annotations

import polars as pl

from cartwin.store import layout

# The detection limit of CAR-T kinetics (clinical/rules/kinetics.toml) is the row's lower limit.
DETECTION_LIMIT_TESTS = ("CART",)


def as_reported(observations: pl.DataFrame) -> pl.DataFrame:
    """A run's observations as a laboratory reports them, in the observation format.

    Runs with the observation model on carry ``true_value``, ``lloq`` and ``blq``
    (store.layout.OBSERVATION_MODEL_COLUMNS). A value below the limit of quantification is
    reported as '<LLOQ', not as a number: it is scored as 0, below every threshold at or above
    the LLOQ (and the usual NCA convention, BLQ = 0); CAR-T rows carry the LLOQ as their lower
    limit, the detection limit of the kinetics. The extra columns are dropped."""
    if layout.OBSERVATION_BLQ not in observations.columns:
        return observations
    blq, lloq = pl.col(layout.OBSERVATION_BLQ).fill_null(False), pl.col(layout.OBSERVATION_LLOQ)
    return observations.with_columns(
        pl.when(blq).then(0.0).otherwise(pl.col("value")).alias("value"),
        pl.when(pl.col("test").cast(pl.String).is_in(DETECTION_LIMIT_TESTS)).then(lloq)
        .otherwise(None).cast(pl.Float64).alias("lower"),
    ).drop(*layout.OBSERVATION_MODEL_COLUMNS)
