"""Everything the report shows, aggregated in DuckDB over the run's Parquet parts and the score parts.

Nothing here loads a whole run: quantiles over time are computed per arm, test and day in SQL, and
the per-patient tables are reduced to counts and summaries per arm before they reach Python. The
only per-patient rows fetched are those of the swimmer plot, for arms of at most
``SWIMMER_MAX_PATIENTS`` patients.
"""

from __future__ import annotations

import glob as glob_module
import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from cartwin.endpoints import Endpoint, definitions, stats
from cartwin.endpoints.summary import time_to_event_summary
from cartwin.store.run_directory import RunDirectory

SWIMMER_MAX_PATIENTS = 50
QUANTILES = (0.05, 0.5, 0.95)


@dataclass(frozen=True)
class Readout:
    key: str
    title: str
    tests: tuple[str, ...]
    unit: str
    scale: str  # "linear", "log" or "symlog" (counts that reach 0)


READOUTS = (
    Readout("cart", "CAR-T cells", ("CART",), "cells/uL", "symlog"),
    Readout("bcell", "CD19+ B cells", ("BCELL",), "cells/uL", "symlog"),
    Readout("plasma", "BCMA+ plasma cells", ("BCMAPC",), "cells/uL", "log"),
    Readout("dsdna", "Anti-dsDNA antibodies", ("DSDNA",), "IU/mL", "log"),
    Readout("complement", "Complement C3 and C4", ("C3", "C4"), "g/L", "linear"),
    Readout("neutrophils", "Neutrophils", ("NEUT",), "10^9/L", "linear"),
    Readout("lymphocytes", "Lymphocytes", ("LYM",), "10^9/L", "linear"),
    Readout("sledai", "SELENA-SLEDAI", ("SELENA",), "points", "linear"),
)


def reported(kind: str) -> tuple[Endpoint, ...]:
    """The endpoints of one type that the report shows, in the endpoint table's order."""
    return definitions().of_type(kind, reported=True)


LIVER_TERMS = ("Alanine aminotransferase increased", "Aspartate aminotransferase increased",
               "Blood bilirubin increased", "Alkaline phosphatase increased", "GGT increased")
# Rows of the adverse-event table: the terms the trial reports first, each a set of graded terms
# whose worst grade per patient counts.
AE_ROWS = (
    ("Neutropenia", ("Neutrophil count decreased",)),
    ("Lymphopenia", ("Lymphocyte count decreased",)),
    ("Liver dysfunction (worst of ALT, AST, bilirubin, ALP, GGT)", LIVER_TERMS),
    ("Cytokine release syndrome", ("Cytokine release syndrome",)),
    ("ICANS", ("Immune effector cell-associated neurotoxicity syndrome",)),
    ("Acute GvHD", ("Acute graft-versus-host disease",)),
)
GRADES = (0, 1, 2, 3, 4, 5)


@dataclass
class Arm:
    id: str
    label: str
    product: str
    regimen: str
    dose: str
    n: int
    ok: int
    failed: int
    scored: int = 0


@dataclass
class Aggregates:
    arms: list[Arm]
    time_course: dict[str, list[dict]]  # readout key -> rows (arm, test, day, n, q05, q50, q95)
    sledai_source: str
    sledai_note: str
    binary: dict[str, dict[str, tuple[int, int]]]  # endpoint -> arm -> (k, n)
    continuous: dict[str, dict[str, dict]]  # endpoint -> arm -> summary
    time_to_event: dict[str, dict[str, dict]]  # endpoint -> arm -> Kaplan-Meier summary
    adverse: dict[str, dict[str, dict]]  # AE row -> arm -> {grades: {g: count}, n, not_evaluable}
    other_terms: list[str]
    swimmer: dict[str, list[dict]] = field(default_factory=dict)  # arm -> patient lanes
    curves: dict[str, dict[str, list[dict]]] = field(default_factory=dict)  # KM curve -> arm -> (time, event, n)


PER_PATIENT = ("patients", "patient_scores", "adverse_events")
MATERIALISE_PARTS = 64  # parts beyond which a per-patient table is read into memory once


def _read_parts(glob: str):
    """Every part of a table as one Arrow table (categorical columns as text, as DuckDB reads
    them from Parquet), or None when the parts cannot be read as one (their columns differ)."""
    import polars as pl

    try:
        frame = pl.scan_parquet(glob).collect()
    except (pl.exceptions.PolarsError, OSError):
        return None
    text = [c for c, t in frame.schema.items() if isinstance(t, (pl.Categorical, pl.Enum))]
    return frame.with_columns(pl.col(text).cast(pl.String)).to_arrow() if text else frame.to_arrow()


