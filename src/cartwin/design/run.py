"""``cartwin design``: a spec in, the answer and its uncertainty out.

For each product and CAR-T dose of the space, the search finds the least lymphodepletion intensity
at which every requirement holds (``design.search``); of a product's doses the recommended one has
the least intensity (or, with ``goal.minimise`` a toxicity endpoint, the least toxicity at its own
least intensity). The answer comes with its margin (each requirement's estimate and interval at the
recommended design, and at the grid level below it), the trial-level answers at the recommended
design (``design.trials``), and how the least intensity moves when a model parameter is at its low
or high value (the search rerun on the same virtual patients).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import polars as pl

from cartwin.design.evaluate import Evaluator, success
from cartwin.design.search import Rule, SearchResult, bisection, full_grid
from cartwin.design.space import DesignPoint, Dose, anchor_regimens, cumulative, grid, interpolate
from cartwin.design.spec import LoadedSpec
from cartwin.design.trials import TrialAnswer, replicate_trials
from cartwin.endpoints import definitions
from cartwin.endpoints.stats import clopper_pearson


@dataclass(frozen=True)
class Requirement:
    endpoint: str
    kind: str
    label: str
    at_least: float
    days_at_least: float | None
    outside: str

    @property
    def text(self) -> str:
        what = self.label if self.days_at_least is None else f"{self.label} >= {self.days_at_least:g} days"
        return f"P({what}) >= {self.at_least:g}"


@dataclass
class Estimate:
    k: int
    n: int

    @property
    def interval(self):
        return clopper_pearson(self.k, self.n)

    def as_dict(self) -> dict:
        iv = self.interval
        return {"k": self.k, "n": self.n, "estimate": iv.estimate, "lower": iv.lower, "upper": iv.upper}


@dataclass
class DoseSearch:
    product: str
    dose: Dose
    search: SearchResult
    grid: SearchResult | None = None


@dataclass
class Recommendation:
    product: str
    dose: Dose | None
    level: int | None
    intensity: float | None
    regimen: str
    fludarabine_mg_m2: float | None
    cyclophosphamide_mg_m2: float | None
    requirements: list[dict] = field(default_factory=list)  # at the recommended point
    below: list[dict] = field(default_factory=list)  # at the grid level below it
    toxicity: list[dict] = field(default_factory=list)
    trials: list[TrialAnswer] = field(default_factory=list)
    sensitivity: list[dict] = field(default_factory=list)


@dataclass
class DesignResult:
    loaded: LoadedSpec
    levels: list[float]
    requirements: list[Requirement]
    searches: list[DoseSearch]
    recommendations: list[Recommendation]
    evaluator: Evaluator
    anchors: list
    seed: int
    seconds: float = 0.0

    def patients_simulated(self) -> int:
        return self.evaluator.simulated


def _requirements(loaded: LoadedSpec) -> list[Requirement]:
    table = {e.key: e for e in definitions().endpoints}
    return [Requirement(r.endpoint, table[r.endpoint].type, table[r.endpoint].label, r.at_least, r.days_at_least,
                        r.outside) for r in loaded.spec.goal.require]


def counts(frame: pl.DataFrame, requirements: list[Requirement]) -> list[tuple[int, int]]:
    out = []
    for r in requirements:
        s = success(frame, r.endpoint, r.kind, r.days_at_least, r.outside)
        known = ~np.isnan(s)
        out.append((int(np.nansum(s)), int(known.sum())))
    return out


def binary_estimate(frame: pl.DataFrame, endpoint: str) -> Estimate:
    s = success(frame, endpoint, "binary")
    return Estimate(int(np.nansum(s)), int((~np.isnan(s)).sum()))


def run_design(loaded: LoadedSpec, *, workers: int | None = None, patients: int | None = None,
               progress=None) -> DesignResult:
    from cartwin.plan import make_work
    from cartwin.protocol import load_protocol

    t0 = time.perf_counter()
    if patients is not None and patients != loaded.spec.patients:
        # the result (design.json, the report) states the patients actually simulated
        loaded = replace(loaded, spec=loaded.spec.model_copy(update={"patients": patients}))
    spec = loaded.spec
    protocol = load_protocol(loaded.protocol_path).protocol
    seed = protocol.seed if spec.seed is None else spec.seed
    work = make_work(protocol, seed)
    if spec.follow_up_days is not None:
        work = replace(work, days=tuple(d for d in work.days if d <= spec.follow_up_days))
    anchors = anchor_regimens(spec.space.intensity_path, spec.regimens)
    requirements = _requirements(loaded)
    keys = {r.endpoint for r in requirements} | set(spec.goal.toxicity) | {q.endpoint for q in spec.trials}
    if spec.goal.minimise != "intensity":
        keys.add(spec.goal.minimise)
    evaluator = Evaluator(work, anchors, dict(protocol.products), tuple(sorted(keys)),
                          workers=workers or spec.workers or 1)
    with evaluator:  # its worker processes, if any, stop when the search is done
        n = spec.patients
        levels = grid(spec.space.intensity_levels)
        rule = Rule(tuple(r.at_least for r in requirements), spec.goal.decide_on, spec.search.screening_level)
        doses = [Dose(getattr(d, "cells_per_kg", None), getattr(d, "cells", None)) for d in spec.space.doses]

        def looks_for(product, dose, factors=()):
            def looks(level: int, m: int):
                point = DesignPoint(product, dose, levels[level], factors)
                return counts(evaluator.frame(point, m), requirements)
            return looks

        def search(product, dose, factors=()):
            looks = looks_for(product, dose, factors)
            if spec.search.method == "grid":
                return full_grid(len(levels), looks, rule, n)
            return bisection(len(levels), looks, rule, n, spec.search.start_patients)

        searches = []
        for product in spec.space.products:
            for dose in doses:
                if progress:
                    progress(f"{product}, {dose.label}: searching")
                found = search(product, dose)
                compared = None
                if spec.search.compare_grid and spec.search.method != "grid":
                    if progress:
                        progress(f"{product}, {dose.label}: full grid for comparison")
                    compared = full_grid(len(levels), looks_for(product, dose), rule, n)
                searches.append(DoseSearch(product, dose, found, compared))

        recommendations = []
        for product in spec.space.products:
            candidates = [s for s in searches if s.product == product and s.search.answer is not None]
            if not candidates:
                recommendations.append(Recommendation(product, None, None, None, "no design of the space meets the goal",
                                                      None, None))
                continue

            def objective(s: DoseSearch):
                point = DesignPoint(product, s.dose, levels[s.search.answer])
                if spec.goal.minimise == "intensity":
                    return (s.search.answer, doses.index(s.dose))
                tox = binary_estimate(evaluator.frame(point, n), spec.goal.minimise)
                return (tox.k / max(tox.n, 1), s.search.answer, doses.index(s.dose))
            best = min(candidates, key=objective)
            recommendations.append(_recommend(best, levels, anchors, requirements, evaluator, n, spec, seed, progress,
                                              search, rule))
        return DesignResult(loaded, levels, requirements, searches, recommendations, evaluator, anchors, seed,
                            time.perf_counter() - t0)


def _requirement_rows(frame: pl.DataFrame, requirements: list[Requirement]) -> list[dict]:
    rows = []
    for r, (k, m) in zip(requirements, counts(frame, requirements)):
        e = Estimate(k, m).as_dict()
        rows.append({"endpoint": r.endpoint, "requirement": r.text, "at_least": r.at_least, **e,
                     "margin": e["estimate"] - r.at_least if m else math.nan})
    return rows


def _recommend(best: DoseSearch, levels, anchors, requirements, evaluator: Evaluator, n: int, spec, seed: int,
               progress, search, rule: Rule) -> Recommendation:
    level = best.search.answer
    t = levels[level]
    regimen = interpolate(anchors, t)
    point = DesignPoint(best.product, best.dose, t)
    frame = evaluator.frame(point, n)
    rec = Recommendation(best.product, best.dose, level, t, regimen.description,
                         cumulative(regimen, "fludarabine"), cumulative(regimen, "cyclophosphamide"))
    rec.requirements = _requirement_rows(frame, requirements)
    if level > 0:
        rec.below = _requirement_rows(evaluator.frame(DesignPoint(best.product, best.dose, levels[level - 1]), n),
                                      requirements)
    rec.toxicity = [{"endpoint": e, **binary_estimate(frame, e).as_dict()} for e in spec.goal.toxicity]
    for q in spec.trials:
        met = success(frame, q.endpoint, "binary")
        rec.trials.append(replicate_trials(met, q.endpoint, q.size, q.at_least, q.at_most, spec.trial_replicates,
                                           seed))
    for u in spec.uncertainty:
        for side, factor in (("low", u.low), ("high", u.high)):
            if progress:
                progress(f"{best.product}: {u.parameter} x{factor:g}")
            factors = ((u.parameter, factor),)
            moved = search(best.product, best.dose, factors)
            moved_frame = evaluator.frame(DesignPoint(best.product, best.dose, t, factors), n)
            at_point = _requirement_rows(moved_frame, requirements)
            rec.sensitivity.append({
                "parameter": u.parameter, "side": side, "factor": factor, "note": u.note,
                "least_intensity": None if moved.answer is None else levels[moved.answer],
                "requirements_at_recommended": at_point,
                "still_meets": rule.holds(counts(moved_frame, requirements))})
    return rec
