"""Clinical layer: score and grade real and virtual patients with the trials' own standards.

The layer receives frames and returns frames; it reads no file and knows no run directory.
Public entry points: :func:`observations_from_frame` (validate a real patients' table),
:func:`observations_from_run` (validate a simulated run's observations against its patients),
:func:`observations_from_simulation` (the same frame as ``observations_from_frame`` for the simulator's own
frames, checked by column),
:func:`score_observations` (the result tables) and :class:`ObservationError` (bad input).
Reading files and run directories and writing results happen at the border: ``cartwin.io``
(``read_observations``), ``cartwin.store`` and ``cartwin.scoring``.
Rule tables live in ``cartwin/clinical/rules``; this package never imports the model or solver.
"""

from cartwin.clinical.errors import ObservationError
from cartwin.clinical.observations import (Observations, observations_from_frame, observations_from_run,
                                          observations_from_simulation)
from cartwin.clinical.pipeline import TABLES, score_observations

__all__ = ["ObservationError", "Observations", "TABLES", "observations_from_frame", "observations_from_run",
           "observations_from_simulation", "score_observations"]