class Database:
    """An in-memory DuckDB over the run's Parquet parts and its score parts."""

    def __init__(self, run_dir: Path, threads: int | None = None):
        self.con = duckdb.connect()
        self._tables: dict[str, object] = {}  # Arrow tables registered in the connection
        if threads:
            self.con.execute(f"SET threads = {int(threads)}")
        rundir = RunDirectory(run_dir)  # the run's tables and the scores cached in it
        views = {
            "observations": rundir.table_glob("observations"),
            "patients": rundir.table_glob("patients"),
            "visit_scores": rundir.scores_glob("visits"),
            "patient_scores": rundir.scores_glob("patients"),
            "adverse_events": rundir.scores_glob("adverse_events"),
        }
        for name, glob in views.items():
            pattern = glob.replace("'", "''")
            source = f"read_parquet('{pattern}', union_by_name = true)"
            table = None
            if name in PER_PATIENT and len(glob_module.glob(glob)) > MATERIALISE_PARTS:
                # A large run has thousands of small parts, and every query over a view opens each
                # of them again (a few ms a file): the per-patient tables that the report queries
                # a dozen times are read once into memory instead (the stored observations stay a
                # view). Polars reads the parts ~10x faster than DuckDB; parts whose columns
                # differ (mixed protocols) are left to DuckDB's union by name.
                table = _read_parts(glob)
                if table is None:
                    self.con.execute(f"CREATE TEMP TABLE {name} AS SELECT * FROM {source}")
                    continue
                self._tables[name] = table
                self.con.register(f"_{name}_in_memory", table)
                self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM _{name}_in_memory")
            else:
                self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM {source}")

    def rows(self, sql: str, params: list | None = None) -> list[dict]:
        cur = self.con.execute(sql, params or [])
        names = [d[0] for d in cur.description]
        return [dict(zip(names, row)) for row in cur.fetchall()]

    def close(self) -> None:
        self.con.close()


def arms_of(db: Database, protocol_arms: list[dict]) -> list[Arm]:
    labels = {a["id"]: a for a in protocol_arms}
    rows = db.rows("""SELECT arm, any_value(product) AS product, any_value(regimen) AS regimen,
                             min(dose_cells_per_kg) AS per_kg_min, max(dose_cells_per_kg) AS per_kg_max,
                             median(dose_cells) AS cells, count(*) AS n,
                             count(*) FILTER (WHERE status = 'ok') AS ok,
                             count(*) FILTER (WHERE status = 'failed') AS failed
                      FROM patients GROUP BY arm""")
    by_id = {r["arm"]: r for r in rows}
    order = [a for a in labels if a in by_id] + sorted(a for a in by_id if a not in labels)
    arms = []
    for arm_id in order:
        r = by_id[arm_id]
        dose = (f"{r['per_kg_min']:.3g} cells/kg" if r["per_kg_min"] is not None and r["per_kg_min"] == r["per_kg_max"]
                else f"{r['cells']:.3g} cells (median)")
        arms.append(Arm(arm_id, labels.get(arm_id, {}).get("label") or arm_id, r["product"], r["regimen"], dose,
                        r["n"], r["ok"], r["failed"]))
    return arms


