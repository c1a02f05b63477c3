"""A protocol resolved into work: the model, each arm's therapy and typical parameters, the
output days, the read-outs to store and the solver. Built once, before anything is simulated;
what runs a chunk needs nothing else (and it is picklable, for process pools and Dask).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from cartwin.model import get_model
from cartwin.model.declaration import Model
from cartwin.plan.rules import ReactiveRule, check_rules, resolve_rules
from cartwin.protocol.load import schedule_days
from cartwin.protocol.schema import Protocol
from cartwin.simulate.engine import make_solver
from cartwin.therapy.arm import ArmTherapy, resolve_arm
from cartwin.therapy.dosing import Dose
from cartwin.vocabulary import test_codes


IMPORTED_MODEL_BACKEND = "scipy-lsoda"


def typical_parameters(model: Model, therapy: ArmTherapy) -> np.ndarray:
    """The model's declared values with the product's mechanism parameters set."""
    theta = np.array([p.value for p in model.parameters])
    index = {n: i for i, n in enumerate(model.parameter_names)}
    for name, value in therapy.product.mechanism_parameters().items():
        theta[index[name]] = value
    return theta


@dataclass(frozen=True)
class ArmWork:
    index: int
    id: str
    therapy: ArmTherapy | None  # None for an imported model, which carries its own doses
    typical: np.ndarray = field(repr=False)
    rules: tuple[ReactiveRule, ...] = ()  # the protocol's rules that apply to this arm


@dataclass(frozen=True)
class RunWork:
    """Everything a worker needs to compute any chunk of a run."""

    model: Model
    seed: int
    days: tuple[float, ...]
    arms: tuple[ArmWork, ...]
    population: Any  # the protocol's population section (None for an imported model)
    variability: dict[str, float]
    which: tuple[int, ...]  # indices of the model's read-outs that the run stores
    solver_settings: tuple[str, float | None, float | None]  # backend, rtol, atol (None: the backend's own)
    fixed_doses: tuple[Dose, ...] | None = None
    """An imported (SBML) model's own doses, the same for every patient; time 0 = model start."""
    fixed_events: tuple = ()
    """An imported model's events that set states (:class:`cartwin.simulate.timed_events.TimedEvent`)."""
    nonnegative: tuple[bool, ...] | bool = True
    """Per state, whether it may not go below zero (an imported model's species)."""
    observation_model: bool = False
    """Apply the observation model (cartwin.observation) to the stored read-outs after the solve."""
    replicates: tuple = ()
    """Each replicate trial's population parameters (:class:`cartwin.population.uncertainty.ReplicateDraw`)."""
    same_patients: bool = False
    """Every replicate has the arm's own patients (else each replicate redraws them)."""
    conduct: Any = None
    """The protocol's [conduct] section (missed visits, withdrawal), or None."""
    solve_days: tuple[float, ...] = ()
    """With visit windows: every day a visit may fall on (the solver's output grid); else empty."""
    follow_up_days: float = 0.0

    def replicate_inputs(self, arm_index: int, replicate: int | None) -> tuple[np.ndarray, dict[str, float]]:
        """An arm's typical parameters and variability in replicate ``replicate`` (None: no replicates)."""
        arm = self.arms[arm_index]
        if replicate is None:
            return arm.typical, self.variability
        draw = self.replicates[replicate]
        return draw.typical_for(self.model, arm.typical), draw.variability(self.variability)
    observations_per_arm: int | None = None
    """Patients of each arm (index below this) whose observations are stored; None: all."""
    baselines: tuple[float | None, float | None] = (None, None)
    """The protocol's [scoring] baseline days (visits and endpoints; CTCAE reference); None: the
    rule tables' own."""

    def stores_observations(self, index: np.ndarray) -> np.ndarray:
        """Which of the patients ``index`` (positions in their arm) keep their observations."""
        index = np.asarray(index)
        if self.observations_per_arm is None:
            return np.ones(index.shape, bool)
        return index < self.observations_per_arm

    @property
    def imported(self) -> bool:
        return self.fixed_doses is not None

    def solver(self):
        backend, rtol, atol = self.solver_settings
        return make_solver(backend, rtol=rtol, atol=atol)

    def compute(self, spec):
        """Solve the chunk ``spec`` (see :mod:`cartwin.plan.chunk`)."""
        from cartwin.plan.chunk import run_chunk
        return run_chunk(self, spec)


def stored_observables(model: Model, outputs: tuple[str, ...] | None) -> tuple[int, ...]:
    """Indices of the observables a run stores (the protocol's ``outputs``, or all)."""
    return tuple(i for i, o in enumerate(model.observables) if not outputs or o.test in outputs)


