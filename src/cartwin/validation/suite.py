"""The validation suite: load the targets and scenarios, simulate each scenario once, compute each
target's statistic and score it against its published range.

``targets.toml`` and ``scenarios.toml`` beside this module are the suite (data, versioned with the
code); ``run_suite`` returns one :class:`Result` per target and ``write_report`` writes the
generated ``validation.md``.
"""

from __future__ import annotations

import math
import tomllib
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from cartwin.validation import statistics as st

DEFAULT_N = 200
DEFAULT_SEED = 20260201
CALIBRATION_VALUES = ("yes", "no", "informed")
REQUIRED_FIELDS = ("id", "description", "source", "evidence", "origin", "scenario", "statistic", "range",
                   "unit", "range_basis", "calibration")
EVIDENCE = ("V", "V-sec", "R", "I")


class SuiteError(ValueError):
    """A malformed targets or scenarios file; the message names the file, the row and the field."""


@dataclass(frozen=True)
class Scenario:
    id: str
    description: str
    population: str
    follow_up_days: float
    arms: tuple[dict, ...]
    products: dict = field(default_factory=dict)
    regimens: dict = field(default_factory=dict)

    def protocol_dict(self, suite: "Suite", n: int, seed: int) -> dict:
        arms = [{**arm, "n": n} for arm in self.arms]
        return {"schema_version": 1, "study_id": f"validation-{self.id}", "title": self.description,
                "seed": seed, "follow_up_days": self.follow_up_days,
                "schedule": {"days": [d for d in suite.schedule if d <= self.follow_up_days]},
                "population": suite.populations[self.population], "arms": arms,
                "products": self.products, "regimens": self.regimens}


@dataclass(frozen=True)
class Target:
    id: str
    description: str
    source: str
    evidence: str
    origin: str
    scenario: str
    statistic: str
    params: dict
    low: float
    high: float
    unit: str
    range_basis: str
    calibrated: bool
    calibrated_by: tuple[str, ...] = ()
    arms: tuple[str, ...] = ()
    informed_by: str = ""
    """A held-out target whose failure prompted a change of the model's structure, though no
    parameter was set to its number (``calibration = "informed"``): what the change was. Its pass
    is weaker evidence than that of a target the model never looked at."""

    @property
    def role(self) -> str:
        """"calibrated", "informed" or "held out"."""
        return "calibrated" if self.calibrated else "informed" if self.informed_by else "held out"


@dataclass(frozen=True)
class Suite:
    version: str
    targets: tuple[Target, ...]
    scenarios: dict[str, Scenario]
    populations: dict[str, dict]
    schedule: tuple[float, ...]


def _read(path: Path | None, name: str) -> tuple[str, dict]:
    if path is None:
        text = resources.files("cartwin.validation").joinpath(name).read_text()
        where = f"cartwin/validation/{name}"
    else:
        where = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise SuiteError(f"{where}: cannot read the file: {exc}") from None
    try:
        return where, tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise SuiteError(f"{where}: not valid TOML: {exc}") from None


