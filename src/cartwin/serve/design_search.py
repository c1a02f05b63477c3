"""Checking a design spec as ``cartwin design SPEC --check`` checks a file, and reading a finished
design search for the page.

A spec names its protocol file (``protocol = "NAME"``, relative to the spec). A request must reach
no file outside the app's run folder, so in the app that name is looked up among the protocols the
app holds, never on the disk: the protocol in the editor (under its file name, the one the Design
page shows) and the bundled examples (:data:`BUNDLED_PROTOCOLS`). A name with a folder in it is
refused, naming the field. The spec is then read with :func:`cartwin.design.parse_spec` against a
private temporary folder holding that one protocol, so the messages are the command's own
(``error: SPEC: FIELD: ...``), with the temporary folder taken out of them.

What a finished search shows (:func:`result`) is read from what :func:`cartwin.design.write_design`
wrote: ``design.json`` (the answer, its margin, the trial-level answers, the sensitivity, the search
trace) and ``points.csv`` (each evaluated design point with its estimates and intervals).
"""

from __future__ import annotations

import math
import tempfile
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cartwin.serve.design import safe_name

MAX_SPEC_BYTES = 64 * 1024
DEFAULT_SPEC_SOURCE = "design.toml"  # the name of a spec typed into the page
EXAMPLE_SPEC = "design_least_ld.toml"
BUNDLED_PROTOCOLS = ("nct05988216.toml", "nct05988216_expansion.toml")
DOWNLOADS = {
    "report": ("design.html", "text/html", "the design report (figures inline)"),
    "json": ("design.json", "application/json", "every number of the answer and the search"),
    "points": ("points.csv", "text/csv", "each evaluated design point with its estimates and 95% intervals"),
    "outcomes": ("outcomes.parquet", "application/vnd.apache.parquet",
                 "per virtual patient and design point, the endpoint values"),
}


@dataclass
class SpecCheck:
    source: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    design_id: str = ""
    protocol_name: str = ""
    protocol_text: str = ""
    summary: str = ""

    def message(self) -> str:
        """What ``cartwin design SPEC --check`` prints: ``ok SPEC: design ID`` or ``error: SPEC: ...``."""
        if self.ok:
            return f"ok {self.source}: design {self.design_id}"
        head = f"error: {self.source}: "
        return head + (self.problems[0] if len(self.problems) == 1 else "\n  " + "\n  ".join(self.problems))

    def as_json(self) -> dict:
        return {"ok": self.ok, "problems": self.problems, "message": self.message(), "source": self.source,
                "protocol": self.protocol_name, "summary": self.summary}


def example_spec() -> str:
    """The bundled example spec (examples/design_least_ld.toml, packaged beside the app)."""
    return resources.files("cartwin.serve").joinpath("examples", EXAMPLE_SPEC).read_text()


def protocols(editor_text: str, editor_source: str) -> dict[str, str]:
    """The protocols a spec may name in the app: the bundled examples, and the editor's protocol
    under its file name (which wins over a bundled example of the same name: it is what the page
    shows)."""
    held = {name: resources.files("cartwin.serve").joinpath("examples", name).read_text()
            for name in BUNDLED_PROTOCOLS}
    held[safe_name(editor_source)] = editor_text
    return held


def check_spec(text: str, source: str, editor_text: str, editor_source: str) -> SpecCheck:
    """Check a spec text as ``cartwin design SOURCE --check`` would check the same file, its
    protocol being one the app holds (:func:`protocols`)."""
    from pydantic import ValidationError

    from cartwin.design import DesignSpecError, parse_spec
    from cartwin.design.spec import DesignSpec
    from cartwin.protocol.load import SBML_PREFIX

    source = safe_name(source, DEFAULT_SPEC_SOURCE)
    if len(text.encode()) > MAX_SPEC_BYTES:
        return SpecCheck(source, False, [f"the design spec is larger than {MAX_SPEC_BYTES // 1024} KiB; "
                                         "a spec is a few KiB"])
    try:
        raw = tomllib.loads(text)
        DesignSpec.model_validate(raw)
    except (tomllib.TOMLDecodeError, ValidationError):
        # the spec's own fields are wrong: the command's messages, before any protocol is looked for
        try:
            parse_spec(text, source)
        except DesignSpecError as exc:
            return SpecCheck(source, False, list(exc.problems))
        raise  # pragma: no cover - parse_spec refuses what the model refuses
    name = raw["protocol"]
    held = protocols(editor_text, editor_source)
    choices = (f"the protocol in the editor ({safe_name(editor_source)}) or a bundled example "
               f"({', '.join(n for n in BUNDLED_PROTOCOLS if n != safe_name(editor_source))})")
    if Path(name).name != name or "\\" in name or name in (".", ".."):
        return SpecCheck(source, False, [f"protocol: {name!r} names a folder; in the web app a design names, by "
                                         f"its file name alone, {choices}"])
    if name not in held:
        return SpecCheck(source, False, [f"protocol: no protocol {name!r} here; in the web app a design names "
                                         f"{choices}"])
    protocol_text = held[name]
    try:
        model = str(tomllib.loads(protocol_text).get("model", ""))
    except tomllib.TOMLDecodeError:
        model = ""
    if model.startswith(SBML_PREFIX):
        return SpecCheck(source, False, [f"protocol: {name} uses an imported model; a design needs cartwin's own "
                                         "model and a population"], protocol_name=name)
    with tempfile.TemporaryDirectory(prefix="cartwin-serve-design-") as tmp:
        (Path(tmp) / name).write_text(protocol_text)
        try:
            loaded = parse_spec(text, source, Path(tmp))
        except DesignSpecError as exc:
            problems = [p.replace(str(Path(tmp).resolve()) + "/", "").replace(tmp + "/", "") for p in exc.problems]
            return SpecCheck(source, False, problems, protocol_name=name)
    spec = loaded.spec
    summary = (f"{len(spec.space.products)} product(s) x {len(spec.space.doses)} dose(s), "
               f"{spec.space.intensity_levels} intensity levels, {spec.patients} patients per design point, "
               f"protocol {name}")
    return SpecCheck(source, True, [], spec.design_id, name, protocol_text, summary)


def _finite(x):
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def result(design_dir: Path) -> dict:
    """What the page shows of a finished design search: ``design.json`` as written, and the
    evaluated design points of ``points.csv`` (the search's own points, without parameter
    factors) for the charts."""
    import json

    import polars as pl

    summary = json.loads((design_dir / "design.json").read_text())
    points = pl.read_csv(design_dir / "points.csv", infer_schema_length=None)
    if "parameters" in points.columns:
        points = points.filter(pl.col("parameters").cast(pl.String).fill_null("") == "")
    rows = [{k: _finite(v) for k, v in row.items()} for row in points.to_dicts()]
    from cartwin.endpoints import definitions

    labels = {e.key: e.label for e in definitions().endpoints}
    return {"summary": summary, "points": rows, "labels": labels}
