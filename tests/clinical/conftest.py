import polars as pl
import pytest


@pytest.fixture
def obs_frame():
    """Build a canonical observation frame from (subject, day, test, value, unit[, lower, upper, cause]) rows."""
    from cartwin.clinical.observations import validate

    def build(rows: list[dict]) -> pl.DataFrame:
        raw = pl.DataFrame(
            [{"subject": r.get("subject", "S1"), "day": str(r["day"]), "test": r["test"],
              "value": "" if r.get("value") is None else str(r["value"]), "unit": r.get("unit", ""),
              "lower": "" if r.get("lower") is None else str(r["lower"]),
              "upper": "" if r.get("upper") is None else str(r["upper"]),
              "cause": r.get("cause") or ""} for r in rows],
            schema={k: pl.String for k in ("subject", "day", "test", "value", "unit", "lower", "upper", "cause")})
        frame, _ = validate(raw, "test.csv")
        return frame

    return build
