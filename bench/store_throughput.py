"""Feature-store write and read throughput and peak memory, beside raw DuckDB, up to 10M rows.

For each size N (384-d embeddings by default), fresh child processes each run one measure and
report seconds and peak RSS (``ru_maxrss``); the parent builds nothing itself (a child started
by a process that once held gigabytes reports that as its own peak). Rows are generated and
written in chunks of ``--chunk-rows`` (default 1M), each chunk one transaction, as a nightly job
writes them — 10M rows of 384-d float32 are 15 GB, never in memory at once. Rows are seeded per
chunk, so both sides write identical data; a chunk's generation is not timed, only its write.

- write: ``Store.upsert_profiles("items", chunk)`` per chunk ("ours") vs. the raw DuckDB Arrow
  insert of the same chunk into an identical ``raw_profiles`` table ("raw"), each into a fresh
  file, in the order raw, ours, ours, raw (ABBA), so neither side gains from going first;
- re-write of the same rows (idempotent upsert: nothing changes), for N <= 1M only;
- read, after one untimed warm-up read in the same child, raw, ours, ours, raw: a raw
  ``SELECT * FROM raw_profiles`` streamed as Arrow batches of ``--chunk-rows`` rows vs.
  ``Store.read_profiles("items", keys, ...)`` over successive chunks of ``--chunk-rows`` keys.

Files go to a temporary folder beside ``bench/`` (not /tmp, which may be small), each deleted
after its write except the last raw one, which gets the profile rows too and serves the reads
(about 2 KB a row: ~20 GB per table at 10M rows). DuckDB caches table blocks up to its memory limit
(80% of RAM unless ``--memory-limit`` sets it, for both sides alike), so without one the peak
RSS grows with N whatever the chunk size. Change detection, once measured here too, is measured
by ``bench/detection_memory.py`` and ``bench/change_detection.py``.

    .venv/bin/python bench/store_throughput.py --sizes 1000000 10000000
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from importlib.metadata import version
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import pyarrow as pa

    from enrich.store import Store

HERE = Path(__file__).resolve().parent
REWRITE_MAX = 1_000_000
"""The idempotent re-write is measured up to this many rows."""


def profiles(start: int, n: int, dim: int) -> pa.Table:
    """Rows ``start`` to ``start + n`` of the benchmark's item profiles, seeded by ``start``.

    Built in Arrow directly: the embedding column wraps the NumPy array without a copy."""
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    vectors = np.random.default_rng(start).standard_normal((n, dim), dtype=np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    ids = pc.cast(pa.array(np.arange(start, start + n)), pa.string())
    return pa.table(
        {
            "item_id": ids,
            "model": pa.repeat("m", n),
            "prompt_version": pa.repeat("p", n),
            "input_hash": pc.utf8_lpad(ids, 64, "0"),
            "profile_text": pc.binary_join_element_wise("profile of item ", ids, ""),
            "attributes": pa.repeat('{"summary": "x"}', n),
            "embedding": pa.FixedSizeListArray.from_arrays(pa.array(vectors.ravel()), dim),
            "embedding_model": pa.repeat("all-MiniLM-L6-v2", n),
            "run_id": pa.repeat("r", n),
            "created_at": pa.repeat(pa.scalar(1_767_225_600_000_000, pa.timestamp("us")), n),
        }
    )


def fresh_store(path: Path, dim: int) -> Store:
    """A new store file with the profile tables and a ``raw_profiles`` twin of ``item_profiles``."""
    from enrich.store import Store

    store = Store.open(path)
    store.ensure_profile_tables(dim)
    store.con.execute("CREATE TABLE raw_profiles AS SELECT * FROM item_profiles LIMIT 0")
    store.con.execute("ALTER TABLE raw_profiles ADD PRIMARY KEY (item_id, model, prompt_version)")
    return store


def write_chunks(store: Store, side: str, n: int, chunk_rows: int, dim: int) -> tuple[float, float]:
    """Write rows 0 to ``n`` chunk by chunk, one transaction each: (write s, generation s)."""
    write_s = generate_s = 0.0
    for start in range(0, n, chunk_rows):
        t0 = time.perf_counter()
        rows = profiles(start, min(chunk_rows, n - start), dim)
        t1 = time.perf_counter()
        with store.transaction():
            if side == "ours":
                store.upsert_profiles("items", rows)
            else:
                store.con.register("staged_rows", rows)
                store.con.execute("INSERT INTO raw_profiles SELECT * FROM staged_rows")
                store.con.unregister("staged_rows")
        write_s += time.perf_counter() - t1
        generate_s += t1 - t0
        del rows  # before the next chunk is made: one chunk in memory at a time
    return write_s, generate_s


def read_chunks(store: Store, side: str, n: int, chunk_rows: int) -> tuple[float, int]:
    """Read every row as a consumer would, ``chunk_rows`` at a time: (read s, rows read)."""
    if side == "raw":
        t0 = time.perf_counter()
        reader = store.con.sql("SELECT * FROM raw_profiles").to_arrow_reader(batch_size=chunk_rows)
        count = sum(batch.num_rows for batch in reader)
        return time.perf_counter() - t0, count
    seconds, count = 0.0, 0
    for start in range(0, n, chunk_rows):
        keys = [str(i) for i in range(start, min(start + chunk_rows, n))]
        t0 = time.perf_counter()
        count += store.read_profiles("items", keys, "m", "p").height
        seconds += time.perf_counter() - t0
    return seconds, count


def child(
    mode: str, side: str, path: Path, n: int, chunk_rows: int, dim: int, memory_limit: str | None
) -> None:
    """One measure, printed as a JSON line: ``write`` one side into a fresh file, ``fill`` the
    kept file with our rows (and time their re-write), or ``read`` one side of it."""
    from enrich.store import Store

    out: dict[str, float | None] = {}
    if mode == "read":
        store = Store.open(path, read_only=True)
    else:
        store = fresh_store(path, dim) if mode == "write" else Store.open(path)
    if memory_limit:
        store.con.execute(f"SET memory_limit = '{memory_limit}'")
    if mode == "read":
        read_chunks(store, side, n, chunk_rows)  # warm-up, untimed
        out["seconds"], count = read_chunks(store, side, n, chunk_rows)
        assert count == n, count
    else:
        out["seconds"], out["generate_s"] = write_chunks(store, side, n, chunk_rows, dim)
        if mode == "fill" and n <= REWRITE_MAX:
            out["rewrite_s"] = write_chunks(store, side, n, chunk_rows, dim)[0]
        table = "item_profiles" if side == "ours" else "raw_profiles"
        assert store.scalar(f"SELECT count(*) FROM {table}") == n
    store.close()
    out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out["file_mb"] = path.stat().st_size / 2**20
    print(json.dumps(out))


def run_child(mode: str, side: str, path: Path, n: int, args: argparse.Namespace) -> dict:
    """Run :func:`child` in a fresh process and return what it printed."""
    sizing = ["--chunk-rows", str(args.chunk_rows), "--dim", str(args.dim)]
    if args.memory_limit:
        sizing += ["--memory-limit", args.memory_limit]
    done = subprocess.run(
        [sys.executable, __file__, "--child", mode, side, str(path), str(n), *sizing],
        capture_output=True,
        text=True,
    )
    if done.returncode:
        sys.exit(f"{mode} {side} at {n} rows failed:\n{done.stderr}")
    r = json.loads(done.stdout.strip().splitlines()[-1])
    print(f"  {mode:5} {side:4} {r['seconds']:8.2f} s  peak RSS {r['peak_rss_mb']:7.0f} MB")
    return r


def measure(n: int, args: argparse.Namespace) -> dict[str, Any]:
    """Writes, then reads, of ``n`` rows, each in a child process, raw, ours, ours, raw."""
    order = ("raw", "ours", "ours", "raw")
    writes: dict[str, list[dict]] = {"raw": [], "ours": []}
    reads: dict[str, list[dict]] = {"raw": [], "ours": []}
    with tempfile.TemporaryDirectory(dir=HERE.parent) as tmp:
        for i, side in enumerate(order):
            path = Path(tmp) / f"write-{i}.duckdb"
            writes[side].append(run_child("write", side, path, n, args))
            if i < len(order) - 1:  # the last (raw) file is kept for the reads
                path.unlink()
        fill = run_child("fill", "ours", path, n, args)  # ours beside raw in the kept file
        for side in order:
            reads[side].append(run_child("read", side, path, n, args))
    w = {s: [r["seconds"] for r in rs] for s, rs in writes.items()}
    rd = {s: [r["seconds"] for r in rs] for s, rs in reads.items()}
    mean = {k: {s: sum(v) / len(v) for s, v in d.items()} for k, d in (("w", w), ("r", rd))}
    return {
        "rows": n,
        "dim": args.dim,
        "chunk_rows": args.chunk_rows,
        "memory_limit": args.memory_limit,
        "raw_write_s": w["raw"],
        "ours_write_s": w["ours"],
        "raw_write_rows_s": n / mean["w"]["raw"],
        "ours_write_rows_s": n / mean["w"]["ours"],
        "write_ratio": mean["w"]["raw"] / mean["w"]["ours"],
        "generate_s": writes["raw"][0]["generate_s"],
        "rewrite_s": fill.get("rewrite_s"),
        "raw_read_s": rd["raw"],
        "ours_read_s": rd["ours"],
        "raw_read_rows_s": n / mean["r"]["raw"],
        "ours_read_rows_s": n / mean["r"]["ours"],
        "read_ratio": mean["r"]["raw"] / mean["r"]["ours"],
        "peak_rss_mb": {
            "raw_write": [r["peak_rss_mb"] for r in writes["raw"]],
            "ours_write": [r["peak_rss_mb"] for r in writes["ours"]],
            "fill": fill["peak_rss_mb"],
            "raw_read": [r["peak_rss_mb"] for r in reads["raw"]],
            "ours_read": [r["peak_rss_mb"] for r in reads["ours"]],
        },
        "file_mb": {
            "raw": writes["raw"][0]["file_mb"],
            "ours": writes["ours"][0]["file_mb"],
            "both": fill["file_mb"],
        },
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs, Python "
        f"{platform.python_version()}, DuckDB {version('duckdb')}",
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--chunk-rows", type=int, default=1_000_000)
    parser.add_argument("--dim", type=int, default=384)
    parser.add_argument("--memory-limit", help="DuckDB's, both sides (default: DuckDB's own)")
    parser.add_argument("--out", default=str(HERE / "results" / "store_throughput.json"))
    parser.add_argument("--child", nargs=4, metavar=("MODE", "SIDE", "PATH", "ROWS"))
    args = parser.parse_args()
    if args.child:
        mode, side, path, n = args.child
        child(mode, side, Path(path), int(n), args.chunk_rows, args.dim, args.memory_limit)
        return
    results = []
    for n in args.sizes:
        limit = f", DuckDB memory limit {args.memory_limit}" if args.memory_limit else ""
        print(f"{n:,} rows, {args.dim}-d, chunks of {args.chunk_rows:,}{limit}:")
        results.append(measure(n, args))
    print(
        f"\n{'rows':>11} {'raw w/s':>9} {'ours w/s':>9} {'ours/raw':>8} {'rewrite s':>9} "
        f"{'raw r/s':>9} {'ours r/s':>9} {'ours/raw':>8} {'peak RSS MB: raw w':>18} "
        f"{'ours w':>6} {'raw r':>6} {'ours r':>6}"
    )
    for r in results:
        rss = {k: max(v) for k, v in r["peak_rss_mb"].items() if isinstance(v, list)}
        rewrite = "-" if r["rewrite_s"] is None else f"{r['rewrite_s']:.2f}"
        print(
            f"{r['rows']:>11,} {r['raw_write_rows_s']:>9.0f} {r['ours_write_rows_s']:>9.0f} "
            f"{r['write_ratio']:>8.2f} {rewrite:>9} {r['raw_read_rows_s']:>9.0f} "
            f"{r['ours_read_rows_s']:>9.0f} {r['read_ratio']:>8.2f} {rss['raw_write']:>18.0f} "
            f"{rss['ours_write']:>6.0f} {rss['raw_read']:>6.0f} {rss['ours_read']:>6.0f}"
        )
    Path(args.out).parent.mkdir(exist_ok=True)
    Path(args.out).write_text(json.dumps({"write_read": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
