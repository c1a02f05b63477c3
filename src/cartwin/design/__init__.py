"""Design search: the least lymphodepletion and the CAR-T dose that meet a goal over endpoints.

    loaded = load_spec("examples/design_least_ld.toml")   # validated; DesignSpecError names each problem
    result = run_design(loaded)                           # common virtual patients, bisection search
    write_design(result, "runs/design")                   # design.json, points.csv, design.html

Rooms used: planning (the protocol's work, chunks), ``simulate`` (execution), ``endpoints`` (every
requirement is an endpoint of definitions.toml). docs/design.md describes the spec and the method.
"""

from cartwin.design.spec import DesignSpec, DesignSpecError, LoadedSpec, load_spec, parse_spec

__all__ = ["DesignSpec", "DesignSpecError", "LoadedSpec", "load_spec", "parse_spec", "run_design", "write_design"]


def run_design(loaded, **kwargs):
    from cartwin.design.run import run_design as _run
    return _run(loaded, **kwargs)


def write_design(result, out):
    from cartwin.design.output import write_design as _write
    return _write(result, out)
