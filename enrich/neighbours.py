"""Nearest neighbours over the store's embeddings: items like an item, items for a user.

:class:`VectorIndex` searches a set of vectors by cosine: exactly (a matrix product) below
``EXACT_BELOW`` vectors, through faiss' HNSW graph above. faiss was chosen by
``bench/neighbours.py`` and the measurements in README: its HNSW builds about twice as fast as
usearch's on these 2-core machines at the same recall, and its inverted-file index (IVF), though
fastest to build, needs a quarter of its cells scanned to find 92% of the true top 100 of real
profile embeddings. :func:`update_index` keeps such an index of ``item_features`` beside the
store file (``features.duckdb.items.faiss`` and its key table ``….keys.parquet``) up to date for
changed rows only — new items added, re-profiled ones replaced, removed ones dropped (an HNSW
graph cannot remove a vector: a dropped one stays in the graph, unreachable through the key
table, until dropped ones are ``MAX_DEAD`` of it) — and rebuilds it when the store's embedder
changes. :func:`similar_items` and
:func:`items_for_users` query it (``enrich neighbours`` from the shell).

Example:
    >>> from enrich.store import Store
    >>> store = Store.open("features.duckdb")                      # doctest: +SKIP
    >>> update_index(store)                                        # doctest: +SKIP
    IndexUpdate(added=1682, removed=0, rebuilt=True, size=1682, seconds=0.41)
    >>> similar_items(store, ["1"], k=3)                           # doctest: +SKIP
    shape: (3, 4)  # query_id, item_id, score, rank
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq

from enrich.embedding import normalize
from enrich.errors import StoreError
from enrich.sqlfiles import read_sql

EXACT_BELOW = 50_000
"""Fewer vectors than this are searched exactly (``bench/neighbours.py``)."""
M, EF_CONSTRUCTION, EF_SEARCH = 32, 64, 256
"""HNSW settings (links per node, build and search breadth): ``bench/neighbours.py``."""
MAX_DEAD = 0.2
"""Rebuild the graph when this share of its vectors belongs to dropped rows."""
KEYS = pa.schema([("key", pa.int64()), ("item_id", pa.string()), ("version", pa.string())])


@dataclass(frozen=True)
class IndexUpdate:
    """What :func:`update_index` did."""

    added: int
    removed: int
    rebuilt: bool
    size: int
    seconds: float


def new_index(vectors: np.ndarray, keys: np.ndarray, exact_below: int = EXACT_BELOW) -> Any:
    """A faiss index of unit ``vectors`` under int64 ``keys``: exact (flat) below
    ``exact_below`` vectors, else an HNSW graph (inner product = cosine on unit vectors)."""
    import faiss  # loaded only where an index is used (OpenMP, ~1 s)

    n, dim = vectors.shape
    if n < exact_below:
        index = faiss.IndexIDMap2(faiss.IndexFlatIP(dim))
    else:
        graph = faiss.IndexHNSWFlat(dim, M, faiss.METRIC_INNER_PRODUCT)
        graph.hnsw.efConstruction = EF_CONSTRUCTION
        graph.hnsw.efSearch = EF_SEARCH
        index = faiss.IndexIDMap2(graph)
    index.add_with_ids(vectors, keys)
    return index


PAIR_S, BUILD_S, QUERY_S = 30e-9, 265e-6, 1.2e-3
"""Measured on these 2-core machines (``bench/neighbours.py``, 384-d): exact search per (query,
vector) pair (1M vectors x 1,000 queries: 30 s), graph build per vector (1M: 265 s), graph search
per query (100k vectors, 10,000 queries in one call)."""


def graph_pays(queries: int, vectors: int) -> bool:
    """Whether building a graph over ``vectors`` and searching it ``queries`` times beats one
    exact pass, at the measured rates (never below ``EXACT_BELOW`` vectors).

    >>> graph_pays(1_000, 1_000_000), graph_pays(20_000, 1_000_000), graph_pays(10**6, 1_000)
    (False, True, False)
    """
    exact = queries * vectors * PAIR_S
    return vectors >= EXACT_BELOW and exact > vectors * BUILD_S + queries * QUERY_S


def is_graph(index: Any) -> bool:
    """Whether ``index`` (an ID map) searches a graph, which cannot remove vectors."""
    import faiss

    return isinstance(faiss.downcast_index(index.index), faiss.IndexHNSW)


class VectorIndex:
    """Cosine top-k over ``vectors`` (one row per id): exact below ``exact_below`` rows, else
    an HNSW graph.

    >>> ix = VectorIndex(["a", "b", "c"], np.eye(3, dtype=np.float32))
    >>> ix.search(np.array([[1.0, 0.5, 0.0]], dtype=np.float32), k=2)
    [(['a', 'b'], [0.894..., 0.447...])]
    >>> ix.search(np.array([[1.0, 0.5, 0.0]], dtype=np.float32), k=2, exclude=[{"a"}])
    [(['b', 'c'], [0.447..., 0.0])]
    """

    def __init__(self, ids: list[str], vectors: np.ndarray, exact_below: int = EXACT_BELOW) -> None:
        self.ids = np.asarray(ids, dtype=object)
        self.exact = len(ids) < exact_below
        self.vectors: np.ndarray | None = normalize(vectors) if self.exact else None
        self.faiss: Any = None
        if not self.exact:
            self.faiss = new_index(normalize(vectors), np.arange(len(ids), dtype=np.int64), 0)
        self.rows: np.ndarray | None = None  # faiss key -> row (None: keys are rows)

    @classmethod
    def from_faiss(cls, index: Any, keys: pa.Table) -> VectorIndex:
        """A persisted faiss index whose keys map to ids through ``keys``."""
        found = cls.__new__(cls)
        found.ids = np.asarray(keys.column("item_id").to_pylist(), dtype=object)
        found.exact, found.vectors, found.faiss = False, None, index
        key = keys.column("key").to_numpy()
        found.rows = np.full(int(key.max()) + 1 if len(key) else 0, -1, dtype=np.int64)
        found.rows[key] = np.arange(len(key))
        return found

    def __len__(self) -> int:
        return len(self.ids)

    def search(
        self, queries: np.ndarray, k: int, exclude: list[set[str]] | None = None
    ) -> list[tuple[list[str], list[float]]]:
        """For each query row the ``k`` most similar ids and their cosine, best first; the ids
        in a query's ``exclude`` set are never returned."""
        queries = normalize(np.atleast_2d(queries))
        want = min(k + max((len(e) for e in exclude or []), default=0), len(self))
        if want == 0:
            return [([], []) for _ in queries]
        if self.vectors is not None:
            rows, sims = _exact(queries, self.vectors, want)
        else:
            dead = self.faiss.ntotal - len(self)  # dropped rows still in a graph: fetch more
            fetch = min(self.faiss.ntotal, want * 2 if dead else want)
            sims, keys = self.faiss.search(queries, fetch)
            rows = keys if self.rows is None else self._rows(keys)
        out = []
        for q in range(len(queries)):
            skip = exclude[q] if exclude else set()
            ids: list[str] = []
            values: list[float] = []
            for row, sim in zip(rows[q], sims[q], strict=True):
                if 0 <= row < len(self) and self.ids[row] not in skip:
                    ids.append(str(self.ids[row]))
                    values.append(float(sim))
                    if len(ids) == k:
                        break
            out.append((ids, values))
        return out

    def _rows(self, keys: np.ndarray) -> np.ndarray:
        assert self.rows is not None
        inside = (keys >= 0) & (keys < len(self.rows))
        return np.where(inside, self.rows[np.clip(keys, 0, max(len(self.rows) - 1, 0))], -1)