def time_courses(db: Database) -> tuple[dict[str, list[dict]], str, str]:
    tests = [t for r in READOUTS for t in r.tests if t != "SELENA"]
    q = ", ".join(str(x) for x in QUANTILES)
    rows = db.rows(f"""SELECT arm, test, day, count(value) AS n, quantile_cont(value, [{q}]) AS q
                       FROM observations WHERE test IN ({", ".join("'" + t + "'" for t in tests)})
                         AND value IS NOT NULL
                       GROUP BY arm, test, day ORDER BY arm, test, day""")
    sledai = db.rows(f"""SELECT arm, day, count(selena) AS n_full, quantile_cont(selena, [{q}]) AS q_full,
                                count(selena_min) AS n_lb, quantile_cont(selena_min, [{q}]) AS q_lb
                         FROM visit_scores WHERE sledai_visit GROUP BY arm, day ORDER BY arm, day""")
    full, lower = sum(r["n_full"] for r in sledai), sum(r["n_lb"] for r in sledai)
    # A SELENA-SLEDAI with a descriptor never recorded is not evaluable; plotting the evaluable
    # visits only would hide that. When no visit is fully evaluable, the lower bound (unrecorded
    # descriptors absent) is what the run can say, and the figure says which one it shows.
    use_full = full > 0 and full >= 0.5 * lower
    if use_full:
        source = "SELENA-SLEDAI"
        note = f"{full} of {lower} SLEDAI visits fully evaluable; medians over evaluable visits"
    else:
        source = "SELENA-SLEDAI lower bound"
        note = (f"only {full} of {lower} SLEDAI visits fully evaluable (descriptors never recorded in this run); "
                "shown: the lower bound, unrecorded descriptors taken as absent")
    for r in sledai:
        n, qs = (r["n_full"], r["q_full"]) if use_full else (r["n_lb"], r["q_lb"])
        if n:
            rows.append({"arm": r["arm"], "test": "SELENA", "day": r["day"], "n": n, "q": qs})
    out: dict[str, list[dict]] = {r.key: [] for r in READOUTS}
    readout_of = {t: r.key for r in READOUTS for t in r.tests}
    for r in rows:
        q05, q50, q95 = r.pop("q")
        out[readout_of[r["test"]]].append({**r, "q05": q05, "q50": q50, "q95": q95})
    return out, source, note


# Aggregation over the per-patient endpoint values of the score parts (cartwin.endpoints.compute):
# what each endpoint is lives in the endpoint table; here are only counts, quantiles and moments.

