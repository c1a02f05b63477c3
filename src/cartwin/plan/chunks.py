"""How a run is cut into chunks: contiguous blocks of patients of one arm.

Everything about a patient is computed inside its chunk from the patient's own random stream,
so the numbers do not depend on the chunk size, the number of workers or the order in which
chunks run. The plan is stored in run.json so that a resumed run computes the same chunks.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from cartwin.processes import usable_cores

MAX_CHUNK = 500
MIN_CHUNK = 16


@dataclass(frozen=True)
class ChunkSpec:
    arm_index: int
    arm_id: str
    start: int
    stop: int
    replicate: int | None = None  # the replicate trial (a protocol with [uncertainty]); None: none
    stream: str = ""
    """The key of the patients' random streams: empty, the arm's own (each arm draws its own
    patients, as randomised arms would); a name shared by several arms gives them the same virtual
    patients (common random numbers, as a design search compares designs)."""

    @property
    def name(self) -> str:
        if self.replicate is not None:
            return f"part-r{self.replicate:05d}-{self.arm_index:03d}-{self.start:09d}"
        return f"part-{self.arm_index:03d}-{self.start:09d}"


@dataclass(frozen=True)
class Plan:
    """What a run will compute. Stored in run.json so that a resumed run computes the same."""

    n_per_arm: dict[str, int]
    chunk_size: int
    seed: int
    chunks: tuple[ChunkSpec, ...] = field(repr=False)
    replicates: int | None = None  # replicate trials (each arm n_per_arm patients in each)

    def to_json(self) -> dict:
        out = {"n_per_arm": self.n_per_arm, "chunk_size": self.chunk_size, "seed": self.seed}
        if self.replicates is not None:
            out["replicates"] = self.replicates
        return out


def default_workers() -> int:
    """One worker per usable core."""
    return usable_cores()


def auto_chunk_size(n_total: int, workers: int) -> int:
    """Enough chunks to keep every worker busy and to bound memory; no more than needed."""
    return int(min(MAX_CHUNK, max(MIN_CHUNK, math.ceil(n_total / (4 * workers)))))


def make_plan(protocol, n_per_arm: int | None = None, seed: int | None = None,
              chunk_size: int | None = None, workers: int | None = None) -> Plan:
    explicit = protocol.population.patients if protocol.population is not None else None
    counts = {}
    for arm in protocol.arms:
        if n_per_arm is not None:
            counts[arm.id] = int(n_per_arm)
        elif explicit is not None:
            counts[arm.id] = len(explicit)
        else:
            counts[arm.id] = int(arm.n)
    uncertainty = getattr(protocol, "uncertainty", None)
    replicates = uncertainty.replicates if uncertainty is not None else None
    size = chunk_size or auto_chunk_size(sum(counts.values()) * (replicates or 1), workers or default_workers())
    chunks = tuple(ChunkSpec(i, arm.id, s, min(s + size, counts[arm.id]), r)
                   for r in ([None] if replicates is None else range(replicates))
                   for i, arm in enumerate(protocol.arms) for s in range(0, counts[arm.id], size))
    return Plan(counts, size, protocol.seed if seed is None else int(seed), chunks, replicates)
