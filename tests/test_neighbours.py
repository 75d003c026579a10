"""Nearest neighbours (enrich.neighbours): exact and HNSW search against numpy by hand, the index
beside a real store file kept up to date for changed rows only, and the CLI."""

from __future__ import annotations

from datetime import datetime

import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from enrich.cli import main
from enrich.errors import StoreError
from enrich.neighbours import (
    VectorIndex,
    index_paths,
    items_for_users,
    similar_items,
    update_index,
)
from enrich.store import Store

DIM = 16


def unit(n: int, seed: int) -> np.ndarray:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def profile_rows(
    ids: list[str], vectors: np.ndarray, at: datetime, embedder: str = "e"
) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "item_id": ids,
            "model": ["m"] * n,
            "prompt_version": ["p"] * n,
            "input_hash": [f"h{i}-{at:%s}" for i in ids],
            "profile_text": [f"text {i}" for i in ids],
            "attributes": ['{"a": 1}'] * n,
            "embedding": list(vectors),
            "embedding_model": [embedder] * n,
            "run_id": ["r"] * n,
            "created_at": [at] * n,
        }
    )


def user_rows(ids: list[str], vectors: np.ndarray) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "user_id": ids,
            "as_of": [datetime(2026, 1, 1)] * n,
            "model": ["m"] * n,
            "prompt_version": ["p"] * n,
            "input_hash": [f"u{i}" for i in ids],
            "n_interactions": [5] * n,
            "is_cold": [False] * n,
            "profile_text": [f"user {i}" for i in ids],
            "attributes": ['{"a": 1}'] * n,
            "embedding": list(vectors),
            "embedding_model": ["e"] * n,
            "run_id": ["r"] * n,
            "created_at": [datetime(2026, 1, 1)] * n,
        }
    )


def by_hand(data: np.ndarray, query: np.ndarray, k: int, skip: set[int] = frozenset()) -> list[int]:
    order = sorted(range(len(data)), key=lambda r: -float(data[r] @ query))
    return [r for r in order if r not in skip][:k]


def clustered(n: int, seed: int) -> np.ndarray:
    """Unit vectors around 8 centres (embeddings have structure; uniform noise has none)."""
    centres = unit(8, 99)
    rng = np.random.default_rng(seed)
    v = centres[rng.integers(0, 8, n)] + 0.5 * rng.standard_normal((n, DIM)) / DIM**0.5
    return (v / np.linalg.norm(v, axis=1, keepdims=True)).astype(np.float32)


@pytest.mark.parametrize("exact_below", [10**9, 0], ids=["exact", "hnsw"])
def test_search_finds_the_nearest_by_cosine(exact_below: int) -> None:
    data, queries = clustered(8000, 0), clustered(20, 1)
    index = VectorIndex([f"i{r}" for r in range(8000)], data * 3.0, exact_below=exact_below)
    assert index.exact is (exact_below > 0)
    found = index.search(queries, 10, exclude=[{"i0", "i1"}] * 20)
    hits = 0
    for q, (ids, sims) in enumerate(found):
        truth = [f"i{r}" for r in by_hand(data, queries[q], 10, skip={0, 1})]
        hits += len(set(ids) & set(truth))
        assert len(ids) == 10 and not {"i0", "i1"} & set(ids)
        assert sims == sorted(sims, reverse=True)
        assert sims[0] == pytest.approx(float(data[int(ids[0][1:])] @ queries[q]), abs=1e-5)
        if index.exact:
            assert ids == truth
    assert hits / 200 >= (1.0 if index.exact else 0.95)


def store_with_items(path, n: int = 300) -> tuple[Store, np.ndarray]:
    store = Store.open(path)
    store.ensure_profile_tables(DIM)
    data = unit(n, 2)
    store.upsert_profiles(
        "items", profile_rows([str(i) for i in range(n)], data, datetime(2026, 1, 1))
    )
    return store, data