def _q(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def binary_endpoints(db: Database) -> dict[str, dict[str, tuple[int, int]]]:
    """Per binary endpoint and arm: (successes, evaluable patients)."""
    cols = []
    for b in reported("binary"):
        cols.append(f'count(*) FILTER (WHERE {_q(b.key)}) AS {_q(b.key + "__k")}')
        cols.append(f'count({_q(b.key)}) AS {_q(b.key + "__n")}')
    rows = db.rows(f"SELECT arm, count(*) AS scored, {', '.join(cols)} FROM patient_scores GROUP BY arm")
    out: dict[str, dict[str, tuple[int, int]]] = {b.key: {} for b in reported("binary")}
    for r in rows:
        for b in reported("binary"):
            out[b.key][r["arm"]] = (int(r[f"{b.key}__k"]), int(r[f"{b.key}__n"]))
    return out


def lower_bound_needed(binary: dict[str, dict[str, tuple[int, int]]]) -> bool:
    """The lower-bound rows (``lower_bound_of`` in the endpoint table) say something only where some
    patient lacks what the endpoint they bound needs (a full SELENA-SLEDAI)."""
    pairs = [(e.lower_bound_of, e.key) for e in reported("binary") if e.lower_bound_of]
    return any(binary[bound].get(arm, (0, 0))[1] > n
               for key, bound in pairs for arm, (_, n) in binary[key].items()) or any(
        arm not in binary[key] for key, bound in pairs for arm in binary[bound])


def scored_counts(db: Database) -> dict[str, int]:
    return {r["arm"]: int(r["n"]) for r in db.rows("SELECT arm, count(*) AS n FROM patient_scores GROUP BY arm")}


def continuous_endpoints(db: Database) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for c in reported("continuous"):
        x = _q(c.key)
        rows = db.rows(f"""SELECT arm, count({x}) AS n, median({x}) AS median,
                                  quantile_cont({x}, 0.25) AS q25, quantile_cont({x}, 0.75) AS q75,
                                  min({x}) AS min, max({x}) AS max,
                                  count({x}) FILTER (WHERE {x} > 0) AS n_pos,
                                  avg(ln({x})) FILTER (WHERE {x} > 0) AS mean_log,
                                  var_samp(ln({x})) FILTER (WHERE {x} > 0) AS var_log
                           FROM patient_scores WHERE {x} IS NOT NULL GROUP BY arm""")
        out[c.key] = {r["arm"]: r for r in rows}
    return out


def time_to_event_endpoints(db: Database) -> dict[str, dict[str, dict]]:
    """Per time-to-event endpoint and arm: the Kaplan-Meier summary, from (time, event, count) rows."""
    out: dict[str, dict[str, dict]] = {}
    for e in reported("time_to_event"):
        rows = db.rows(f"""SELECT arm, {_q(e.key)} AS time, {_q(e.event_column)} AS event, count(*) AS n
                           FROM patient_scores WHERE {_q(e.key)} IS NOT NULL
                           GROUP BY ALL ORDER BY arm, time""")
        per_arm: dict[str, list[dict]] = {}
        for r in rows:
            per_arm.setdefault(r["arm"], []).append(r)
        out[e.key] = {arm: time_to_event_summary([r["time"] for r in rs], [bool(r["event"]) for r in rs],
                                                 [r["n"] for r in rs]) for arm, rs in per_arm.items()}
    return out


@dataclass(frozen=True)
class Curve:
    """A time to event drawn as Kaplan-Meier curves: SQL expressions over the per-patient scores
    (``patient_scores``) for the time from day 0 and the event flag (false: censored there)."""

    key: str
    title: str
    event_label: str
    time: str
    event: str
    population: str
    note: str


CURVES = (
    Curve("bcell_return", "B-cell return", "B cells returned", '"bcell_return_time"', '"bcell_return_time_event"',
          "patients with B-cell aplasia",
          "endpoint bcell_return_time: from infusion to the first count at or above the aplasia threshold after "
          "aplasia; still aplastic: censored at the last B-cell count"),
    Curve("cart_loss", "Loss of CAR-T cells", "CAR-T below detection", '"cart_detectable_until_day"',
          'coalesce("cart_last_detectable_day", -1) < "cart_last_measured_day"', "patients with CAR-T counts after infusion",
          "from infusion to the day CAR-T cells fall below the detection limit (endpoint cart_persistence, "
          "interpolated to the crossing); detectable at the last count: censored there"),
    Curve("relapse", "Relapse (first SELENA flare)", "flared", '"time_to_first_flare"', '"time_to_first_flare_event"',
          "patients with a SLEDAI visit after infusion",
          "endpoint time_to_first_flare: from infusion to the first visit with a mild/moderate or severe SELENA "
          "flare index flare; no flare: censored at the last SLEDAI visit"),
)


def curves(db: Database) -> dict[str, dict[str, list[dict]]]:
    """Per curve and arm: (time, event, count) rows for the Kaplan-Meier estimate; a curve whose
    columns the scores lack (a model without that read-out) is left out."""
    columns = {r["column_name"] for r in db.rows("DESCRIBE patient_scores")}
    out: dict[str, dict[str, list[dict]]] = {}
    for c in CURVES:
        needed = {n.strip('"') for n in (c.time + " " + c.event).split() if n.startswith('"')}
        if not needed <= columns:
            continue
        rows = db.rows(f"""SELECT arm, {c.time} AS time, coalesce({c.event}, false) AS event, count(*) AS n
                           FROM patient_scores WHERE {c.time} IS NOT NULL GROUP BY ALL ORDER BY arm, time""")
        per_arm: dict[str, list[dict]] = {}
        for r in rows:
            per_arm.setdefault(r["arm"], []).append(r)
        if per_arm:
            out[c.key] = per_arm
    return out


def adverse_events(db: Database, arms: list[Arm]) -> tuple[dict[str, dict[str, dict]], list[str]]:
    present = {r["term"] for r in db.rows("SELECT DISTINCT term FROM adverse_events")}
    grouped = {t for _, terms in AE_ROWS for t in terms}
    other = sorted(present - grouped)
    rows_spec = list(AE_ROWS) + [(t, (t,)) for t in other]
    scored = scored_counts(db)
    out: dict[str, dict[str, dict]] = {}
    for label, terms in rows_spec:
        in_list = ", ".join("'" + t.replace("'", "''") + "'" for t in terms)
        rows = db.rows(f"""WITH worst AS (
                               SELECT arm, subject, max(max_grade) AS grade FROM adverse_events
                               WHERE term IN ({in_list}) GROUP BY arm, subject)
                           SELECT arm, grade, count(*) AS n FROM worst GROUP BY arm, grade""")
        per_arm: dict[str, dict] = {}
        for arm in arms:
            counts = {g: 0 for g in GRADES}
            assessed = 0
            for r in rows:
                if r["arm"] == arm.id and r["grade"] is not None:
                    counts[int(r["grade"])] += r["n"]
                    assessed += r["n"]
            per_arm[arm.id] = {"grades": counts, "n": assessed, "scored": scored.get(arm.id, 0),
                               "assessed": bool(set(terms) & present)}
        out[label] = per_arm
    return out, other


def swimmer_lanes(db: Database, arm: Arm) -> list[dict]:
    patients = db.rows("""SELECT subject, first_day, last_day, remission_day, remission_lower_bound_day,
                                 bcell_aplasia_onset_day, bcell_return_day, crs_onset_day, crs_max
                          FROM patient_scores WHERE arm = ? ORDER BY subject""", [arm.id])
    events = db.rows("""SELECT subject, term, max_grade, day_of_max FROM adverse_events
                        WHERE arm = ? AND max_grade >= 3 AND day_of_max IS NOT NULL
                        ORDER BY subject, day_of_max""", [arm.id])
    by_subject: dict[str, list[dict]] = {}
    for e in events:
        by_subject.setdefault(e["subject"], []).append(e)
    for p in patients:
        p["events"] = by_subject.get(p["subject"], [])
    return patients


def aggregate(db: Database, protocol_arms: list[dict]) -> Aggregates:
    arms = arms_of(db, protocol_arms)
    scored = scored_counts(db)
    for arm in arms:
        arm.scored = scored.get(arm.id, 0)
    courses, source, note = time_courses(db)
    adverse, other = adverse_events(db, arms)
    agg = Aggregates(arms=arms, time_course=courses, sledai_source=source, sledai_note=note,
                     binary=binary_endpoints(db), continuous=continuous_endpoints(db),
                     time_to_event=time_to_event_endpoints(db), adverse=adverse, other_terms=other)
    agg.curves = curves(db)
    for arm in arms:
        if 0 < arm.scored <= SWIMMER_MAX_PATIENTS:
            agg.swimmer[arm.id] = swimmer_lanes(db, arm)
    return agg


def references(arms: list[Arm]) -> dict[str, str]:
    """Each arm's reference arm: the first arm of the run, or, when the arms span several products,
    the first arm of the arm's own product (so a product x regimen design compares regimens within
    each product: reduced vs Erlangen, none vs Erlangen when the Erlangen arm comes first)."""
    if not arms:
        return {}
    products = list(dict.fromkeys(a.product for a in arms))
    if len(products) < 2:
        return {a.id: arms[0].id for a in arms}
    first = {}
    for a in arms:
        first.setdefault(a.product, a.id)
    return {a.id: first[a.product] for a in arms}


def differences(agg: Aggregates) -> list[dict]:
    """Each arm against its reference arm (``references``): proportions and geometric-mean ratios."""
    if len(agg.arms) < 2:
        return []
    refs = references(agg.arms)
    out = []
    for arm in agg.arms:
        ref = refs[arm.id]
        if ref == arm.id:
            continue
        for b in reported("binary"):
            k1, n1 = agg.binary[b.key].get(arm.id, (0, 0))
            k0, n0 = agg.binary[b.key].get(ref, (0, 0))
            if n1 == 0 or n0 == 0:
                continue
            out.append({"arm": arm.id, "reference": ref, "endpoint": b.key, "label": b.label, "kind": "difference",
                        "interval": stats.newcombe_difference(k1, n1, k0, n0)})
        for label, per_arm in agg.adverse.items():
            a, r = per_arm[arm.id], per_arm[ref]
            if not (a["assessed"] and r["assessed"]) or a["n"] == 0 or r["n"] == 0:
                continue
            k1 = sum(v for g, v in a["grades"].items() if g >= 3)
            k0 = sum(v for g, v in r["grades"].items() if g >= 3)
            out.append({"arm": arm.id, "reference": ref, "endpoint": f"ae:{label}", "label": f"{label}, grade >= 3",
                        "kind": "difference", "interval": stats.newcombe_difference(k1, a["n"], k0, r["n"])})
        for c in reported("continuous"):
            if not c.ratio:
                continue
            s1, s0 = agg.continuous[c.key].get(arm.id), agg.continuous[c.key].get(ref)
            if not s1 or not s0:
                continue
            iv = stats.geometric_mean_ratio(s1["mean_log"], s1["var_log"], s1["n_pos"],
                                            s0["mean_log"], s0["var_log"], s0["n_pos"])
            if not math.isnan(iv.estimate):
                out.append({"arm": arm.id, "reference": ref, "endpoint": c.key, "label": f"{c.label} (geometric mean)",
                            "kind": "ratio", "interval": iv})
    return out


def manifest(run_dir: Path) -> dict:
    return RunDirectory(run_dir).manifest()
