"""The DuckDB feature store: opening, migrating and transactions here; its profile rows
(:mod:`enrich.profile_rows`), caches (:mod:`enrich.caches`), ledger (:mod:`enrich.ledger`) and
batch manifest (:mod:`enrich.batch_manifest`) are mixed in.

Writes go through Arrow in bulk inside transactions, so a reader never sees half a chunk.
Upserts are idempotent: writing a row again with the same ``input_hash`` changes nothing.

Example:
    >>> store = Store.open(None)   # in memory; or Store.open("features.duckdb")
    >>> store.scalar("SELECT count(*) FROM runs")
    0
"""

from __future__ import annotations

import contextlib
import logging
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import polars as pl

from enrich import snapshots
from enrich.batch_manifest import BatchManifest
from enrich.caches import Caches
from enrich.config import Environment
from enrich.duckdb_memory import MEMORY_LIMIT, memory_limited
from enrich.errors import StoreError
from enrich.ledger import Ledger
from enrich.profile_rows import ProfileRows
from enrich.sqlfiles import read_sql, sql_files

SCHEMA_VERSION = 9
log = logging.getLogger(__name__)
_MIGRATION = re.compile(r"^(\d{4})_.*\.sql$")


class Store(ProfileRows, Caches, Ledger, BatchManifest):
    """A DuckDB feature store (a file, an open connection, or ``None`` for memory)."""

    def __init__(
        self, con: duckdb.DuckDBPyConnection, path: str | None = None, read_only: bool = False
    ) -> None:
        self.con = con
        self.path = path
        self.read_only = read_only
        self.write_memory_limit: str | None = None
        """DuckDB's memory limit for the transactions that write profiles (a run's chunks,
        merges); None: the connection's own. :meth:`open` sets
        :data:`enrich.duckdb_memory.MEMORY_LIMIT` for a file opened without
        ``ENRICH_STORE_MEMORY_LIMIT``: each write scans the table's keys, and DuckDB would keep
        all it read cached (at 10M rows the detection and the changed rows' writes grew to 2.0x
        the 1M figure; held, 1.4x)."""
        self.publish_on_close = True
        """Publish a read snapshot on close if this store publishes them and was written to
        (a writer pacing its snapshots turns it off for some closes)."""
        if read_only:
            self._check_version()
        else:
            self._migrate()
        self._written = self._file_state()

    @classmethod
    def open(
        cls,
        target: str | Path | duckdb.DuckDBPyConnection | Store | None,
        read_only: bool = False,
        lock_timeout_s: float = 0.0,
    ) -> Store:
        """Open (creating and migrating if needed) the store at ``target``.

        DuckDB allows one writing process per file. If another process holds it, wait up to
        ``lock_timeout_s`` seconds for it to finish, then raise a :class:`StoreError`. DuckDB's
        memory limit is ``ENRICH_STORE_MEMORY_LIMIT`` when set (:class:`enrich.config.Environment`);
        otherwise DuckDB's default, with profile writes to a file held to
        :data:`enrich.duckdb_memory.MEMORY_LIMIT`.
        """
        if isinstance(target, Store):
            return target
        if isinstance(target, duckdb.DuckDBPyConnection):
            return cls(target)
        path = ":memory:" if target is None else str(target)
        limit = Environment().store_memory_limit
        config = {"memory_limit": limit} if limit else {}
        deadline = time.monotonic() + lock_timeout_s
        waited = False
        while True:
            try:
                con = duckdb.connect(path, read_only=read_only, config=config)
                break
            except duckdb.Error as exc:
                if "lock" not in str(exc).lower() or time.monotonic() >= deadline:
                    raise translate_error(exc, path) from None
                if not waited:
                    log.warning("store %s is held by another process; waiting", path)
                    waited = True
                time.sleep(0.25)
        store = cls(con, path, read_only)
        if not limit and target is not None and path != ":memory:":
            store.write_memory_limit = MEMORY_LIMIT
        return store

    @classmethod
    @contextlib.contextmanager
    def borrow(
        cls, target: str | Path | duckdb.DuckDBPyConnection | Store | None
    ) -> Iterator[Store]:
        """The store at ``target`` for one block; closed after it only if opened here.

        >>> with Store.borrow("features.duckdb") as store:  # doctest: +SKIP
        ...     store.scalar("SELECT count(*) FROM runs")
        """
        store = cls.open(target)
        try:
            yield store
        finally:
            if store is not target and not isinstance(target, duckdb.DuckDBPyConnection):
                store.close()

    @classmethod
    def open_reader(cls, target: str | Path) -> Store:
        """The newest committed state of the store file ``target``, read-only, without waiting
        for a writer: its newest read snapshot (:mod:`enrich.snapshots`) when it publishes them,
        else the file itself. Close and open again to see a newer snapshot.

        >>> reader = Store.open_reader("features.duckdb")  # doctest: +SKIP
        >>> reader.con.sql("SELECT count(*) FROM item_features").fetchall()  # doctest: +SKIP
        """
        if not snapshots.enabled(target):
            return cls.open(target, read_only=True)
        con, snapshot = snapshots.open_newest(target)
        return cls(con, str(snapshot), read_only=True)

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection; a store file that publishes snapshots and was written to since
        it was opened publishes a new one first."""
        if (
            self.publish_on_close
            and not self.read_only
            and self.path not in (None, ":memory:")
            and snapshots.enabled(self.path)
            and self._file_state() != self._written
        ):
            snapshots.publish(self)
        self.con.close()

    def _file_state(self) -> tuple[tuple[int, int], ...]:
        """Size and modification time of the file and its write-ahead log: any committed write
        changes one of them."""
        if self.read_only or self.path in (None, ":memory:"):
            return ()
        return tuple(_stat(Path(f"{self.path}{end}")) for end in ("", ".wal"))

    # -- schema ---------------------------------------------------------------------------------

    def _migrate(self) -> None:
        self.con.execute(
            "CREATE TABLE IF NOT EXISTS enrich_schema_version "
            "(version INTEGER PRIMARY KEY, applied_at TIMESTAMP NOT NULL)"
        )
        current = self._check_version()
        for path in sql_files("migrations"):
            match = _MIGRATION.match(path.name)
            if match and int(match.group(1)) > current:
                text = path.read_text(encoding="utf-8")
                if "{profile_tables}" in text:  # a change to the profile tables, if they exist
                    dim = self.embedding_dim()
                    text = "" if dim is None else text.replace("{profile_tables}", _tables(dim))
                with self.transaction():
                    if text:
                        self.con.execute(text)
                    self.con.execute(
                        "INSERT INTO enrich_schema_version VALUES (?, now())", [int(match.group(1))]
                    )
        dim = self.embedding_dim()
        if dim is not None:  # views follow the code: a store written by an older enrich gets
            self.ensure_profile_tables(dim)  # today's views (CREATE OR REPLACE)

    def _check_version(self) -> int:
        current = self.schema_version()
        if current > SCHEMA_VERSION:
            raise StoreError(
                f"store {self.path or ''} has schema version {current}, newer than this enrich "
                f"({SCHEMA_VERSION}); upgrade enrich to open it"
            )
        return current

    def schema_version(self) -> int:
        return int(self.scalar("SELECT coalesce(max(version), 0) FROM enrich_schema_version"))

    def embedding_dim(self) -> int | None:
        value = self.scalar("SELECT value FROM store_meta WHERE key = 'embedding_dim'")
        return None if value is None else int(value)

    def scalar(self, sql: str, params: list[Any] | None = None) -> Any:
        """The first column of the first row of ``sql`` (None when there is no row)."""
        rows = self.con.execute(sql, params or []).fetchall()
        return rows[0][0] if rows else None

    def ensure_profile_tables(self, dim: int) -> None:
        """Create the profile tables and views for ``dim``-d embeddings, or check the dimension."""
        existing = self.embedding_dim()
        if existing is not None and existing != dim:
            raise StoreError(
                f"store {self.path or ''} holds {existing}-d embeddings; this embedder gives "
                f"{dim}-d. "
                "Use the same embedder or another store file"
            )
        with self.transaction():
            if existing is None:
                self.con.execute(_tables(dim))
                self.con.execute("INSERT INTO store_meta VALUES ('embedding_dim', ?)", [str(dim)])
            for view in sql_files("views"):  # CREATE OR REPLACE: views follow the code
                self.con.execute(view.read_text(encoding="utf-8"))

    @contextlib.contextmanager
    def transaction(self, memory_limit: str | None = None) -> Iterator[None]:
        """All or nothing: readers see either none or all of what is written inside.

        ``memory_limit``: DuckDB's memory limit from before the transaction begins until after
        it ends (:func:`enrich.duckdb_memory.memory_limited`); the profile writes pass
        :attr:`write_memory_limit`.
        """
        with memory_limited(self.con, memory_limit) if memory_limit else contextlib.nullcontext():
            self.con.execute("BEGIN TRANSACTION")
            try:
                yield
            except BaseException:
                self.con.execute("ROLLBACK")
                raise
            self.con.execute("COMMIT")


def _tables(dim: int) -> str:
    """The profile tables' DDL (``sql/tables/profiles.sql``) for ``dim``-d embeddings."""
    return read_sql("tables/profiles.sql").replace("{dim}", str(int(dim)))


