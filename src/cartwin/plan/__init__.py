"""Planning: a protocol turned into resolved work (the model, each arm's therapy and typical
parameters, output days, read-outs, solver) and cut into chunks. Simulation below this room
knows no protocol."""

from cartwin.plan.chunk import ChunkResult, run_chunk
from cartwin.plan.chunks import ChunkSpec, Plan, auto_chunk_size, default_workers, make_plan
from cartwin.plan.work import ArmWork, RunWork, check_loadable, check_vocabulary, make_work, stored_observables, typical_parameters

__all__ = ["ArmWork", "ChunkResult", "ChunkSpec", "Plan", "RunWork", "auto_chunk_size", "check_loadable", "check_vocabulary",
           "default_workers", "make_plan", "make_work", "run_chunk", "stored_observables", "typical_parameters"]
