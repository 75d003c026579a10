"""Profile rows in the store: what tells items from users (:class:`ProfileKind`), and reading,
probing and upserting their rows (a part of :class:`enrich.store.Store`).

Example:
    >>> ITEMS.table, ITEMS.key
    ('item_profiles', ('item_id', 'model', 'prompt_version'))
"""

from __future__ import annotations

from dataclasses import dataclass

import duckdb
import polars as pl
import pyarrow as pa

from enrich.errors import EnrichError, StoreError
from enrich.inputs import KEY
from enrich.sqlfiles import read_sql


@dataclass(frozen=True)
class ProfileKind:
    """What tells item profiles from user profiles, in one place.

    >>> USERS.key
    ('user_id', 'model', 'prompt_version', 'as_of')
    """

    name: str
    """``items`` or ``users``: the ``kind`` of ``runs`` and ``enrich_errors`` rows."""
    table: str
    id_col: str
    extra_cols: tuple[str, ...] = ()
    """Columns only this kind's rows have (written by its job)."""
    extra_key: tuple[str, ...] = ()
    """Key columns beyond ``(id, model, prompt_version)``: a user has one row per ``as_of``."""

    @property
    def key(self) -> tuple[str, ...]:
        return (self.id_col, "model", "prompt_version", *self.extra_key)


ITEMS = ProfileKind("items", "item_profiles", "item_id")
USERS = ProfileKind(
    "users",
    "user_profiles",
    "user_id",
    extra_cols=("as_of", "n_interactions", "is_cold"),
    extra_key=("as_of",),
)
KINDS = {k.name: k for k in (ITEMS, USERS)}


def profile_kind(kind: str | ProfileKind) -> ProfileKind:
    """The :class:`ProfileKind` named ``kind`` (``items`` or ``users``)."""
    if isinstance(kind, ProfileKind):
        return kind
    if kind not in KINDS:
        raise EnrichError(f"unknown profile kind {kind!r}; known: {', '.join(KINDS)}")
    return KINDS[kind]