@pytest.mark.parametrize("exact_below", [10**9, 0], ids=["flat", "hnsw"])
def test_the_index_follows_changed_rows_only_and_rebuilds_for_a_new_embedder(
    tmp_path, monkeypatch, exact_below: int
) -> None:
    monkeypatch.setattr("enrich.neighbours.EXACT_BELOW", exact_below)
    store, data = store_with_items(tmp_path / "f.duckdb")
    first = update_index(store)
    assert (first.rebuilt, first.added, first.removed, first.size) == (True, 300, 0, 300)
    assert all(p.exists() for p in index_paths(tmp_path / "f.duckdb"))
    again = update_index(store)
    assert (again.rebuilt, again.added, again.removed, again.size) == (False, 0, 0, 300)

    # item 7 re-profiled: its vector is now item 42's, so 42 becomes its nearest neighbour
    moved = profile_rows(["7"], data[42:43] * 0.999 + data[7:8] * 0.001, datetime(2026, 2, 1))
    store.upsert_profiles("items", moved)
    store.con.execute("DELETE FROM item_profiles WHERE item_id = '9'")
    step = update_index(store)
    assert (step.rebuilt, step.added, step.removed, step.size) == (False, 1, 2, 299)
    near = similar_items(store, ["7", "42"], k=3)
    assert near.filter(pl.col("query_id") == "7")["item_id"][0] == "42"
    assert near.filter(pl.col("query_id") == "42")["item_id"][0] == "7"
    assert "9" not in near["item_id"].to_list() and near["rank"].to_list() == [1, 2, 3] * 2
    moved_back = profile_rows(["7"], data[7:8], datetime(2026, 2, 2))  # a dropped key again
    store.upsert_profiles("items", moved_back)
    assert update_index(store).size == 299
    assert similar_items(store, ["42"], k=1)["item_id"].to_list() == [
        str(by_hand(data, data[42], 1, skip={42, 9})[0])
    ]

    later = datetime(2026, 3, 1)
    store.upsert_profiles(
        "items", profile_rows([str(i) for i in range(300)], data, later, embedder="other")
    )
    assert update_index(store).rebuilt


def test_similar_items_and_items_for_users_match_numpy(tmp_path) -> None:
    store, data = store_with_items(tmp_path / "f.duckdb")
    users = unit(3, 5)
    store.upsert_profiles("users", user_rows(["a", "b", "c"], users))
    update_index(store)
    near = similar_items(store, ["5"], k=10)
    assert near["item_id"].to_list() == [str(r) for r in by_hand(data, data[5], 10, skip={5})]
    seen = pl.DataFrame({"user_id": ["b"], "item_id": [str(by_hand(data, users[1], 1)[0])]})
    mine = items_for_users(store, ["a", "b"], k=5, exclude_seen=seen)
    for u, q in (("a", 0), ("b", 1)):
        skip = {int(seen["item_id"][0])} if u == "b" else set()
        got = mine.filter(pl.col("query_id") == u)["item_id"].to_list()
        assert got == [str(r) for r in by_hand(data, users[q], 5, skip)]
    with pytest.raises(StoreError, match="no user profile for zz"):
        items_for_users(store, ["zz"], k=5)


def test_no_index_is_a_clear_error(tmp_path) -> None:
    store, _ = store_with_items(tmp_path / "f.duckdb", n=5)
    with pytest.raises(StoreError, match="no neighbour index beside"):
        similar_items(store, ["1"])


def test_cli_neighbours_updates_and_answers(tmp_path, capsys) -> None:
    store, data = store_with_items(tmp_path / "f.duckdb")
    store.close()
    assert (
        main(["neighbours", "--store", str(tmp_path / "f.duckdb"), "--item", "5", "--k", "3"]) == 0
    )
    out = capsys.readouterr().out
    assert "300 items indexed" in out
    best = by_hand(data, data[5], 3, skip={5})
    assert [line.split()[1] for line in out.splitlines() if line.startswith("5 ")] == [
        str(r) for r in best
    ]
    assert main(["neighbours", "--store", str(tmp_path / "f.duckdb"), "--item", "5"]) == 0
    assert "0 added, 0 removed" in capsys.readouterr().out


def test_nearest_items_through_the_graph_matches_the_exact_search(monkeypatch) -> None:
    """The evaluation's user -> item candidates: the graph path (taken when it pays) finds
    what the exact path finds, and leaves out each user's seen items the same way."""
    from enrich.downstream import als

    items, users = clustered(4000, 3), clustered(30, 4)
    item_vectors = pl.DataFrame({"item_id": [f"i{r}" for r in range(4000)], "embedding": items})
    user_vectors = pl.DataFrame({"user_id": [f"u{q}" for q in range(30)], "embedding": users})
    seen = pl.DataFrame(
        {"user_id": ["u0", "u0"], "item_id": [f"i{r}" for r in by_hand(items, users[0], 2)]}
    )
    exact = als.nearest_items(user_vectors, item_vectors, k=10, exclude=seen)
    monkeypatch.setattr(als, "graph_pays", lambda queries, vectors: True)
    graph = als.nearest_items(user_vectors, item_vectors, k=10, exclude=seen)
    assert graph.columns == exact.columns and graph.height == exact.height == 300
    assert len(pairs(graph) & pairs(exact)) / 300 >= 0.95
    assert not pairs(graph) & pairs(seen)


def pairs(frame: pl.DataFrame) -> set[tuple[str, str]]:
    return set(zip(frame["user_id"], frame["item_id"], strict=True))
