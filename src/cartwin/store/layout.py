"""The names of the files and folders that cartwin writes, declared once.

Only ``cartwin.store`` joins these names to paths; every other room asks the store for a table, a
manifest or a folder. docs/run_directory.md describes the run directory for users. This module
imports nothing, so that help texts and messages can name the files cheaply.
"""

from __future__ import annotations

import re

# --- a run directory (`cartwin run PROTOCOL --out DIR`) ----------------------------------------
RUN_JSON = "run.json"  # what the run computes (plan, protocol hash); written before any chunk
PROTOCOL = "protocol.toml"  # a byte-for-byte copy of the protocol file
DICTIONARY = "dictionary.json"  # meaning and unit of every column of every table
MANIFEST = "manifest.json"  # what made the run; written last, so its presence means "complete"
# an imported (SBML) model's record in run.json and the manifest names its file's SHA-256
IMPORTED_MODEL_SOURCE_HASH = "source_sha256"


def is_imported_model(model_record) -> bool:
    """Whether a run's model record (``run.json`` or the manifest, key ``model``) is an imported
    SBML model's, whose read-outs the clinical layer does not grade."""
    return isinstance(model_record, dict) and IMPORTED_MODEL_SOURCE_HASH in model_record


DATABASE = "results.duckdb"  # DuckDB views over the tables

TABLES = ("observations", "events", "parameters", "patients")  # patients last: the chunk marker
PART_SUFFIX = ".parquet"  # each table is a folder of part files, one per chunk


def table_folder(table: str) -> str:
    """The folder of a run table's part files: ``observations`` -> ``observations.parquet``."""
    if table not in TABLES:
        raise KeyError(f"{table!r} is not a table of a run directory ({', '.join(TABLES)})")
    return f"{table}{PART_SUFFIX}"


PATIENTS = table_folder("patients")
OBSERVATIONS = table_folder("observations")
EVENTS = table_folder("events")
PARAMETERS = table_folder("parameters")

# Columns the observation model adds to the observations table (docs/run_directory.md): the
# model's value, the assay's lower limit of quantification, and whether the observed value is below it.
OBSERVATION_TRUE_VALUE = "true_value"
OBSERVATION_LLOQ = "lloq"
OBSERVATION_BLQ = "blq"
OBSERVATION_MODEL_COLUMNS = (OBSERVATION_TRUE_VALUE, OBSERVATION_LLOQ, OBSERVATION_BLQ)

# The report's folder inside a run directory, and the clinical scores it caches per part there:
# DIR/report/scores/<table>/<part>.parquet, with the fingerprint that says which are still valid.
REPORT = "report"
SCORES = "scores"
SCORE_FINGERPRINT = "fingerprint.json"

# --- a scored-output directory (`cartwin score DATA --out DIR`) --------------------------------
SCORED_SUFFIX = ".parquet"  # one file per result table: visits.parquet, flags.parquet, ...
SCORED_DATABASE = "results.duckdb"  # every result table, as DuckDB tables

# --- temporary files ---------------------------------------------------------------------------
# Every file is written to ".<name>.cartwin-<random>.tmp" beside its final name and renamed into
# place; only names of this form are ever deleted as stale temporaries.
TEMPORARY_INFIX = ".cartwin-"
TEMPORARY_SUFFIX = ".tmp"
TEMPORARY_PATTERN = re.compile(r"\.(.+)\.cartwin-[A-Za-z0-9_]+\.tmp")


def temporary_target(name: str) -> str | None:
    """The name of the file an atomic write's temporary ``.NAME.cartwin-XXXX.tmp`` becomes (NAME),
    or None for any other name; a NAME that itself holds ``.cartwin-`` is kept whole."""
    match = TEMPORARY_PATTERN.fullmatch(name)
    return match.group(1) if match else None


def run_names() -> tuple[str, ...]:
    """Every file and folder name at the top of a run directory."""
    return (RUN_JSON, PROTOCOL, DICTIONARY, MANIFEST, DATABASE, *(table_folder(t) for t in TABLES))
