"""``cartwin validate-model``: run the suite (and the sensitivity table) and write the report."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from cartwin.validation import report
from cartwin.validation.suite import (DEFAULT_N, DEFAULT_SEED, Result, SuiteError, calibration_notes, load_suite,
                                      run_suite)


@dataclass(frozen=True)
class Outcome:
    results: list[Result]
    markdown: Path
    table: Path

    def summary(self) -> str:
        parts = []
        for label, c in report.summary_rows(self.results):
            parts.append(f"{label}: {c['pass']}/{c['total']} pass")
        return "; ".join(parts)


def validate_model(n: int = DEFAULT_N, seed: int = DEFAULT_SEED, out: Path = Path("runs/validation"),
                   only: list[str] | None = None, workers: int = 1, sensitivity: bool = True,
                   progress=None) -> Outcome:
    from cartwin.model import MODELS
    from cartwin.store.atomic import write_text

    out = Path(out)
    md, table = out / "validation.md", out / "validation_results.csv"
    foreign = report.foreign_files(md, table)
    if foreign:  # refused before the suite runs: a user's file of the same name is never replaced
        raise SuiteError(f"{foreign[0]}: names an existing file that is not an earlier report of "
                         "`cartwin validate-model`; choose another --out or remove it")
    suite = load_suite()
    results = run_suite(suite, n=n, seed=seed, only=only, workers=workers, progress=progress)
    rows = None
    if sensitivity:
        from cartwin.validation.sensitivity import run_sensitivity
        rows = run_sensitivity(suite, n, seed, workers, progress)
    model = MODELS["lupus_cart"]
    command = f"cartwin validate-model --n {n} --seed {seed}" + (f" --only {','.join(only)}" if only else "") + (
        "" if sensitivity else " --no-sensitivity") + f" --out {Path(out).as_posix()}"
    text = report.render(suite, results, n, seed, f"{model.name} {model.version}", command,
                         calibration_notes(suite), rows)
    out.mkdir(parents=True, exist_ok=True)
    write_text(md, text)
    report.write_csv(results, table)
    return Outcome(results, md, table)
