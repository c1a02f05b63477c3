"""Everything the report shows, aggregated in DuckDB over the run's Parquet parts and the score parts.

Nothing here loads a whole run: quantiles over time are computed per arm, test and day in SQL, and
the per-patient tables are reduced to counts and summaries per arm before they reach Python. The
only per-patient rows fetched are those of the swimmer plot, for arms of at most
``SWIMMER_MAX_PATIENTS`` patients.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import duckdb

from cartwin.report import stats
from cartwin.report.scores import REMISSION_PGA_BELOW
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


@dataclass(frozen=True)
class Binary:
    key: str
    label: str
    success: str  # SQL over the per-patient score table
    evaluable: str
    note: str = ""


@dataclass(frozen=True)
class Continuous:
    key: str
    label: str
    column: str
    unit: str
    where: str = "TRUE"
    ratio: bool = False  # also compare arms by the ratio of geometric means


def _remission(month: int, day: int, bound: bool) -> Binary:
    column = "remission_lower_bound_day" if bound else "remission_day"
    evaluable = "last_sledai_day IS NOT NULL" if bound else "selena_evaluable_visits > 0"
    label = (f"SELENA-SLEDAI lower bound 0 and PGA < {REMISSION_PGA_BELOW:g} by month {month} (day {day})" if bound
             else f"SELENA-SLEDAI 0 and PGA < {REMISSION_PGA_BELOW:g} by month {month} (day {day})")
    note = ("descriptors the run never records taken as absent" if bound
            else "patients with at least one fully evaluable SELENA-SLEDAI after baseline; never reached = non-responder")
    return Binary(f"remission_m{month}{'_lb' if bound else ''}", label,
                  f"{column} <= {day}", evaluable, note)


BINARY = (
    _remission(3, 90, False), _remission(6, 180, False),
    _remission(3, 90, True), _remission(6, 180, True),
    Binary("sri4", "SRI-4 at the last visit", "sri4_last_visit IS TRUE", "sri4_last_visit IS NOT NULL",
           "SLEDAI missing at the visit = non-responder (clinical layer)"),
    Binary("doris", "DORIS remission at any visit", "doris_remission_ever IS TRUE", "doris_remission_ever IS NOT NULL"),
    Binary("lldas", "LLDAS at any visit", "lldas_ever IS TRUE", "lldas_ever IS NOT NULL"),
    Binary("c3_normalised", "C3 normalised at the last measurement", "c3_normalised IS TRUE",
           "c3_normalised IS NOT NULL", "patients with low C3 at baseline"),
    Binary("c4_normalised", "C4 normalised at the last measurement", "c4_normalised IS TRUE",
           "c4_normalised IS NOT NULL", "patients with low C4 at baseline"),
    Binary("dsdna_seroconverted", "Anti-dsDNA seroconversion at the last measurement", "dsdna_seroconverted IS TRUE",
           "dsdna_seroconverted IS NOT NULL", "patients anti-dsDNA positive at baseline"),
    Binary("bcell_aplasia", "B-cell aplasia", "bcell_aplasia IS TRUE", "bcell_aplasia IS NOT NULL"),
)

CONTINUOUS = (
    Continuous("bcell_aplasia_days", "B-cell aplasia duration", "bcell_aplasia_days", "days", "bcell_aplasia IS TRUE"),
    Continuous("cart_cmax", "CAR-T Cmax", "cart_cmax", "cells/uL", ratio=True),
    Continuous("cart_tmax", "CAR-T Tmax", "cart_tmax", "day"),
    Continuous("cart_auc_0_28", "CAR-T AUC 0-28", "cart_auc_0_28", "cells/uL x day", ratio=True),
)

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
    adverse: dict[str, dict[str, dict]]  # AE row -> arm -> {grades: {g: count}, n, not_evaluable}
    other_terms: list[str]
    swimmer: dict[str, list[dict]] = field(default_factory=dict)  # arm -> patient lanes


class Database:
    """An in-memory DuckDB over the run's Parquet parts and its score parts."""

    def __init__(self, run_dir: Path, threads: int | None = None):
        self.con = duckdb.connect()
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
            self.con.execute(f"CREATE VIEW {name} AS SELECT * FROM read_parquet('{pattern}', union_by_name = true)")

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


def binary_endpoints(db: Database) -> dict[str, dict[str, tuple[int, int]]]:
    cols = []
    for b in BINARY:
        cols.append(f'count(*) FILTER (WHERE ({b.evaluable}) AND ({b.success})) AS "{b.key}__k"')
        cols.append(f'count(*) FILTER (WHERE {b.evaluable}) AS "{b.key}__n"')
    rows = db.rows(f"SELECT arm, count(*) AS scored, {', '.join(cols)} FROM patient_scores GROUP BY arm")
    out: dict[str, dict[str, tuple[int, int]]] = {b.key: {} for b in BINARY}
    for r in rows:
        for b in BINARY:
            out[b.key][r["arm"]] = (int(r[f"{b.key}__k"]), int(r[f"{b.key}__n"]))
    return out


def lower_bound_needed(binary: dict[str, dict[str, tuple[int, int]]]) -> bool:
    """The lower-bound remission rows say something only where some patient lacks a full SELENA-SLEDAI."""
    return any(binary[f"{key}_lb"].get(arm, (0, 0))[1] > n
               for key in ("remission_m3", "remission_m6") for arm, (_, n) in binary[key].items()) or any(
        arm not in binary[key] for key in ("remission_m3", "remission_m6") for arm in binary[f"{key}_lb"])


def scored_counts(db: Database) -> dict[str, int]:
    return {r["arm"]: int(r["n"]) for r in db.rows("SELECT arm, count(*) AS n FROM patient_scores GROUP BY arm")}


def continuous_endpoints(db: Database) -> dict[str, dict[str, dict]]:
    out: dict[str, dict[str, dict]] = {}
    for c in CONTINUOUS:
        x = c.column
        rows = db.rows(f"""SELECT arm, count({x}) AS n, median({x}) AS median,
                                  quantile_cont({x}, 0.25) AS q25, quantile_cont({x}, 0.75) AS q75,
                                  min({x}) AS min, max({x}) AS max,
                                  count({x}) FILTER (WHERE {x} > 0) AS n_pos,
                                  avg(ln({x})) FILTER (WHERE {x} > 0) AS mean_log,
                                  var_samp(ln({x})) FILTER (WHERE {x} > 0) AS var_log
                           FROM patient_scores WHERE {c.where} GROUP BY arm""")
        out[c.key] = {r["arm"]: r for r in rows}
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
                     adverse=adverse, other_terms=other)
    for arm in arms:
        if 0 < arm.scored <= SWIMMER_MAX_PATIENTS:
            agg.swimmer[arm.id] = swimmer_lanes(db, arm)
    return agg


def differences(agg: Aggregates) -> list[dict]:
    """Each arm against the first (the reference): proportions and geometric-mean ratios."""
    if len(agg.arms) < 2:
        return []
    ref = agg.arms[0].id
    out = []
    for arm in agg.arms[1:]:
        for b in BINARY:
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
        for c in CONTINUOUS:
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
