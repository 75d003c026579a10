"""Read snapshots: immutable copies of a store, published by the writer after each change, so
readers never wait for the writer and the writer never waits for a reader.

DuckDB lets one process open a file for writing and then no other process may open it, not
even read-only. A store with a snapshot folder (``features.duckdb.snapshots/``) therefore gets
a new read-only copy every time a writing :class:`~enrich.store.Store` that changed something is
closed: the copy is written under a temporary name (``COPY FROM DATABASE``: tables, views and
macros, in one transaction, so it holds only committed work — never half a chunk) and renamed
into place, so a reader finds whole files only. Readers open the newest copy; the writer never
opens a copy again, so no reader can block it. The newest ``KEEP`` copies stay; a reader that
still has an older one open keeps reading it (a removed file lives on while it is open).

Example:
    >>> import tempfile, pathlib
    >>> from enrich.store import Store
    >>> path = pathlib.Path(tempfile.mkdtemp()) / "features.duckdb"
    >>> store = Store.open(path)
    >>> snapshot = publish(store)          # turns snapshots on; later writes publish on close
    >>> snapshot.name
    '00000001.duckdb'
    >>> store.close()
    >>> reader = Store.open_reader(path)   # the newest copy, read-only
    >>> reader.scalar("SELECT count(*) FROM runs")
    0
    >>> reader.close()
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import TYPE_CHECKING

import duckdb

from enrich.errors import StoreError

if TYPE_CHECKING:
    from enrich.store import Store

KEEP = 3
SUFFIX = ".duckdb"


def folder(store_path: str | Path) -> Path:
    """Where the snapshots of the store file ``store_path`` are published."""
    return Path(f"{store_path}.snapshots")


def enabled(store_path: str | Path) -> bool:
    """Whether the store publishes snapshots (its snapshot folder exists)."""
    return folder(store_path).is_dir()


def newest(store_path: str | Path) -> Path | None:
    """The newest published snapshot of ``store_path`` (None when there is none)."""
    found = _published(folder(store_path))
    return found[-1] if found else None


def publish(store: Store, keep: int = KEEP) -> Path:
    """Copy the committed state of the file store ``store`` to a new snapshot and return it.

    The copy is made inside one transaction of the writer's connection, so it is consistent;
    only the newest ``keep`` snapshots are kept.
    """
    if store.path is None or store.path == ":memory:":
        raise StoreError("only a store file has snapshots; this store is in memory")
    where = folder(store.path)
    where.mkdir(exist_ok=True)
    published = _published(where)
    number = int(published[-1].stem) + 1 if published else 1
    target = where / f"{number:08d}{SUFFIX}"
    partial = where / f".{number:08d}.partial"
    partial.unlink(missing_ok=True)
    database = store.scalar("SELECT current_database()")
    store.con.execute("ATTACH ? AS enrich_snapshot", [str(partial)])
    try:
        store.con.execute(f'COPY FROM DATABASE "{_quoted(database)}" TO enrich_snapshot')
    finally:
        store.con.execute("DETACH enrich_snapshot")  # checkpoints: the copy is one file
    os.replace(partial, target)
    for old in _published(where)[:-keep]:
        old.unlink(missing_ok=True)
    return target


def open_newest(
    store_path: str | Path, attempts: int = 5
) -> tuple[duckdb.DuckDBPyConnection, Path]:
    """A read-only connection to the newest snapshot (retried if the writer removed it between
    listing and opening)."""
    for attempt in range(attempts):
        snapshot = newest(store_path)
        if snapshot is None:
            raise StoreError(
                f"{store_path} has no published snapshot; run `enrich snapshot --store "
                f"{store_path}` once (the nightly flow publishes them itself)"
            )
        try:
            return duckdb.connect(str(snapshot), read_only=True), snapshot
        except duckdb.IOException:
            if attempt == attempts - 1:
                raise
            time.sleep(0.05)
    raise AssertionError("unreachable")


def _published(where: Path) -> list[Path]:
    if not where.is_dir():
        return []
    return sorted(
        p for p in where.iterdir() if p.suffix == SUFFIX and p.stem.isdigit() and p.is_file()
    )


def _quoted(identifier: str) -> str:
    return identifier.replace('"', '""')
