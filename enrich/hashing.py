"""The one content hash enrich uses (row hashes, cache keys, prompt and vocabulary versions).

Example:
    >>> sha256_hex("Heat")[:12]
    'ee2556352ebb'
"""

from __future__ import annotations

import hashlib


def sha256_hex(text: str) -> str:
    """SHA-256 of ``text`` as UTF-8 (lone surrogates kept, not refused), in hex."""
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()