def load_suite(targets_path: Path | None = None, scenarios_path: Path | None = None) -> Suite:
    """Read and check both files. Every problem is reported at once, each naming its row and field."""
    swhere, sdata = _read(scenarios_path, "scenarios.toml")
    twhere, tdata = _read(targets_path, "targets.toml")
    problems: list[str] = []
    populations = sdata.get("populations", {})
    schedule = tuple(float(d) for d in sdata.get("schedule", {}).get("days", []))
    if not schedule:
        problems.append(f"{swhere}: [schedule] days is missing or empty")
    scenarios = {}
    for sid, s in sdata.get("scenarios", {}).items():
        where = f"{swhere}: scenarios.{sid}"
        missing = [f for f in ("description", "population", "follow_up_days", "arms") if f not in s]
        if missing:
            problems.append(f"{where}: missing {missing}")
            continue
        if s["population"] not in populations:
            problems.append(f"{where}.population: unknown population {s['population']!r}; known: {sorted(populations)}")
        unknown = sorted(set(s) - {"description", "population", "follow_up_days", "arms", "products", "regimens"})
        if unknown:
            problems.append(f"{where}: unknown fields {unknown}")
        ids = [a.get("id") for a in s["arms"]]
        if not ids or None in ids or len(set(ids)) != len(ids):
            problems.append(f"{where}.arms: every arm needs a distinct id")
        scenarios[sid] = Scenario(sid, s["description"], s["population"], float(s["follow_up_days"]),
                                  tuple(s["arms"]), s.get("products", {}), s.get("regimens", {}))
    targets = []
    seen = set()
    for i, t in enumerate(tdata.get("target", [])):
        where = f"{twhere}: target[{i}] ({t.get('id', '?')})"
        missing = [f for f in REQUIRED_FIELDS if f not in t or t[f] in ("", None)]
        if missing:
            problems.append(f"{where}: missing {missing}")
            continue
        unknown = sorted(set(t) - set(REQUIRED_FIELDS) - {"params", "calibrated_by", "informed_by", "arms"})
        if unknown:
            problems.append(f"{where}: unknown fields {unknown}")
        if t["id"] in seen:
            problems.append(f"{where}.id: used twice")
        seen.add(t["id"])
        if t["calibration"] not in CALIBRATION_VALUES:
            problems.append(f"{where}.calibration: {t['calibration']!r}; use 'yes', 'no' or 'informed'")
        if t["calibration"] == "yes" and not t.get("calibrated_by"):
            problems.append(f"{where}.calibrated_by: a calibrated target names the parameters it set")
        if t["calibration"] == "informed" and not t.get("informed_by"):
            problems.append(f"{where}.informed_by: a target that informed the model says which change it prompted")
        if t["evidence"] not in EVIDENCE:
            problems.append(f"{where}.evidence: {t['evidence']!r}; use one of {list(EVIDENCE)}")
        rng = t["range"]
        if not (isinstance(rng, list) and len(rng) == 2 and all(isinstance(x, (int, float)) for x in rng)
                and rng[0] <= rng[1]):
            problems.append(f"{where}.range: {rng!r}; give [low, high] with low <= high")
            continue
        if t["statistic"] not in st.STATISTICS:
            problems.append(f"{where}.statistic: unknown {t['statistic']!r}; known: {sorted(st.STATISTICS)}")
        scenario = scenarios.get(t["scenario"])
        if scenario is None:
            problems.append(f"{where}.scenario: unknown {t['scenario']!r}; known: {sorted(scenarios)}")
            continue
        arm_ids = [a["id"] for a in scenario.arms]
        arms = tuple(t.get("arms", arm_ids[:1]))
        needed = 2 if t["statistic"] in st.TWO_ARM else 1
        if len(arms) != needed or any(a not in arm_ids for a in arms):
            problems.append(f"{where}.arms: {list(arms)}; statistic {t['statistic']} needs {needed} arm(s) of "
                            f"scenario {t['scenario']} ({arm_ids})")
        targets.append(Target(t["id"], t["description"], t["source"], t["evidence"], str(t["origin"]),
                              t["scenario"], t["statistic"], dict(t.get("params", {})), float(rng[0]),
                              float(rng[1]), t["unit"], t["range_basis"], t["calibration"] == "yes",
                              tuple(t.get("calibrated_by", ())), arms, str(t.get("informed_by", ""))))
    if not targets and not problems:
        problems.append(f"{twhere}: no [[target]] rows")
    if problems:
        raise SuiteError("the validation suite is malformed:\n  " + "\n  ".join(problems))
    return Suite(str(tdata.get("version", "?")), tuple(targets), scenarios, populations, schedule)


# --- running ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Result:
    target: Target
    status: str  # "pass", "fail", "not evaluable", "not simulable"
    estimate: st.Estimate | None
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == "pass"


@dataclass(frozen=True)
class ScenarioRun:
    arms: dict[str, st.ArmData] | None
    error: str = ""
    failed: int = 0
    simulated: int = 0