def _stat(path: Path) -> tuple[int, int]:
    try:
        st = path.stat()
    except FileNotFoundError:
        return (-1, -1)
    return (st.st_size, st.st_mtime_ns)


def audit(store: Store) -> dict[str, pl.DataFrame]:
    """Run every query in ``sql/audits``: ``{name: offending rows}`` (empty frames pass)."""
    if store.embedding_dim() is None:
        return {}
    return {p.stem: store.con.sql(p.read_text(encoding="utf-8")).pl() for p in sql_files("audits")}


EXPORTABLE = ("item_profiles", "user_profiles", "runs", "enrich_errors")


def export_parquet(
    store: Store,
    folder: str | Path,
    tables: tuple[str, ...] = EXPORTABLE,
    partition_by: tuple[str, ...] = (),
) -> dict[str, int]:
    """Write feature tables as Parquet under ``folder`` (one file or hive partitions each)."""
    folder = Path(folder)
    counts: dict[str, int] = {}
    for table in tables:
        if table not in EXPORTABLE:
            raise StoreError(f"cannot export {table!r}; tables: {', '.join(EXPORTABLE)}")
        if table.endswith("_profiles") and store.embedding_dim() is None:
            continue  # nothing profiled yet
        frame = store.con.sql(f"SELECT * FROM {table}").pl()
        target = folder / table
        parts = [c for c in partition_by if c in frame.columns]
        if parts:
            target.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(target, partition_by=parts)
        else:
            folder.mkdir(parents=True, exist_ok=True)
            frame.write_parquet(target.with_suffix(".parquet"))
        counts[table] = frame.height
    return counts


def translate_error(exc: duckdb.Error, path: str) -> StoreError:
    """DuckDB's errors on open, in words that say what to do."""
    text = str(exc)
    if "lock" in text.lower():
        return StoreError(
            f"store {path} is open for writing in another process ({text.splitlines()[0]}); "
            "DuckDB allows one writer per file: wait for that run to finish, or read a copy"
        )
    if "not a valid DuckDB" in text or "database file" in text.lower():
        return StoreError(
            f"{path} is not a DuckDB database file; pass a new path or a .duckdb file"
        )
    if "read-only" in text.lower() or "permission" in text.lower():
        return StoreError(f"cannot write store {path}: {text.splitlines()[0]}; check permissions")
    folder = Path(path).parent
    if path != ":memory:" and not folder.exists():
        return StoreError(f"cannot open store {path}: folder {folder} does not exist; create it")
    return StoreError(f"cannot open store {path}: {text}")
