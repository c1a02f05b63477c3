from pathlib import Path

import polars as pl

CASES = Path(__file__).parent / "cases"


def read_cases(name: str) -> list[dict]:
    return pl.read_csv(CASES / name, infer_schema=False).to_dicts()


def num(text):
    return None if text in (None, "", "NOLIMIT") else float(text)


def expected_grade(text):
    return None if text == "NA" else int(text)


