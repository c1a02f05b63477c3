"""Readable summaries of a run directory, computed in DuckDB (the run is never loaded whole)."""

from __future__ import annotations

from cartwin.store.run_directory import RunDirectory

# Read-outs a reader of a CAR-T lupus run looks at first: (label, SQL over one patient's rows).
_PER_PATIENT = {
    "CAR-T Cmax (cells/uL)": "max(value) FILTER (WHERE test = 'CART')",
    "CAR-T Tmax (day)": "arg_max(day, value) FILTER (WHERE test = 'CART' AND day >= 0)",
    "B-cell nadir (cells/uL)": "min(value) FILTER (WHERE test = 'BCELL' AND day >= 0)",
    "ANC nadir (10^9/L)": "min(value) FILTER (WHERE test = 'NEUT')",
    "ALC nadir (10^9/L)": "min(value) FILTER (WHERE test = 'LYM')",
    "anti-dsDNA last (IU/mL)": "arg_max(value, day) FILTER (WHERE test = 'DSDNA')",
    "C3 last (g/L)": "arg_max(value, day) FILTER (WHERE test = 'C3')",
    "IL-6 peak (pg/mL)": "max(value) FILTER (WHERE test = 'IL6')",
}


def run_header(rd: RunDirectory) -> str:
    m = rd.manifest()
    return (f"{m['study_id']}  (cartwin {m['cartwin_version']}, model {m['model']['name']} "
            f"{m['model']['version']}, seed {m['seed']}, protocol sha256 {m['protocol']['sha256'][:12]})\n"
            f"patients: {m['counts']['ok']} ok, {m['counts']['failed']} failed; solver {m['solver']['backend']} "
            f"rtol {m['solver']['rtol']:g}; {m['timings_s']['total']:.1f} s")


def arm_summary(rd: RunDirectory) -> list[dict]:
    con = rd.connect()
    try:
        per_patient = ",\n".join(f'{sql} AS "{label}"' for label, sql in _PER_PATIENT.items())
        con.execute(f"CREATE TEMP VIEW pp AS SELECT subject, any_value(arm) AS arm, {per_patient} "
                    "FROM observations GROUP BY subject")
        stats = ",\n".join(
            f'printf(\'%.3g [%.3g-%.3g]\', median("{l}"), quantile_cont("{l}", 0.05), '
            f'quantile_cont("{l}", 0.95)) AS "{l}"' for l in _PER_PATIENT)
        rows = con.execute(
            "SELECT p.arm, any_value(p.product) AS product, any_value(p.regimen) AS regimen, "
            "count(*) AS n, count(*) FILTER (WHERE p.status = 'failed') AS failed "
            "FROM patients p GROUP BY p.arm ORDER BY p.arm").fetchall()
        out = []
        for arm, product, regimen, n, failed in rows:
            vals = con.execute(f"SELECT {stats} FROM pp WHERE arm = ?", [arm]).fetchone()
            row = {"arm": arm, "product": product, "regimen": regimen, "n": n, "failed": failed}
            row.update(dict(zip(_PER_PATIENT, vals)))
            out.append(row)
        return out
    finally:
        con.close()
