"""Nearest neighbours at catalogue scale: faiss' HNSW graph (what ``enrich.neighbours`` uses)
and faiss' inverted-file index (IVF) against brute force (numpy and DuckDB's
``array_cosine_similarity``), in one run.

Data: N synthetic 384-d unit vectors shaped like text embeddings — clusters of ~500 around
random centres, plus noise (uniform random directions in 384-d have no neighbours worth the
name, and no real embedder produces them) — and the real ML-100K item profiles of a store, when
one is given.
Queries: 200 held-out vectors from the same distribution. For each method: build time, p50 / p99
latency of one top-100 query (queries one at a time, after 20 warm-up queries), recall@100
against the exact answer, memory of the index. For the evaluation's case (many users at once,
an index built for them) it also times U queries in one call: exact (chunked matrix product)
against build + search, which sets ``enrich.neighbours``' choice between the two.

    .venv/bin/python bench/neighbours.py --n 1000000 [--store features.duckdb]
"""

from __future__ import annotations

import argparse
import json
import platform
import time
from pathlib import Path

import duckdb
import numpy as np
import pyarrow as pa

from enrich.embedding import normalize
from enrich.neighbours import EF_CONSTRUCTION, EF_SEARCH, M, VectorIndex, new_index

DIM, K, QUERIES, WARMUP = 384, 100, 200, 20


def clustered(n: int, seed: int, centres: int = 2000, noise: float = 0.6) -> np.ndarray:
    """``n`` unit vectors around ``centres`` random centres (the same for every seed)."""
    rng = np.random.default_rng(0)
    middle = normalize(rng.standard_normal((centres, DIM), dtype=np.float32))
    rng = np.random.default_rng(seed)
    out = np.empty((n, DIM), dtype=np.float32)
    for start in range(0, n, 100_000):
        m = min(100_000, n - start)
        pick = rng.integers(0, centres, m)
        points = middle[pick] + noise * rng.standard_normal((m, DIM), dtype=np.float32) / DIM**0.5
        out[start : start + m] = normalize(points)
    return out


def exact_top(data: np.ndarray, queries: np.ndarray, k: int = K) -> np.ndarray:
    """Rows of the ``k`` most similar data vectors per query (chunked: bounded memory)."""
    out = []
    for start in range(0, len(queries), 64):
        scores = queries[start : start + 64] @ data.T
        out.append(np.argpartition(-scores, k - 1, axis=1)[:, :k])
    return np.vstack(out)


def recall(found: list[np.ndarray], truth: np.ndarray) -> float:
    return float(
        np.mean([len(set(f) & set(t)) / len(t) for f, t in zip(found, truth, strict=True)])
    )


def latencies(search, queries: np.ndarray) -> tuple[list[np.ndarray], dict[str, float]]:
    for q in queries[:WARMUP]:  # warm-up: caches, pages, the first query's set-up
        search(q)
    times, found = [], []
    for q in queries:
        t0 = time.perf_counter()
        found.append(search(q))
        times.append(time.perf_counter() - t0)
    ms = np.array(times) * 1000
    return found, {
        "p50_ms": round(float(np.percentile(ms, 50)), 3),
        "p99_ms": round(float(np.percentile(ms, 99)), 3),
    }


def ivf_sweep(data: np.ndarray, queries: np.ndarray, truth: np.ndarray, k: int = K) -> dict:
    """faiss' inverted-file index (4·√n k-means cells): build time, then latency and recall
    for a growing share of cells scanned per query."""
    import faiss

    n, dim = data.shape
    cells = max(1, int(4 * np.sqrt(n)))
    t0 = time.perf_counter()
    ivf = faiss.IndexIVFFlat(faiss.IndexFlatIP(dim), dim, cells, faiss.METRIC_INNER_PRODUCT)
    ivf.train(data[np.random.default_rng(0).choice(n, min(n, 64 * cells), replace=False)])
    ivf.add(data)
    build = time.perf_counter() - t0
    sweep = []
    for share in (1 / 32, 1 / 16, 1 / 8, 1 / 4):
        ivf.nprobe = max(1, int(np.ceil(cells * share)))
        found, lat = latencies(lambda q: ivf.search(q[None], k)[1][0], queries)
        sweep.append(
            {"share": share, "nprobe": ivf.nprobe, **lat, "recall": round(recall(found, truth), 4)}
        )
    return {"build_s": round(build, 2), "cells": cells, "sweep": sweep}


