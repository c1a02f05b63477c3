"""A documented subset of the SDTMIG 3.4 / ADaMIG 1.3 conformance rules, as data, and its checker.

The rules are rows of ``cdisc_rules.csv``: ``id`` (the CDISC conformance rule or FDA business rule
identifier where one exists, e.g. CG0014, FB0902; otherwise a short name), ``standard``,
``source`` (the CDISC CORE rule and the guide section it implements), the ``datasets`` it applies
to, a ``check`` kind with its ``variables`` and ``value``, and the rule ``text``. Each check kind is
one small function below; a rule of an unknown kind is an error, never silently skipped.

Why a subset and not the CDISC CORE rules engine itself: ``cdisc-rules-engine`` (PyPI) needs
Python 3.12 (cartwin supports 3.11), ships without its rules and standards metadata (they come
from the CDISC Library API, which needs an account key and the network), so it cannot run
offline from the package index. The rules here are re-implemented from the CORE rule
descriptions they cite; docs/interchange.md lists what is and is not covered.
"""

from __future__ import annotations

import csv
import re
from dataclasses import dataclass, field
from datetime import date
from functools import cache
from pathlib import Path

import polars as pl

RULES_FILE = Path(__file__).with_name("cdisc_rules.csv")

ISO_DATETIME = re.compile(r"^\d{4}(-\d{2}(-\d{2}(T\d{2}(:\d{2}(:\d{2}(\.\d+)?)?)?)?)?)?$")
ISO_DURATION = re.compile(r"^-?P(?!$)(\d+(\.\d+)?Y)?(\d+(\.\d+)?M)?(\d+(\.\d+)?W)?(\d+(\.\d+)?D)?"
                          r"(T(?=\d)(\d+(\.\d+)?H)?(\d+(\.\d+)?M)?(\d+(\.\d+)?S)?)?$")
TESTCD = re.compile(r"^[A-Za-z_][A-Za-z0-9_]{0,7}$")
GRADES = {"", "-4", "-3", "-2", "-1", "0", "1", "2", "3", "4", "5"}


@dataclass(frozen=True)
class Rule:
    id: str
    standard: str
    source: str
    datasets: tuple[str, ...]
    check: str
    variables: tuple[str, ...]
    value: str
    text: str


@dataclass
class Finding:
    rule: Rule
    dataset: str
    problems: list[str] = field(default_factory=list)

    def __str__(self) -> str:
        # six shown whole rather than "and 1 more", which hid a row check's own "... N more rows"
        shown = "; ".join(self.problems[:6] if len(self.problems) <= 6 else
                          [*self.problems[:5], f"and {len(self.problems) - 5} more"])
        return f"{self.rule.id} ({self.rule.standard}) {self.dataset}: {self.rule.text}: {shown}"


@cache
def rules() -> tuple[Rule, ...]:
    with RULES_FILE.open(newline="") as handle:
        return tuple(Rule(r["id"], r["standard"], r["source"], tuple(r["datasets"].split()), r["check"],
                          tuple(r["variables"].split()), r["value"], r["text"]) for r in csv.DictReader(handle))


def _text(frame: pl.DataFrame, column: str) -> pl.Series:
    """A column as text with '' for missing (CSV, XPORT and in-memory frames agree)."""
    series = frame[column]
    if series.dtype == pl.Date:
        series = series.dt.strftime("%Y-%m-%d")
    elif series.dtype.is_float():
        series = pl.Series(column, [None if v is None else (f"{v:g}" if v == v else None) for v in series.to_list()])
    return series.cast(pl.String).fill_null("")


def _rows(frame: pl.DataFrame, mask: pl.Series, columns: list[str], limit: int = 5) -> list[str]:
    key = [c for c in ("USUBJID",) if c in frame.columns] + columns
    bad = frame.with_row_index("_row", 1).filter(mask)
    return [f"row {r['_row']}: " + ", ".join(f"{c}={r[c]!r}" for c in key) for r in bad.head(limit).iter_rows(named=True)] + (
        [f"... {bad.height - limit} more rows"] if bad.height > limit else [])


