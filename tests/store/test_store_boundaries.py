"""The store is the one reader and writer of run directories: no module outside ``cartwin.store``
spells a run-directory file name in its code, and the clinical layer receives frames, not paths."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from cartwin.store import layout

SRC = Path(__file__).resolve().parents[2] / "src" / "cartwin"
# A name counts where it is a whole path component: "observations.parquet", "DIR/run.json",
# "patients.parquet/*.parquet"; not inside another name (".dictionary.json" of a NONMEM export).
_NAMES = re.compile(r"(?<![\w.])(" + "|".join(re.escape(n) for n in layout.run_names()) + r")(?![\w])")


def _docstring_nodes(tree: ast.AST) -> set[int]:
    """Bare string statements (docstrings, attribute docs): documentation, not code."""
    return {id(node.value) for node in ast.walk(tree)
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)}


def _spelled_names(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(), str(path))
    docs = _docstring_nodes(tree)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docs:
            found += [(node.lineno, m) for m in _NAMES.findall(node.value)]
    return found


def test_the_scan_finds_what_it_looks_for(tmp_path):
    sample = tmp_path / "sample.py"
    sample.write_text('"""Reads manifest.json (documentation)."""\n'
                      'p = run / "manifest.json"\n'
                      'q = f"{run}/patients.parquet/*.parquet"\n'
                      'r = out.with_name(out.stem + ".dictionary.json")\n')
    assert _spelled_names(sample) == [(2, "manifest.json"), (3, "patients.parquet")]


def test_no_module_outside_store_spells_a_run_directory_file_name():
    offenders = []
    for path in sorted(SRC.rglob("*.py")):
        if path.is_relative_to(SRC / "store"):
            continue
        offenders += [f"{path.relative_to(SRC)}:{line}: {name}" for line, name in _spelled_names(path)]
    assert not offenders, ("run-directory file names belong to cartwin.store (layout, RunDirectory, "
                           "open_run); found:\n" + "\n".join(offenders))


def _imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
    return names


def test_clinical_layer_receives_frames_not_paths():
    for path in sorted((SRC / "clinical").rglob("*.py")):
        imported = _imports(path)
        assert not {m for m in imported if m.startswith(("cartwin.store", "cartwin.io"))}, path.name
        text = path.read_text()
        if path.name != "ruleset.py":  # the layer's own rule tables, from its package data
            for reader in ("read_parquet", "scan_parquet", "read_csv", "scan_csv", "read_text", "open("):
                assert reader not in text, f"{path.name} reads a file ({reader})"
    from cartwin import clinical
    assert not hasattr(clinical, "read_observations") and not hasattr(clinical, "score")
