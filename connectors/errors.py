"""The connectors' one error type, naming the source, table and column involved."""

from __future__ import annotations

from enrich.errors import EnrichError, redact


class ConnectorError(EnrichError):
    """A source or sink could not be read or written."""

    def __init__(self, source: str, problem: str, fix: str = "") -> None:
        message = f"{redact(source)}: {redact(problem)}" + (f"; {fix}" if fix else "")
        super().__init__(message)
