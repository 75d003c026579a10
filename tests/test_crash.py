"""Crashes and hostile environments: SIGKILL at random points, a full disk, a store path the
user may not write. A scripted model and a fake embedder keep each run to seconds (the same
kill test with the real model and flow is in test_flows.py)."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest
from langchain_core.embeddings import DeterministicFakeEmbedding

import enrich
from enrich.config import EnrichSettings
from enrich.errors import StoreError
from enrich.store import Store, audit
from enrich.testing import GOOD, ScriptedChat

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]
N = 300


def _start(store: Path, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.run_killable", str(store), str(log), str(N)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def _stored(store: Path) -> list[str]:
    if not store.exists():
        return []
    with Store.borrow(str(store)) as s:  # replays the WAL a killed writer left, as runs do
        if s.embedding_dim() is None:
            return []
        return [r[0] for r in s.con.execute("SELECT item_id FROM item_profiles").fetchall()]


def test_sigkill_at_random_points_then_rerun_completes_exactly_once(tmp_path) -> None:
    """10 trials: kill the run at a random moment, run again; every item ends stored once, and
    nothing already stored is sent to the LLM again."""
    rng = random.Random(20261129)
    clean = tmp_path / "clean"
    clean.mkdir()
    t0 = time.monotonic()
    proc = _start(clean / "s.duckdb", clean / "calls")
    _, err = proc.communicate(timeout=300)
    assert proc.returncode == 0, err[-2000:]
    full_s = time.monotonic() - t0
    assert len(_calls(clean / "calls")) == N

    for trial in range(10):
        folder = tmp_path / f"trial{trial}"
        folder.mkdir()
        store, log = folder / "s.duckdb", folder / "calls"
        proc = _start(store, log)
        time.sleep(rng.uniform(0.05, 1.0) * full_s)
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        before = set(_stored(store))
        calls_before = len(_calls(log))
        _assert_killed_run_accounted(store, trial)

        proc = _start(store, log)
        out, err = proc.communicate(timeout=300)
        assert proc.returncode == 0, f"trial {trial}: {err[-2000:]}"
        rerun = _calls(log)[calls_before:]
        stored = _stored(store)
        assert sorted(stored) == sorted(str(i) for i in range(N)), f"trial {trial}"
        assert not {f"Item {i}" for i in before} & set(rerun), f"trial {trial}: paid twice"
        run_id, skipped, generated, hits = out.split()
        assert int(skipped) == len(before), f"trial {trial}"
        assert int(generated) == len(rerun), f"trial {trial}"
        assert int(skipped) + int(generated) + int(hits) == N, f"trial {trial}"
        with duckdb.connect(str(store), read_only=True) as con:
            status = con.execute("SELECT status FROM runs WHERE run_id = ?", [run_id]).fetchall()
        assert status == [("ok",)]


def _assert_killed_run_accounted(store: Path, trial: int) -> None:
    """The killed run's ledger row counts exactly the rows and errors it committed."""
    if not store.exists():
        return
    with Store.borrow(str(store)) as s:
        if s.embedding_dim() is None:
            return
        rows = s.con.execute(
            "SELECT r.status, r.rows_enriched, r.rows_failed, r.llm_calls, "
            "(SELECT count(*) FROM item_profiles p WHERE p.run_id = r.run_id), "
            "(SELECT count(*) FROM enrich_errors e WHERE e.run_id = r.run_id) FROM runs r"
        ).fetchall()
    for _status, enriched, failed, calls, stored, errors in rows:  # running (or ok if it ended)
        assert (enriched, failed) == (stored, errors), f"trial {trial}: ledger {rows}"
        assert calls >= enriched, f"trial {trial}: {calls} calls for {enriched} rows"