def _exact(queries: np.ndarray, vectors: np.ndarray, want: int) -> tuple[np.ndarray, np.ndarray]:
    """Rows and cosines of the ``want`` best vectors per query, best first (ties by row); the
    score matrix is made in blocks of queries (~256 MB each)."""
    step = max(1, 2**26 // max(len(vectors), 1))
    rows, sims = [], []
    for start in range(0, len(queries), step):
        scores = queries[start : start + step] @ vectors.T
        top = np.argpartition(-scores, want - 1, axis=1)[:, :want]
        top_scores = np.take_along_axis(scores, top, axis=1)
        order = np.lexsort((top, -top_scores), axis=1)
        rows.append(np.take_along_axis(top, order, 1))
        sims.append(np.take_along_axis(top_scores, order, 1))
    return np.vstack(rows), np.vstack(sims)


def index_paths(store_path: str | Path) -> tuple[Path, Path]:
    """The index file and its key table beside the store file ``store_path``."""
    return Path(f"{store_path}.items.faiss"), Path(f"{store_path}.items.faiss.keys.parquet")


def update_index(store: Any, beside: str | Path | None = None) -> IndexUpdate:
    """Bring the item index beside the store up to date with ``item_features``: rows added,
    re-profiled or removed since the last update only. Rebuilt from scratch when none exists,
    the embedder (or vector length) differs from the one it was built with, the catalogue
    crossed ``EXACT_BELOW``, or dropped rows are ``MAX_DEAD`` of a graph.

    ``beside``: the store file the index lives beside (default: ``store.path``; pass the main
    file when ``store`` is one of its read snapshots).
    """
    started = time.perf_counter()
    index_file, keys_file = index_paths(_beside(store, beside))
    if store.embedding_dim() is None:
        raise StoreError("the store has no item profiles yet: nothing to index")
    current = store.con.sql(read_sql("queries/index_rows.sql")).pl()
    if current.is_empty():
        raise StoreError("the store has no item profiles yet: nothing to index")
    built_for = {
        "embedders": ",".join(sorted(current["embedding_model"].unique().to_list())),
        "dim": str(store.embedding_dim()),
        "exact": str(current.height < EXACT_BELOW),
    }
    meta = _meta(keys_file) if index_file.exists() and keys_file.exists() else {}
    rebuilt = {k: meta.get(k) for k in built_for} != built_for
    if not rebuilt:
        index = _read(index_file)
        old = pl.read_parquet(keys_file)
        both = current.join(old, on="item_id", how="full", coalesce=True, suffix="_old")
        changed = pl.col("version").ne_missing(pl.col("version_old"))
        gone = both.filter(pl.col("key").is_not_null() & changed)
        new = both.filter(pl.col("version").is_not_null() & changed)
        dead = index.ntotal - old.height + (gone.height if is_graph(index) else 0)
        rebuilt = dead > MAX_DEAD * (index.ntotal + new.height)
    if rebuilt:
        keys = current.select("item_id", "version").with_columns(
            key=pl.int_range(current.height, dtype=pl.Int64)
        )
        vectors = _vectors(store, keys["item_id"])
        index = new_index(vectors, keys["key"].to_numpy(), exact_below=EXACT_BELOW)
        added, removed, next_key = keys.height, 0, keys.height
    else:
        if gone.height and not is_graph(index):
            index.remove_ids(gone["key"].to_numpy().astype(np.int64))
        start = int(meta["next_key"])  # never reused: a graph keeps dropped keys' vectors
        fresh = new.select("item_id", "version").with_columns(
            key=pl.int_range(start, start + new.height, dtype=pl.Int64)
        )
        if fresh.height:
            index.add_with_ids(_vectors(store, fresh["item_id"]), fresh["key"].to_numpy())
        keys = pl.concat(
            [
                old.join(gone.select("item_id"), on="item_id", how="anti"),
                fresh.select("key", "item_id", "version"),
            ]
        )
        added, removed, next_key = fresh.height, gone.height, start + fresh.height
    _save(index, keys, index_file, keys_file, {**built_for, "next_key": str(next_key)})
    return IndexUpdate(
        added=added,
        removed=removed,
        rebuilt=rebuilt,
        size=keys.height,
        seconds=round(time.perf_counter() - started, 3),
    )


def load_index(store_path: str | Path) -> VectorIndex:
    """The persisted item index beside ``store_path``."""
    index_file, keys_file = index_paths(store_path)
    if not index_file.exists() or not keys_file.exists():
        raise StoreError(
            f"no neighbour index beside {store_path}; build it with `enrich neighbours --store "
            f"{store_path}` or enrich.neighbours.update_index(store)"
        )
    return VectorIndex.from_faiss(_read(index_file), pq.read_table(keys_file))


def _read(index_file: Path) -> Any:
    import faiss

    return faiss.read_index(str(index_file))


def similar_items(
    store: Any, item_ids: list[str], k: int = 10, beside: str | Path | None = None
) -> pl.DataFrame:
    """The ``k`` items most similar to each of ``item_ids`` (itself left out), from the index
    beside the store: ``query_id, item_id, score, rank``."""
    ids = [str(i) for i in item_ids]
    vectors = _vectors(store, pl.Series("item_id", ids))
    index = load_index(_beside(store, beside))
    return _frame(ids, index.search(vectors, k, exclude=[{i} for i in ids]))


def items_for_users(
    store: Any,
    user_ids: list[str],
    k: int = 10,
    beside: str | Path | None = None,
    exclude_seen: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The ``k`` items nearest each user's profile vector (``user_features``), from the index
    beside the store: ``query_id, item_id, score, rank``. ``exclude_seen``: ``user_id, item_id``
    pairs never to return (e.g. what each user already had)."""
    ids = [str(u) for u in user_ids]
    rows = store.con.sql(read_sql("queries/user_vectors.sql"), params={"ids": ids}).to_arrow_table()
    found = [str(u) for u in rows.column("user_id").to_pylist()]
    missing = sorted(set(ids) - set(found))
    if missing:
        raise StoreError(f"no user profile for {', '.join(missing[:10])}; profile them first")
    seen = None if exclude_seen is None else seen_by(exclude_seen, found)
    index = load_index(_beside(store, beside))
    return _frame(found, index.search(_matrix(rows.column("embedding")), k, exclude=seen))


def seen_by(pairs: pl.DataFrame, users: list[str]) -> list[set[str]]:
    """For each of ``users``, the set of items ``pairs`` (``user_id, item_id``) gives it: the
    ``exclude`` argument of :meth:`VectorIndex.search`.

    >>> pairs = pl.DataFrame({"user_id": [1, 1], "item_id": ["a", "b"]})
    >>> [sorted(items) for items in seen_by(pairs, ["1", "2"])]
    [['a', 'b'], []]
    """
    text = pairs.select(pl.col("user_id").cast(pl.Utf8), pl.col("item_id").cast(pl.Utf8))
    grouped = dict(text.group_by("user_id").agg("item_id").iter_rows())
    return [set(grouped.get(u, [])) for u in users]


def _frame(queries: list[str], found: list[tuple[list[str], list[float]]]) -> pl.DataFrame:
    return pl.DataFrame(
        {
            "query_id": [q for q, (ids, _) in zip(queries, found, strict=True) for _ in ids],
            "item_id": [i for ids, _ in found for i in ids],
            "score": [s for _, scores in found for s in scores],
            "rank": [r for ids, _ in found for r in range(1, len(ids) + 1)],
        },
        schema={"query_id": pl.Utf8, "item_id": pl.Utf8, "score": pl.Float64, "rank": pl.Int64},
    )


def _vectors(store: Any, item_ids: pl.Series) -> np.ndarray:
    """The ``item_features`` vectors of ``item_ids``, in that order."""
    ids = item_ids.cast(pl.Utf8).to_list()
    wanted = pa.table({"item_id": pa.array(ids, pa.string()), "pos": pa.array(range(len(ids)))})
    store.con.register("enrich_wanted", wanted)
    try:
        found = store.con.sql(read_sql("queries/index_vectors.sql")).to_arrow_table()
    finally:
        store.con.unregister("enrich_wanted")
    if found.num_rows != len(item_ids):
        have = set(found.column("item_id").to_pylist())
        missing = [i for i in ids if i not in have]
        raise StoreError(f"no item profile for {', '.join(missing[:10])}")
    return _matrix(found.column("embedding"))


def _matrix(column: pa.ChunkedArray) -> np.ndarray:
    """A fixed- or variable-size list column of floats as a 2-d float32 array."""
    flat = column.combine_chunks()
    values = flat.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(len(flat), -1) if len(flat) else values.reshape(0, 0)


def _beside(store: Any, beside: str | Path | None) -> str:
    path = beside or store.path
    if path in (None, ":memory:"):
        raise StoreError("an in-memory store has no index file; pass beside= a file path")
    return str(path)


def _meta(keys_file: Path) -> dict[str, str]:
    meta = pq.read_schema(keys_file).metadata or {}
    return {k.decode(): v.decode() for k, v in meta.items() if not k.startswith(b"ARROW")}


def _save(
    index: Any, keys: pl.DataFrame, index_file: Path, keys_file: Path, meta: dict[str, str]
) -> None:
    """Index and key table written under temporary names, then renamed into place (the key
    table last: a reader sees an index at least as new as its keys; a key the index does not
    hold yet is never returned, one it no longer holds never found)."""
    import faiss

    partial = index_file.with_name(index_file.name + ".partial")
    faiss.write_index(index, str(partial))
    table = keys.select(KEYS.names).to_arrow().cast(KEYS).replace_schema_metadata(meta)
    partial_keys = keys_file.with_name(keys_file.name + ".partial")
    pq.write_table(table, partial_keys)
    os.replace(partial, index_file)
    os.replace(partial_keys, keys_file)