def one_size(data: np.ndarray, queries: np.ndarray, duck_queries: int) -> dict:
    n = len(data)
    truth = exact_top(data, queries)
    result: dict = {"n": n}

    def numpy_search(q: np.ndarray) -> np.ndarray:
        scores = data @ q
        return np.argpartition(-scores, K - 1)[:K]

    found, lat = latencies(numpy_search, queries)
    result["numpy_exact"] = {
        **lat,
        "recall@100": recall(found, truth),
        "memory_mb": round(data.nbytes / 2**20),
    }

    t0 = time.perf_counter()
    ours = new_index(data, np.arange(n, dtype=np.int64), exact_below=0)
    build = time.perf_counter() - t0
    found, lat = latencies(lambda q: ours.search(q[None], K)[1][0], queries)
    result["faiss_hnsw"] = {
        "build_s": round(build, 2),
        **lat,
        "recall@100": round(recall(found, truth), 4),
        "memory_mb": round(data.nbytes / 2**20 + n * M * 2 * 4 / 2**20),
        "settings": {"M": M, "efConstruction": EF_CONSTRUCTION, "efSearch": EF_SEARCH},
    }
    result["faiss_ivf"] = ivf_sweep(data, queries, truth)

    con = duckdb.connect()
    con.execute(f"CREATE TABLE v (id BIGINT, e FLOAT[{DIM}])")
    t0 = time.perf_counter()
    for start in range(0, n, 200_000):
        block = data[start : start + 200_000]
        table = pa.table(
            {
                "id": np.arange(start, start + len(block)),
                "e": pa.FixedSizeListArray.from_arrays(pa.array(block.ravel()), DIM),
            }
        )
        con.register("block_table", table)
        con.execute("INSERT INTO v SELECT * FROM block_table")
        con.unregister("block_table")
    load = time.perf_counter() - t0

    def duck_search(q: np.ndarray) -> np.ndarray:
        rows = con.execute(
            f"SELECT id FROM v ORDER BY array_cosine_similarity(e, ?::FLOAT[{DIM}]) DESC LIMIT {K}",
            [q.tolist()],
        ).fetchall()
        return np.array([r[0] for r in rows])

    found, lat = latencies(duck_search, queries[:duck_queries])
    result["duckdb_exact"] = {
        "load_s": round(load, 2),
        **lat,
        "recall@100": recall(found, truth[:duck_queries]),
        "queries": duck_queries,
    }
    con.close()
    return result


def real_profiles(store: str) -> dict:
    """Each profiled item of a real store as a query against all of them (itself left out)."""
    con = duckdb.connect(store, read_only=True)
    column = con.sql("SELECT embedding FROM item_features ORDER BY item_id").to_arrow_table()[0]
    con.close()
    data = normalize(np.asarray(column.to_pylist(), dtype=np.float32))
    truth = exact_top(data, data, K + 1)
    t0 = time.perf_counter()
    graph = new_index(data, np.arange(len(data), dtype=np.int64), exact_below=0)
    build = time.perf_counter() - t0
    found, lat = latencies(lambda q: graph.search(q[None], K + 1)[1][0], data)
    return {
        "n": len(data),
        "dim": int(data.shape[1]),
        "build_s": round(build, 3),
        **lat,
        "recall@100": round(recall(found, truth), 4),
        "faiss_ivf": ivf_sweep(data, data, truth, K + 1),
    }


def many_users(data: np.ndarray, users: int, centres: int) -> dict:
    """The evaluation's case: ``users`` queries in one call, the index built for them."""
    ids = [str(i) for i in range(len(data))]
    queries = clustered(users, seed=7, centres=centres)
    t0 = time.perf_counter()
    VectorIndex(ids, data, exact_below=len(data) + 1).search(queries, K)
    exact = time.perf_counter() - t0
    t0 = time.perf_counter()
    VectorIndex(ids, data, exact_below=0).search(queries, K)
    graph = time.perf_counter() - t0
    return {
        "n": len(data),
        "users": users,
        "exact_s": round(exact, 2),
        "build_and_search_s": round(graph, 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=1_000_000)
    parser.add_argument("--duckdb-queries", type=int, default=20)
    parser.add_argument("--users", type=int, nargs="*", default=[1000, 10000])
    parser.add_argument("--sizes", type=int, nargs="*", default=[20_000, 100_000])
    parser.add_argument("--store", help="a store with item profiles (e.g. the demo's)")
    parser.add_argument("--per-centre", type=int, default=500, help="synthetic vectors a cluster")
    args = parser.parse_args()
    centres = max(1, args.n // args.per_centre)
    data = clustered(args.n, seed=1, centres=centres)
    queries = clustered(QUERIES, seed=2, centres=centres)
    results: dict = {}
    if args.store:
        results["real"] = real_profiles(args.store)
    results["synthetic"] = one_size(data, queries, args.duckdb_queries)
    print(json.dumps(results, indent=2), flush=True)
    results["many_users"] = [
        many_users(data[:n], u, centres)
        for n in [*args.sizes, args.n]
        for u in args.users
        if n * u <= 2 * 10**9  # beyond, exact search takes minutes a point
    ]
    print(json.dumps(results["many_users"], indent=2), flush=True)
    results["machine"] = f"{platform.machine()}, {platform.python_version()}"
    out = Path(__file__).parent / "results" / "neighbours.json"
    out.write_text(json.dumps(results, indent=2) + "\n")


if __name__ == "__main__":
    main()
