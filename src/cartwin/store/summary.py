"""Readable summaries of a run directory, computed in DuckDB (the run is never loaded whole)."""

from __future__ import annotations

from cartwin.store import layout
from cartwin.store.run_directory import RunDirectory

# Read-outs a reader of a CAR-T lupus run looks at first: (label, SQL over one patient's rows),
# shown when the run stores the test (a run of an imported SBML model names its own read-outs).
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
    endpoints = ("" if layout.is_imported_model(m["model"]) else "; endpoints of every patient: cartwin report")
    return (f"{m['study_id']}  (cartwin {m['cartwin_version']}, model {m['model']['name']} "
            f"{m['model']['version']}, seed {m['seed']}, protocol sha256 {m['protocol']['sha256'][:12]})\n"
            f"patients: {m['counts']['ok']} ok, {m['counts']['failed']} failed; solver {m['solver']['backend']} "
            f"rtol {m['solver']['rtol']:g}; {m['timings_s']['total']:.1f} s"
            + (f"\nobservations stored for the first {m['store']['observations_per_arm']} patients of each "
               f"arm (read-outs below summarise them){endpoints}"
               if m.get("store", {}).get("sampled") else ""))


GENERIC_READ_OUTS = 4  # an imported model's read-outs summarised by `cartwin show` (the rest: query the run)


def _generic_read_outs(con, tests: list[str]) -> dict[str, str]:
    """(label, SQL over one patient's rows) for the first few read-outs of a run whose tests are
    none of the lupus read-outs above (an imported SBML model's species): each one's peak and its
    value on the last day, in the model's own unit."""
    out = {}
    for test in tests[:GENERIC_READ_OUTS]:
        quoted = test.replace("'", "''")
        out[f"{test} peak"] = f"max(value) FILTER (WHERE test = '{quoted}')"
        out[f"{test} last"] = f"arg_max(value, day) FILTER (WHERE test = '{quoted}')"
    return out


def arm_summary(rd: RunDirectory) -> list[dict]:
    con = rd.connect()
    try:
        stored = {t for (t,) in con.execute("SELECT DISTINCT test FROM observations").fetchall()}
        shown = {label: sql for label, sql in _PER_PATIENT.items()
                 if sql.split("test = '")[1].split("'")[0] in stored}
        if not shown:  # an imported model's read-outs: the peak and the last value of each
            shown = _generic_read_outs(con, sorted(stored))
        columns = {c for (c, *_) in con.execute("DESCRIBE patients").fetchall()}
        # an imported model's run has no product or regimen: the model stands in for both
        product = "p.product" if "product" in columns else "p.model"
        regimen = "p.regimen" if "regimen" in columns else "'(model events)'"
        out = []
        rows = con.execute(
            f"SELECT p.arm, any_value({product}) AS product, any_value({regimen}) AS regimen, "
            "count(*) AS n, count(*) FILTER (WHERE p.status = 'failed') AS failed "
            "FROM patients p GROUP BY p.arm ORDER BY p.arm").fetchall()
        if shown:
            per_patient = ",\n".join(f'{sql} AS "{label}"' for label, sql in shown.items())
            con.execute(f"CREATE TEMP VIEW pp AS SELECT subject, any_value(arm) AS arm, {per_patient} "
                        "FROM observations GROUP BY subject")
            stats = ",\n".join(
                f'printf(\'%.3g [%.3g-%.3g]\', median("{l}"), quantile_cont("{l}", 0.05), '
                f'quantile_cont("{l}", 0.95)) AS "{l}"' for l in shown)
        for arm, product_name, regimen_name, n, failed in rows:
            row = {"arm": arm, "product": product_name, "regimen": regimen_name, "n": n, "failed": failed}
            if shown:
                vals = con.execute(f"SELECT {stats} FROM pp WHERE arm = ?", [arm]).fetchone()
                row.update(dict(zip(shown, vals)))
            out.append(row)
        return out
    finally:
        con.close()
