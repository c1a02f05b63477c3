"""Errors of the interchange layer. All are ``ValueError``s: they mean bad input, not a bug.

The CLI maps :class:`InterchangeError` (and so every subclass) to exit code 2.
"""

from __future__ import annotations


class InterchangeError(ValueError):
    """Input that cannot be exported or imported as asked; the message says what to fix."""


class SBMLExportError(InterchangeError):
    """The model or scenario cannot be written as valid SBML."""


class SBMLImportError(InterchangeError):
    """An SBML file cannot be read into a cartwin model."""


class UnsupportedSBMLError(SBMLImportError):
    """The SBML file uses constructs that cartwin's engine cannot solve; ``constructs`` lists them."""

    def __init__(self, source: str, constructs: list[str]):
        self.constructs = list(constructs)
        listing = "\n  - ".join(self.constructs)
        super().__init__(f"{source}: unsupported SBML constructs:\n  - {listing}")


class NonmemDatasetError(InterchangeError):
    """A NONMEM-format dataset is malformed or its rows are inconsistent (rows are named)."""


class CdiscExportError(InterchangeError):
    """A run or scored dataset cannot be written as CDISC-like domains."""
