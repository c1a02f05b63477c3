"""Checking a protocol text as ``cartwin validate`` checks a protocol file.

The text is written to a private temporary file and read back with
:func:`cartwin.protocol.load_protocol`, then planned with :func:`cartwin.plan.make_plan`, the two
steps of the command; the messages are the loader's :class:`ProtocolError` problems, named after
the file the person uploaded or downloads (``untitled.toml`` unless they gave another name). The
one addition: a protocol that names an SBML model file is refused, because a request must reach no
file outside the app's run folder (run SBML models from the command line).
"""

from __future__ import annotations

import re
import tempfile
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

MAX_PROTOCOL_BYTES = 256 * 1024
DEFAULT_SOURCE = "untitled.toml"  # the name of a protocol typed into the page
SAFE_NAME = re.compile(r"[^A-Za-z0-9_.-]+")


@dataclass
class Check:
    source: str
    ok: bool
    problems: list[str] = field(default_factory=list)
    summary: str = ""
    study_id: str = ""
    data: dict | None = None  # the TOML as read (valid or not), for the editor

    def message(self) -> str:
        """What ``cartwin validate`` prints: ``ok ...`` or ``error: SOURCE: problems``."""
        if self.ok:
            return f"ok {self.summary}"
        head = f"error: {self.source}: "
        return head + (self.problems[0] if len(self.problems) == 1 else "\n  " + "\n  ".join(self.problems))


def safe_name(name: str | None, default: str = DEFAULT_SOURCE) -> str:
    """A file name for messages and downloads: the last path component, plain characters only."""
    base = Path(str(name or "")).name
    base = SAFE_NAME.sub("_", base).strip("._")
    return base or default


def check(text: str, source: str = DEFAULT_SOURCE) -> Check:
    """Check a protocol text as ``cartwin validate SOURCE`` would check the same file."""
    from cartwin.plan import make_plan
    from cartwin.protocol import ProtocolError, load_protocol
    from cartwin.protocol.load import SBML_PREFIX

    source = safe_name(source)
    if len(text.encode()) > MAX_PROTOCOL_BYTES:
        return Check(source, False, [f"the protocol is larger than {MAX_PROTOCOL_BYTES // 1024} KiB; "
                                     "a protocol file is a few KiB"])
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError:
        data = None
    if isinstance(data, dict) and str(data.get("model", "")).startswith(SBML_PREFIX):
        return Check(source, False, ["model: an SBML model file is run from the command line "
                                     "(`cartwin run`); the web app reads no file that a protocol names"],
                     data=data)
    with tempfile.TemporaryDirectory(prefix="cartwin-serve-") as tmp:
        path = Path(tmp) / source
        path.write_text(text)
        try:
            loaded = load_protocol(path)
            protocol = loaded.protocol
            plan = make_plan(protocol, workers=1)
        except ProtocolError as exc:
            return Check(source, False, list(exc.problems), data=data)
    summary = (f"{source}: study {protocol.study_id}, {len(protocol.arms)} arm(s), "
               f"{sum(plan.n_per_arm.values())} patients, seed {protocol.seed}, "
               f"follow-up {protocol.follow_up_days:g} days")
    return Check(source, True, [], summary, protocol.study_id, data)
