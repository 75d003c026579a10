"""Errors raised by enrich: one root, and a marker for errors worth retrying.

Messages say what is wrong *and* how to fix it, naming the row or column involved.
"""

from __future__ import annotations


class EnrichError(Exception):
    """Root of every error enrich raises on purpose."""


class TransientError(EnrichError):
    """A failure that may pass if the same work is tried again (timeouts, 429, 5xx).

    enrich itself never raises it: it is the hook for a custom chat model or connector to say
    "retry me" (the engine retries it like a provider's 429 or timeout)."""


class InputError(EnrichError, ValueError):
    """The input frame cannot be enriched as given (missing column, duplicate ids, ...)."""


class StoreError(EnrichError):
    """The feature store cannot be opened or written (not DuckDB, newer schema, locked...)."""


_SECRET_PATTERNS = (
    r"(?i)bearer\s+[A-Za-z0-9._\-]+",
    r"\bsk-[A-Za-z0-9_\-]{8,}",
    r"(?i)(api[_-]?key|authorization)(['\"]?\s*[:=]\s*['\"]?)[^\s'\",}]+",
)


def redact(text: str) -> str:
    """``text`` without API keys or authorization headers (for logs, tables and messages).

    >>> redact("Authorization: Bearer sk-abcdefghijkl failed")
    'Authorization: [redacted] failed'
    """
    import os
    import re

    for pattern in _SECRET_PATTERNS:
        text = re.sub(
            pattern, lambda m: (m.group(1) + m.group(2) if m.lastindex else "") + "[redacted]", text
        )
    for name, value in os.environ.items():
        if value and len(value) >= 8 and any(w in name.upper() for w in ("KEY", "TOKEN", "SECRET")):
            text = text.replace(value, "[redacted]")
    return text