@pytest.fixture
def tiny_fs(tmp_path):
    """A 48 MB tmpfs: a real 'No space left on device' (needs root to mount)."""
    mount = tmp_path / "fs"
    mount.mkdir()
    done = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=48m", "tmpfs", str(mount)], capture_output=True
    )
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here: {done.stderr.decode().strip()}")
    try:
        yield mount
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_disk_full_leaves_no_partial_batch_and_the_rerun_completes(tiny_fs) -> None:
    store = tiny_fs / "s.duckdb"
    llm, embedder = ScriptedChat(), DeterministicFakeEmbedding(size=384)
    settings = EnrichSettings(chunk_size=200)
    first = pl.DataFrame({"item_id": range(50), "title": [f"Item {i}" for i in range(50)]})
    enrich.profile_items(first, llm=llm, embedder=embedder, store=str(store), settings=settings)
    filler = tiny_fs / "filler"
    free = shutil.disk_usage(tiny_fs).free
    filler.write_bytes(b"\0" * max(free - 600_000, 0))  # ~0.6 MB left: room for a chunk or two

    many = pl.DataFrame(
        {"item_id": range(3000), "title": [f"Item {i} " + "x" * 300 for i in range(3000)]}
    )
    with pytest.raises((StoreError, duckdb.Error, OSError)) as failed:
        enrich.profile_items(many, llm=llm, embedder=embedder, store=str(store), settings=settings)
    assert "space" in str(failed.value).lower(), failed.value

    filler.unlink()  # space again: the store opens, holds whole chunks only, and resumes
    with Store.borrow(str(store)) as s:
        ids = [r[0] for r in s.con.execute("SELECT item_id FROM item_profiles").fetchall()]
        bad = audit(s)
    # ids 0-49 from the first run, then whole chunks of 200 (ids 0-199, 200-399, ...) only
    assert len(ids) == 50 or len(ids) % 200 == 0, len(ids)
    assert sorted(int(i) for i in ids) == list(range(len(ids)))  # chunks commit in input order
    assert all(rows.height == 0 for rows in bad.values()), bad
    _, report = enrich.profile_items(
        many, llm=llm, embedder=embedder, store=str(store), settings=settings, with_report=True
    )
    assert report.rows_failed == 0 and report.balanced()
    with duckdb.connect(str(store), read_only=True) as con:
        rows = con.execute("SELECT item_id, profile_text FROM item_profiles").fetchall()
    assert sorted(int(i) for i, _ in rows) == list(range(3000))
    assert all(text.startswith(GOOD["summary"].rstrip(".")) for _, text in rows)


AS_NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
NOBODY_SCRIPT = """
import sys
import tempfile
import polars as pl
from langchain_core.embeddings import DeterministicFakeEmbedding
import enrich
from enrich.errors import StoreError
from enrich.store import Store
from enrich.testing import ScriptedChat

items = pl.DataFrame({"item_id": [7], "title": ["Alien"]})
for path in sys.argv[1:]:
    try:
        enrich.profile_items(
            items, llm=ScriptedChat(), embedder=DeterministicFakeEmbedding(size=16), store=path
        )
        print("WROTE", path)
    except StoreError as exc:
        print("REFUSED", exc)
store = Store.open(sys.argv[-1], read_only=True)
print("READ", store.con.execute("SELECT count(*) FROM item_profiles").fetchall()[0][0])
"""


def test_read_only_store_paths_as_a_normal_user() -> None:
    """As an unprivileged user: a folder they may not write and a store file owned by someone
    else are refused with a clear error; the store can still be read."""
    if os.geteuid() != 0 or shutil.which("setpriv") is None:
        pytest.skip("needs root, to run the check as user nobody")
    folder = Path(tempfile.mkdtemp(prefix="enrich-ro-"))
    try:
        folder.chmod(0o755)  # nobody may enter and read, not write
        store = folder / "s.duckdb"
        items = pl.DataFrame({"item_id": [1], "title": ["Heat"]})
        enrich.profile_items(
            items, llm=ScriptedChat(), embedder=DeterministicFakeEmbedding(size=16), store=store
        )
        store.chmod(0o644)
        done = subprocess.run(
            [*AS_NOBODY, sys.executable, "-c", NOBODY_SCRIPT, str(folder / "new.s"), str(store)],
            cwd=ROOT,
            env={**os.environ, "HOME": str(folder)},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert done.returncode == 0, done.stderr[-2000:]
        lines = done.stdout.splitlines()
        assert lines[0].startswith("REFUSED") and "permission" in lines[0].lower(), lines
        assert lines[1].startswith("REFUSED") and "check permissions" in lines[1], lines
        assert lines[2] == "READ 1"
    finally:
        shutil.rmtree(folder)
