"""Interchange formats: SBML (export and import), NONMEM-format datasets, CDISC-like domains.

See docs/interchange.md. Every error raised for bad input is an :class:`InterchangeError`
(a ``ValueError``).
"""

from cartwin.io.errors import (
    CdiscExportError, InterchangeError, NonmemDatasetError, SBMLExportError, SBMLImportError,
    UnsupportedSBMLError,
)

__all__ = ["CdiscExportError", "InterchangeError", "NonmemDatasetError", "SBMLExportError",
           "SBMLImportError", "UnsupportedSBMLError"]
