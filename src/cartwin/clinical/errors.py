"""The one exception the clinical layer raises for input it cannot score."""

from __future__ import annotations


class ObservationError(Exception):
    """Bad observation input: the message names the file, the row(s), the column and the fix.

    ``file``, ``rows`` (1-based data rows, header excluded) and ``column`` are kept as attributes
    so that a caller can point at the problem without parsing the message.
    """

    def __init__(self, message: str, *, file: str | None = None, rows: list[int] | None = None,
                 column: str | None = None) -> None:
        super().__init__(message)
        self.file = file
        self.rows = rows or []
        self.column = column