def simulate_scenario(suite: Suite, scenario: Scenario, n: int, seed: int, workers: int = 1) -> ScenarioRun:
    """Simulate and score one scenario; a scenario the model or catalogue cannot express (unknown
    product, for one) comes back with the protocol's own message instead of arms."""
    from cartwin.protocol import ProtocolError, parse_protocol
    from cartwin.run import simulate

    try:
        protocol = parse_protocol(scenario.protocol_dict(suite, n, seed), f"validation scenario {scenario.id}")
    except ProtocolError as exc:
        return ScenarioRun(None, "; ".join(exc.problems))
    sim = simulate(protocol, n_per_arm=n, seed=seed, workers=workers)
    failed = sim.patients.filter(sim.patients["status"] == "failed").height
    if sim.observations.height == 0:
        return ScenarioRun(None, "every patient failed to solve", failed, sim.patients.height)
    arms = st.score_arms(sim.observations, f"validation scenario {scenario.id}")
    for arm in scenario.arms:
        if arm["id"] in arms:
            arms[arm["id"]].dose_cells_per_kg = arm.get("dose", {}).get("cells_per_kg")
            arms[arm["id"]].n_failed = sim.patients.filter((sim.patients["arm"] == arm["id"])
                                                           & (sim.patients["status"] == "failed")).height
    return ScenarioRun(arms, "", failed, sim.patients.height)


def evaluate(target: Target, run: ScenarioRun) -> Result:
    if run.arms is None:
        return Result(target, "not simulable", None, run.error)
    missing = [a for a in target.arms if a not in run.arms]
    if missing:
        return Result(target, "not evaluable", None, f"no solved patients in arm(s) {missing}")
    try:
        est = st.compute(target.statistic, [run.arms[a] for a in target.arms], target.params)
    except st.NotEvaluable as exc:
        return Result(target, "not evaluable", None, str(exc))
    ok = math.isfinite(est.value) and target.low <= est.value <= target.high or (
        math.isinf(est.value) and math.isinf(target.high) and est.value > 0)
    return Result(target, "pass" if ok else "fail", est)


def run_suite(suite: Suite, n: int = DEFAULT_N, seed: int = DEFAULT_SEED, only: list[str] | None = None,
              workers: int = 1, progress=None) -> list[Result]:
    targets = list(suite.targets)
    if only:
        unknown = sorted(set(only) - {t.id for t in targets})
        if unknown:
            import difflib  # noqa: PLC0415
            ids = [t.id for t in targets]
            close = {u: difflib.get_close_matches(u, ids, n=1, cutoff=0.6) for u in unknown}
            hints = "; ".join(f"{u!r}: did you mean {c[0]!r}?" for u, c in close.items() if c)
            raise SuiteError(f"--only: unknown target ids {unknown}" + (f" ({hints})" if hints else "")
                             + f"; the suite's {len(ids)} targets are listed in docs/validation.md "
                             f"(ids: {', '.join(ids)})")
        targets = [t for t in targets if t.id in only]
    results = []
    needed = list(dict.fromkeys(t.scenario for t in targets))
    for i, sid in enumerate(needed):
        if progress:
            progress(f"scenario {i + 1}/{len(needed)}: {sid}")
        run = simulate_scenario(suite, suite.scenarios[sid], n, seed, workers)
        results += [evaluate(t, run) for t in targets if t.scenario == sid]
    order = {t.id: i for i, t in enumerate(targets)}
    return sorted(results, key=lambda r: order[r.target.id])


def calibration_notes(suite: Suite, model_name: str = "lupus_cart") -> list[str]:
    """Calibrated targets whose named parameters the current model no longer has: after a model
    change their flags (and the held-out ones') need a look."""
    from cartwin.model import MODELS

    model = MODELS[model_name]
    sources = {p.name: p.source for p in model.parameters}
    notes = []
    for t in suite.targets:
        for name in t.calibrated_by:
            if name not in sources:
                notes.append(f"{t.id}: parameter {name} is not in model {model.name} {model.version}")
    return notes