def make_work(protocol: Protocol, seed: int | None = None, base: str | None = None) -> RunWork:
    """Resolve ``protocol``; an SBML model named by the protocol is imported here. ``base``: the
    folder relative paths of the protocol (a fit's estimates) are read from."""
    work = _make_work(protocol, seed)
    if protocol.uncertainty is not None:
        from pathlib import Path

        from cartwin.population.uncertainty import UncertaintyError, replicate_draws
        from cartwin.protocol import ProtocolError
        try:
            draws = replicate_draws(work.model, protocol.uncertainty, work.seed, Path(base) if base else None)
        except UncertaintyError as exc:
            raise ProtocolError("uncertainty", [str(exc)]) from None
        work = replace(work, replicates=draws, same_patients=protocol.uncertainty.patients == "same")
    if protocol.conduct is not None:
        work = replace(work, conduct=protocol.conduct, follow_up_days=float(protocol.follow_up_days))
        if protocol.conduct.visits.window_days > 0:
            from cartwin.plan.conduct import window_candidates
            grid = window_candidates(np.asarray(work.days, float), protocol.conduct.visits.window_days,
                                     float(protocol.follow_up_days))
            work = replace(work, solve_days=tuple(float(d) for d in grid))
    return work


def _make_work(protocol: Protocol, seed: int | None = None) -> RunWork:
    seed = protocol.seed if seed is None else int(seed)
    s = protocol.solver
    days = tuple(schedule_days(protocol))
    if protocol.model.startswith("sbml:"):
        if protocol.rules:
            from cartwin.protocol import ProtocolError
            raise ProtocolError(protocol.model, ["rules: an imported SBML model carries its own doses; "
                                                 "protocol rules work with cartwin's own models"])
        imported = _import(protocol)
        model = imported.model
        typical = np.array([p.value for p in model.parameters], float)
        arms = tuple(ArmWork(i, a.id, None, typical) for i, a in enumerate(protocol.arms))
        # an imported model is solved by LSODA unless the protocol names a backend: its first
        # result needs no BDF kernel, which takes some 15 s to build once per installation
        backend = s.backend if "backend" in s.model_fields_set else IMPORTED_MODEL_BACKEND
        return RunWork(model, seed, days, arms, None, dict(protocol.model_variability),
                       stored_observables(model, protocol.outputs), (backend, s.rtol, s.atol),
                       tuple(imported.doses), tuple(imported.events), imported.nonnegative,
                       observation_model=protocol.observation_model.enabled,
                       observations_per_arm=protocol.store.limit(), baselines=_baselines(protocol))
    model = get_model(protocol.model)
    arms = []
    for i, arm in enumerate(protocol.arms):
        therapy = resolve_arm(protocol, arm)
        rules = resolve_rules(protocol.rules, arm.id, therapy.product.name, days[-1])
        arms.append(ArmWork(i, arm.id, therapy, typical_parameters(model, therapy), rules))
    problems = check_rules(model, [r for a in arms for r in a.rules])
    if problems:
        from cartwin.protocol import ProtocolError
        raise ProtocolError(protocol.study_id, sorted(set(problems)))
    return RunWork(model, seed, days, tuple(arms), protocol.population, dict(protocol.model_variability),
                   stored_observables(model, protocol.outputs), (s.backend, s.rtol, s.atol),
                   observation_model=protocol.observation_model.enabled,
                   observations_per_arm=protocol.store.limit(), baselines=_baselines(protocol))


def _baselines(protocol: Protocol) -> tuple[float | None, float | None]:
    return protocol.scoring.baseline_day, protocol.scoring.lab_baseline_day


def check_loadable(protocol: Protocol, seed: int | None = None, base: str | None = None) -> RunWork:
    """What ``run`` checks before it writes anything: the protocol resolved into work (an SBML
    model imported, its declaration parsed) and a cartwin model's read-outs in the vocabulary.
    ``cartwin validate`` calls this, so that it refuses what ``run`` would."""
    work = make_work(protocol, seed, base=base)
    if not work.imported:
        check_vocabulary(work.model)
    return work


def _import(protocol: Protocol):
    from cartwin.io.sbml_import import import_sbml  # only runs with SBML models need it
    from cartwin.protocol import ProtocolError
    path = protocol.model[len("sbml:"):]
    try:
        imported = import_sbml(path)
    except ValueError as exc:  # the importer's errors list the unsupported constructs
        raise ProtocolError(path, [str(exc)]) from None
    unknown = sorted(set(protocol.model_variability) - set(imported.model.parameter_names))
    if unknown:
        raise ProtocolError(path, [f"model_variability: unknown parameters {unknown}; the SBML "
                                   f"model has {list(imported.model.parameter_names)}"])
    return imported


def check_vocabulary(model: Model) -> None:
    """Every read-out of a cartwin model is a test code of the vocabulary, in its unit."""
    codes = test_codes()
    for o in model.observables:
        if o.test not in codes:
            raise ValueError(f"model {model.name}: observable {o.test} is not in the test-code vocabulary")
        if codes[o.test].unit != o.unit:
            raise ValueError(f"model {model.name}: observable {o.test} in {o.unit}, vocabulary says "
                             f"{codes[o.test].unit}")
