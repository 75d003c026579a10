"""The store's two caches: LLM answers by content address, embeddings by text hash (a part of
:class:`enrich.store.Store`).

Example:
    >>> from enrich.store import Store
    >>> Store.open(None).cache_get(["no-such-key"])
    {}
"""

from __future__ import annotations

import json
from typing import Any

import duckdb
import polars as pl
import pyarrow as pa


class Caches:
    """``llm_cache`` and ``embedding_cache`` (mixed into :class:`enrich.store.Store`)."""

    con: duckdb.DuckDBPyConnection

    def cache_get(self, keys: list[str]) -> dict[str, tuple[dict[str, Any], int, int]]:
        """Cached answers by key: ``{key: (output, tokens_in, tokens_out)}``."""
        if not keys:
            return {}
        wanted = pa.table({"key": pa.array(keys, pa.string())})  # noqa: F841
        rows = self.con.execute(
            "SELECT c.key, c.output, c.tokens_in, c.tokens_out FROM llm_cache c "
            "JOIN wanted w USING (key)"
        ).fetchall()
        return {k: (json.loads(out), tin, tout) for k, out, tin, tout in rows}

    def cache_put(self, rows: pa.Table) -> None:
        """Add answers (``key, model, prompt_version, output, tokens_in, tokens_out``); an answer
        for a key already cached replaces it (the engine asks again only when the cached answer
        was rejected, e.g. by junk rules added since)."""
        if rows.num_rows:
            self.con.execute(
                "INSERT INTO llm_cache SELECT key, model, prompt_version, output::JSON, "
                "tokens_in, tokens_out, now() FROM rows ON CONFLICT (key) DO UPDATE SET "
                "output = excluded.output, tokens_in = excluded.tokens_in, "
                "tokens_out = excluded.tokens_out, created_at = excluded.created_at"
            )

    def embedding_cache_get(self, hashes: list[str], embedding_model: str) -> pl.DataFrame:
        wanted = pa.table({"text_hash": pa.array(hashes, pa.string())})  # noqa: F841
        return self.con.sql(
            "SELECT c.text_hash, c.embedding FROM embedding_cache c "
            "JOIN wanted w USING (text_hash) "
            "WHERE c.embedding_model = ?",
            params=[embedding_model],
        ).pl()

    def embedding_cache_put(self, rows: pa.Table, embedding_model: str) -> None:
        if rows.num_rows:
            self.con.execute(
                "INSERT INTO embedding_cache SELECT text_hash, ?, embedding, now() FROM rows "
                "ON CONFLICT DO NOTHING",
                [embedding_model],
            )
