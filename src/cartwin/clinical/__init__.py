"""Clinical layer: score and grade real and virtual patients with the trials' own standards.

Public entry points: :func:`score` (file or run directory to an output directory),
:func:`run_score_command` (Typer-free CLI helper) and :class:`ObservationError` (bad input).
Rule tables live in ``cartwin/clinical/rules``; this package never imports the model or solver.
"""

from cartwin.clinical.errors import ObservationError
from cartwin.clinical.observations import read_observations
from cartwin.clinical.pipeline import ScoreResult, run_score_command, score, score_observations

__all__ = ["ObservationError", "ScoreResult", "read_observations", "run_score_command", "score", "score_observations"]