def _pairs(variables: tuple[str, ...]) -> list[tuple[str, str]]:
    if all(":" in v for v in variables):
        return [tuple(v.split(":", 1)) for v in variables]
    return list(zip(variables[::2], variables[1::2]))


def _day_number(text: pl.Series) -> pl.Series:
    """Date portion of ISO 8601 text as a day count (null where the date is incomplete)."""
    out = []
    for v in text.to_list():
        try:
            out.append(date.fromisoformat(v[:10]).toordinal() if v and len(v) >= 10 else None)
        except ValueError:
            out.append(None)
    return pl.Series(out, dtype=pl.Int64)


def _comparable(frame: pl.DataFrame, column: str) -> pl.Series:
    series = frame[column]
    if series.dtype.is_numeric() or series.dtype == pl.Date:
        return series
    text = _text(frame, column)
    numeric = text.replace("", None).cast(pl.Float64, strict=False)
    if numeric.null_count() == (text == "").sum():
        return numeric
    return text.replace("", None)


def _check(rule: Rule, name: str, frame: pl.DataFrame, data: dict[str, pl.DataFrame]) -> list[str]:
    kind, variables = rule.check, list(rule.variables)
    # a rule over several domains names each domain's variables by its prefix (EXSTDTC, LBDTC ...)
    if len(rule.datasets) > 1 and all(any(v.startswith(d) for d in rule.datasets) for v in variables):
        variables = [v for v in variables if v.startswith(name)]
    problems: list[str] = []

    def present(columns) -> list[str]:
        return [c for c in columns if c in frame.columns]

    if kind == "present":
        return [f"variable {v} is missing" for v in variables if v not in frame.columns]
    needed = [part for v in variables if v != "*DTC" for part in v.split(":")]
    if kind == "one_flag" or kind == "unique":
        pass
    elif kind not in ("populated",) and any(v not in frame.columns for v in needed):
        return [f"variable {v} is missing (the check needs it)" for v in needed if v not in frame.columns]
    if kind == "populated":
        problems += [f"variable {v} is missing" for v in variables if v not in frame.columns]
        for v in present(variables):
            problems += _rows(frame, _text(frame, v) == "", [v])
        return problems
    if kind == "length_equal":
        for v in present(variables):
            problems += _rows(frame, _text(frame, v).str.len_chars() != int(rule.value), [v])
        return problems
    if kind == "max_length":
        for v in present(variables):
            problems += _rows(frame, _text(frame, v).str.len_chars() > int(rule.value), [v])
        return problems
    if kind == "domain_is_dataset":
        return _rows(frame, _text(frame, "DOMAIN") != name, ["DOMAIN"]) if "DOMAIN" in frame.columns else []
    if kind == "unique":
        if not all(v in frame.columns for v in variables):
            return [f"variables {variables} are not all present"]
        return _rows(frame, frame.select(variables).is_duplicated(), variables)
    if kind == "in_dm":
        known = set(_text(data["DM"], "USUBJID")) if "DM" in data else set()
        return _rows(frame, ~_text(frame, "USUBJID").is_in(list(known)), ["USUBJID"])
    if kind == "one_to_one":
        for a, b in _pairs(tuple(variables)):
            if a not in frame.columns or b not in frame.columns:
                continue
            pairs = pl.DataFrame({a: _text(frame, a), b: _text(frame, b)}).unique()
            for x, y in ((a, b), (b, a)):
                many = pairs.group_by(x).agg(pl.col(y).n_unique().alias("n"), pl.col(y)).filter(pl.col("n") > 1)
                problems += [f"{x}={k!r} has {y} values {sorted(vals)}" for k, _, vals in many.iter_rows()]
        return problems
    if kind == "testcd_format":
        for v in present(variables):
            problems += _rows(frame, ~_text(frame, v).str.contains(TESTCD.pattern), [v])
        return problems
    if kind == "non_negative":
        for v in present(variables):
            problems += _rows(frame, (_comparable(frame, v) < 0).fill_null(False), [v])
        return problems
    if kind == "integer":
        for v in present(variables):
            values = _comparable(frame, v).cast(pl.Float64)
            problems += _rows(frame, (values != values.round(0)).fill_null(False), [v])
        return problems
    if kind == "codelist":
        allowed = rule.value.split("|") + [""]
        for v in present(variables):
            problems += _rows(frame, ~_text(frame, v).is_in(allowed), [v])
        return problems
    if kind == "pattern":
        for v in present(variables):
            problems += _rows(frame, ~_text(frame, v).str.contains(rule.value), [v])
        return problems
    if kind == "equal":
        a, b = variables
        return _rows(frame, _text(frame, a) != _text(frame, b), [a, b]) if a in frame.columns and b in frame.columns else []
    if kind in ("iso8601", "iso8601_duration"):
        pattern = ISO_DATETIME if kind == "iso8601" else ISO_DURATION
        columns = [c for c in frame.columns if c.endswith("DTC")] if variables == ["*DTC"] else present(variables)
        for v in columns:
            text = _text(frame, v)
            matches = pl.Series([bool(pattern.match(t)) for t in text.to_list()], dtype=pl.Boolean)
            problems += _rows(frame, (text != "") & ~matches, [v])
        return problems
    if kind in ("not_after", "not_after_numeric"):
        for a, b in _pairs(tuple(variables)):
            if a in frame.columns and b in frame.columns:
                x, y = _comparable(frame, a), _comparable(frame, b)
                if x.dtype == pl.String or y.dtype == pl.String:
                    x, y = _day_number(_text(frame, a)), _day_number(_text(frame, b))
                problems += _rows(frame, (x > y).fill_null(False), [a, b])
        return problems
    if kind in ("study_day", "dy_when_dtc"):
        if kind == "study_day" and "DM" not in data:
            return ["DM is missing: no RFSTDTC to count study days from"]
        ref = (dict(zip(_text(data["DM"], "USUBJID"), _day_number(_text(data["DM"], "RFSTDTC")).to_list()))
               if "DM" in data else {})
        for dtc, dy in _pairs(tuple(variables)):
            if dtc not in frame.columns or dy not in frame.columns:
                continue
            when = _day_number(_text(frame, dtc))
            day = _comparable(frame, dy)
            if kind == "dy_when_dtc":
                problems += _rows(frame, when.is_not_null() & day.is_null(), [dtc, dy])
                continue
            start = pl.Series([ref.get(u) for u in _text(frame, "USUBJID")], dtype=pl.Int64)
            diff = when - start
            expected = pl.select(pl.when(diff >= 0).then(diff + 1).otherwise(diff)).to_series()
            bad = (when.is_not_null() & start.is_not_null()) & ((day.cast(pl.Float64) != expected.cast(pl.Float64)).fill_null(True))
            problems += _rows(frame, bad, [dtc, dy])
        return problems
    if kind == "rfx_matches_ex":
        if "EX" not in data:
            return []
        ex = data["EX"]
        if "EXSTDTC" not in ex.columns or "EXENDTC" not in ex.columns:
            return ["EX has no EXSTDTC/EXENDTC to compare with"]
        starts = pl.DataFrame({"USUBJID": _text(ex, "USUBJID"), "s": _text(ex, "EXSTDTC"),
                               "e": _text(ex, "EXENDTC")})
        ends = pl.concat([starts.select("USUBJID", pl.col("s").alias("t")), starts.select("USUBJID", pl.col("e").alias("t"))])
        first = dict(starts.group_by("USUBJID").agg(pl.col("s").filter(pl.col("s") != "").min()).iter_rows())
        last = dict(ends.filter(pl.col("t") != "").group_by("USUBJID").agg(pl.col("t").max()).iter_rows())
        subjects = _text(frame, "USUBJID").to_list()
        rfx_start, rfx_end = _text(frame, "RFXSTDTC").to_list(), _text(frame, "RFXENDTC").to_list()
        for s, a, b in zip(subjects, rfx_start, rfx_end):
            if s in first and (a != first[s] or b != last.get(s)):
                problems.append(f"{s}: RFXSTDTC={a!r} RFXENDTC={b!r}, EX runs {first[s]!r} to {last.get(s)!r}")
        return problems
    if kind == "outcome_end":
        outcome, when = rule.value.split("=")
        empty = _text(frame, "AEENDTC") == ""
        mask = (_text(frame, "AEOUT") == outcome) & (~empty if when == "empty" else empty)
        return _rows(frame, mask, ["AEOUT", "AEENDTC"])
    if kind == "serious_criteria":
        ser, *criteria = variables
        any_y = pl.any_horizontal([(_text(frame, c) == "Y") for c in criteria if c in frame.columns]) \
            if any(c in frame.columns for c in criteria) else pl.lit(False)
        flags = pl.select(any_y).to_series()
        return _rows(frame, (_text(frame, ser) == "N") & flags | (_text(frame, ser) == "Y") & ~flags, [ser, *criteria])
    if kind == "chronological_seq":
        seq, start = variables
        order = pl.DataFrame({"u": _text(frame, "USUBJID"), "q": _comparable(frame, seq).cast(pl.Int64),
                              "d": _text(frame, start)}).with_row_index("_row", 1)
        for u, group in order.filter(pl.col("d") != "").group_by("u"):
            by_seq = group.sort("q")["d"].to_list()
            if by_seq != sorted(by_seq):
                problems.append(f"{u[0]}: {seq} order is not the order of {start}")
        return problems
    if kind == "stresc_stresn":
        c, n = variables
        text, number = _text(frame, c), _comparable(frame, n).cast(pl.Float64)
        parsed = text.replace("", None).cast(pl.Float64, strict=False)
        # equal up to the XPORT (IBM 370 double) round trip
        bad = parsed.is_not_null() & (number.is_null() | ((parsed - number).abs() > 1e-12 * number.abs()))
        return _rows(frame, bad.fill_null(False), [c, n])
    if kind == "one_flag":
        flag, *key = variables
        if not all(k in frame.columns for k in [flag, *key]):
            return [f"variables {[flag, *key]} are not all present"]
        keys = pl.DataFrame({k: _text(frame, k) for k in key}).with_columns(flag=_text(frame, flag))
        many = keys.filter(pl.col("flag") == "Y").group_by(key).len().filter(pl.col("len") > 1)
        return [f"{dict(zip(key, r[:-1]))}: {r[-1]} records flagged" for r in many.iter_rows()]
    if kind == "lobxfl_before_exposure":
        if "DM" not in data or "RFXSTDTC" not in data["DM"].columns:
            return []
        first = dict(zip(_text(data["DM"], "USUBJID"), _text(data["DM"], "RFXSTDTC")))
        lb = pl.DataFrame({"u": _text(frame, "USUBJID"), "t": _text(frame, "LBTESTCD"),
                           "s": _text(frame, "LBSPEC") if "LBSPEC" in frame.columns else pl.Series([""] * frame.height),
                           "d": _text(frame, "LBDTC"), "f": _text(frame, "LBLOBXFL"), "r": _text(frame, "LBSTRESC")})
        lb = lb.with_columns(pl.col("u").replace_strict(first, default="").alias("x"))
        lb = lb.filter((pl.col("x") != "") & (pl.col("d") != "") & (pl.col("r") != ""))
        eligible = lb.filter(pl.col("d").str.slice(0, 10) <= pl.col("x").str.slice(0, 10))
        expected = eligible.filter(pl.col("d") == pl.col("d").max().over(["u", "t", "s"]))
        flagged = lb.filter(pl.col("f") == "Y")
        for row in flagged.join(expected, on=["u", "t", "s", "d"], how="anti").head(5).iter_rows(named=True):
            problems.append(f"{row['u']} {row['t']}: flagged {row['d']} is not the last result before {row['x']}")
        for row in expected.join(flagged, on=["u", "t", "s"], how="anti").head(5).iter_rows(named=True):
            problems.append(f"{row['u']} {row['t']}: result of {row['d']} before exposure is not flagged")
        return problems
    if kind == "numeric_date":
        return [f"{v} is {frame.schema[v]}, not a numeric date" for v in present(variables)
                if not (frame.schema[v] == pl.Date or frame.schema[v].is_numeric())]
    if kind == "same_subjects_as_dm":
        dm = set(_text(data["DM"], "USUBJID")) if "DM" in data else set()
        mine = _text(frame, "USUBJID").to_list()
        return ([f"duplicate subjects {sorted({u for u in mine if mine.count(u) > 1})[:5]}"] if len(set(mine)) != len(mine) else []) + \
            ([f"subjects differ from DM: {sorted(dm ^ set(mine))[:5]}"] if dm and dm != set(mine) else [])
    if kind == "trt_from_adsl":
        if "ADSL" not in data:
            return ["ADSL is missing"]
        adsl = data["ADSL"]
        planned = dict(zip(_text(adsl, "USUBJID"), _text(adsl, "TRT01P")))
        actual = dict(zip(_text(adsl, "USUBJID"), _text(adsl, "TRT01A")))
        subjects = _text(frame, "USUBJID")
        bad = (_text(frame, "TRTP") != subjects.replace_strict(planned, default="")) | \
              (_text(frame, "TRTA") != subjects.replace_strict(actual, default=""))
        return _rows(frame, bad, ["TRTP", "TRTA"])
    if kind == "base_chg":
        aval, base, chg, ablfl = variables
        a, b, c = (_comparable(frame, v).cast(pl.Float64) for v in (aval, base, chg))
        flagged = _text(frame, ablfl) == "Y"
        bad_base = flagged & ((a - b).abs() > 1e-9 * a.abs().clip(1.0)).fill_null(True)
        bad_chg = b.is_not_null() & ((c - (a - b)).abs() > 1e-9 * a.abs().clip(1.0)).fill_null(True)
        return _rows(frame, bad_base | bad_chg, [aval, base, chg, ablfl])
    if kind == "baseline_copy":
        key = ["USUBJID", "PARAMCD"]
        for source, copy in _pairs(tuple(variables)):
            if source not in frame.columns or copy not in frame.columns:
                problems.append(f"{source} or {copy} is missing")
                continue
            f = pl.DataFrame({k: _text(frame, k) for k in key}).with_columns(
                s=_text(frame, source), c=_text(frame, copy), flag=_text(frame, "ABLFL"))
            base = f.filter(pl.col("flag") == "Y").select(*key, pl.col("s").alias("b"))
            joined = f.join(base, on=key, how="left").with_columns(pl.col("b").fill_null(""))
            problems += _rows(frame, (joined["c"] != joined["b"]), [source, copy])
        return problems
    if kind == "character_grade":
        for v in present(variables):
            if frame.schema[v] != pl.String:
                problems.append(f"{v} is {frame.schema[v]}, not character")
            else:
                problems += _rows(frame, ~_text(frame, v).is_in(list(GRADES)), [v])
        return problems
    if kind == "same_baseline_as_lb":
        if "LB" not in data:
            return ["LB is missing"]
        lb = data["LB"]
        lb_flags = set(zip(_text(lb, "USUBJID"), _comparable(lb, "LBSEQ").cast(pl.Int64).to_list(), _text(lb, "LBLOBXFL")))
        mine = set(zip(_text(frame, "USUBJID"), _comparable(frame, "SRCSEQ").cast(pl.Int64).to_list(), _text(frame, "ABLFL")))
        lb_y = {(u, s) for u, s, f in lb_flags if f == "Y"}
        ad_y = {(u, s) for u, s, f in mine if f == "Y"}
        return [f"LB record {u} LBSEQ {s} is flagged in one and not the other" for u, s in sorted(lb_y ^ ad_y)[:10]]
    raise ValueError(f"{RULES_FILE.name}: rule {rule.id} has an unknown check kind {kind!r}")


def check_conformance(datasets: dict[str, pl.DataFrame]) -> list[Finding]:
    """Every rule of ``cdisc_rules.csv`` on every dataset it names that is present; the findings
    (empty when the datasets conform to this subset)."""
    findings = []
    for rule in rules():
        for name in rule.datasets:
            if name not in datasets:
                continue
            problems = _check(rule, name, datasets[name], datasets)
            if problems:
                findings.append(Finding(rule, name, problems))
    return findings


def read_xpt_datasets(directory: str | Path) -> dict[str, pl.DataFrame]:
    """The SAS XPORT datasets of an export directory, as a reviewer's tools read them."""
    import pyreadstat
    return {p.stem.upper(): pyreadstat.read_xport(str(p), output_format="polars")[0]
            for p in sorted(Path(directory).glob("*.xpt"))}