class ProfileRows:
    """The profile tables' reads and writes (mixed into :class:`enrich.store.Store`)."""

    con: duckdb.DuckDBPyConnection

    def embedding_dim(self) -> int | None:
        raise NotImplementedError

    def not_profiled(
        self, kind: str, keys: pl.DataFrame, model: str, prompt_version: str
    ) -> pl.Series:
        """Change detection: the ``_key`` of every row of ``keys`` (``_key``, ``input_hash``) not
        stored with this input hash, model and prompt version — the rows the LLM must see. An
        anti-join in DuckDB (``sql/queries/not_profiled.sql``), so only the few new or changed
        keys come back (1M rows with 1% changed: 10,000 keys, not 990,000 matches)."""
        profile_kind(kind)
        if self.embedding_dim() is None or keys.is_empty():
            return keys.get_column(KEY)
        self.con.register("enrich_probe", keys.select(KEY, "input_hash").to_arrow())
        try:
            return self._keys_of("queries/not_profiled.sql", kind, model, prompt_version)
        finally:
            self.con.unregister("enrich_probe")

    def not_profiled_digests(self, kind: str, model: str, prompt_version: str) -> pl.Series:
        """:meth:`not_profiled` of the temporary table ``enrich_digests`` (``_key``, ``digest``)
        that :mod:`enrich.changes` fills batch by batch: input hashes compared by a 64-bit digest
        (``sql/queries/not_profiled_digests.sql``)."""
        return self._keys_of("queries/not_profiled_digests.sql", kind, model, prompt_version)

    def _keys_of(self, query: str, kind: str, model: str, prompt_version: str) -> pl.Series:
        found = self.con.sql(
            read_sql(query),
            params={
                "kind": profile_kind(kind).name,
                "model": model,
                "prompt_version": prompt_version,
            },
        ).to_arrow_table()
        return pl.Series(KEY, found.column(KEY), pl.Utf8)

    def read_profiles(
        self,
        kind: str,
        keys: list[str],
        model: str,
        prompt_version: str,
        hashes: list[str] | None = None,
    ) -> pl.DataFrame:
        """Stored profile rows for ``keys`` with this model and prompt version; with ``hashes``
        (one per key) only the row made from that input — a user has one row per ``as_of``, so
        this picks the one of the history asked for (the newest if several match)."""
        table, id_col = profile_kind(kind).table, profile_kind(kind).id_col
        wanted = pa.table(  # noqa: F841 (read by DuckDB)
            {
                "_key": pa.array(keys, pa.string()),
                "_hash": pa.array(
                    hashes if hashes is not None else [None] * len(keys), pa.string()
                ),
            }
        )
        return self.con.sql(
            f"SELECT t.* FROM {table} AS t JOIN wanted AS w ON t.{id_col} = w._key "
            "AND (w._hash IS NULL OR t.input_hash = w._hash) "
            "WHERE t.model = ? AND t.prompt_version = ? "
            f"QUALIFY row_number() OVER (PARTITION BY t.{id_col} ORDER BY t.created_at DESC) = 1",
            params=[model, prompt_version],
        ).pl()

    def upsert_profiles(self, kind: str, rows: pa.Table) -> None:
        """Insert new rows, update rows whose ``input_hash`` changed, leave the rest untouched.

        Two set-based statements (an UPDATE of the changed keys, an INSERT of the anti-join)
        instead of ``INSERT … ON CONFLICT DO UPDATE``, which measured 2.5x slower on 100k rows.
        Run it inside :meth:`transaction` so both land together. The tables have no primary key
        (its index must fit in memory): this keeps one row per key, refusing ``rows`` that hold
        a key twice.

        Example:
            >>> with store.transaction(store.write_memory_limit):  # doctest: +SKIP
            ...     store.upsert_profiles("items", rows)
        """
        table, keys = profile_kind(kind).table, profile_kind(kind).key
        given = pl.from_arrow(rows.select(list(keys)))
        assert isinstance(given, pl.DataFrame)
        if given.is_duplicated().any():
            twice = given.filter(given.is_duplicated()).unique(maintain_order=True).head(3)
            raise StoreError(
                f"{kind} profile rows to write hold a key more than once, e.g. "
                f"{twice.rows()}; each {', '.join(keys)} must appear once in a write"
            )
        cols = [f.name for f in rows.schema]
        dim = self.embedding_dim()
        value = {c: f"r.{c}::FLOAT[{dim}]" if c == "embedding" else f"r.{c}" for c in cols}
        self.con.register("enrich_upsert_rows", rows)
        try:
            self.con.execute(
                f"UPDATE {table} AS t SET "
                + ", ".join(f"{c} = {value[c]}" for c in cols if c not in keys)
                + " FROM enrich_upsert_rows AS r WHERE "
                + " AND ".join(f"t.{k} = r.{k}" for k in keys)
                + " AND t.input_hash IS DISTINCT FROM r.input_hash"
            )
            self.con.execute(
                f"INSERT INTO {table} ({', '.join(cols)}) "
                f"SELECT {', '.join(value[c] for c in cols)} FROM enrich_upsert_rows AS r "
                f"ANTI JOIN {table} AS t USING ({', '.join(keys)})"
            )
        finally:
            self.con.unregister("enrich_upsert_rows")

    def item_themes(self) -> pl.DataFrame:
        """``item_id, themes``: the themes (or, for free-text profiles, the keywords) of each
        item's newest profile (empty if none)."""
        if self.embedding_dim() is None:
            return pl.DataFrame(schema={"item_id": pl.Utf8, "themes": pl.Utf8})
        return self.con.sql(
            "SELECT item_id, array_to_string(CAST(coalesce(json_extract(attributes, '$.themes'), "
            "json_extract(attributes, '$.keywords')) AS VARCHAR[]), ', ') AS themes "
            "FROM item_features"
        ).pl()
