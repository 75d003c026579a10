"""The Prefect flows on real data with the real embedded models: incremental nightly runs,
artifacts, the deployment's schedule, kill-and-resume, a real Prefect server, and Dask."""

from __future__ import annotations

import itertools
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import polars as pl
import pytest

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def harness():
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=180):
        yield


@pytest.fixture
def catalogue(tmp_path, ml_items) -> Path:
    path = tmp_path / "items.parquet"
    ml_items.head(20).write_parquet(path)
    return path


def params(items: Path, store: Path, **kw):
    from enrich.config import EnrichSettings
    from flows.nightly import NightlyParams
    from flows.sources import Source

    return NightlyParams(
        items=Source(kind="file", path=str(items)),
        store=str(store),
        settings=EnrichSettings(chunk_size=8),
        **kw,
    )


def profiles(store: Path) -> pl.DataFrame:
    with duckdb.connect(str(store), read_only=True) as con:
        return con.sql("SELECT item_id, profile_text FROM item_profiles ORDER BY item_id").pl()


def test_nightly_is_incremental_and_publishes_its_report(
    harness, catalogue, tmp_path, ml100k
) -> None:
    from prefect.artifacts import Artifact

    from enrich.movielens import load_ml100k_ratings
    from flows.nightly import nightly
    from flows.sources import Source

    ratings = load_ml100k_ratings(ml100k)
    log = tmp_path / "ratings.parquet"
    ratings.filter(pl.col("user_id") <= 10).write_parquet(log)
    store = tmp_path / "f.duckdb"
    kw = {"interactions": Source(kind="file", path=str(log))}
    first = nightly(params(catalogue, store, **kw))
    items, users = first["items"], first["users"]
    assert items["rows_in"] == 20 and items["rows_enriched"] + items["rows_failed"] == 20
    assert users["rows_in"] == 10 and users["rows_enriched"] + users["rows_failed"] == 10
    assert items["chunks"] == 3 and all(n == 0 for n in first["audits"].values())
    assert profiles(store).height == items["rows_enriched"]
    assert _stored(store, running=True) == items["rows_enriched"]  # last merge published
    index = first["neighbours"]  # the item neighbour index beside the store, built
    assert index["rebuilt"] and index["size"] == items["rows_enriched"]

    second = nightly(params(catalogue, store, **kw))
    assert second["neighbours"]["added"] == second["items"]["rows_enriched"]  # only new rows
    for kind, before in (("items", items), ("users", users)):
        again = second[kind]
        assert again["rows_skipped"] == before["rows_enriched"]  # stored rows: no LLM call
        # only the rows that failed last time (they are not stored) are tried again
        assert again["rows_in"] - again["rows_skipped"] == before["rows_failed"]
    artifact = Artifact.get("enrich-nightly-report")
    assert artifact is not None
    table = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
    assert [(r["kind"], r["llm_calls"], r["rows_in"]) for r in table] == [
        ("items", second["items"]["llm_calls"], 20),
        ("users", second["users"]["llm_calls"], 10),
    ]

    frame = pl.read_parquet(catalogue)
    changed = frame.with_columns(
        pl.when(pl.col("item_id").is_in([3, 7]))
        .then(pl.lit("Documentary"))
        .otherwise("genres")
        .alias("genres")
    )
    changed.write_parquet(catalogue)
    redo = profiles(store).filter(pl.col("item_id").is_in(["3", "7"])).height
    third = nightly(params(catalogue, store, **kw))
    stored_items = items["rows_enriched"] + second["items"]["rows_enriched"]
    assert third["items"]["rows_skipped"] == stored_items - redo  # changed items are redone
    assert third["items"]["rows_in"] - third["items"]["rows_skipped"] == (
        redo + items["rows_failed"] - second["items"]["rows_enriched"]  # + last failures left
    )
    stored_users = users["rows_enriched"] + second["users"]["rows_enriched"]
    assert third["users"]["rows_skipped"] == stored_users  # histories show titles: unchanged
    index = third["neighbours"]  # new versions in, replaced ones out, one entry per item
    assert index["added"] == third["items"]["rows_enriched"] and index["removed"] <= redo
    assert index["size"] == profiles(store).height and not index["rebuilt"]


def test_nightly_pins_a_stored_vocabulary(harness, catalogue, tmp_path) -> None:
    """Items choose their themes from the vocabulary stored under the given name; the labels are
    part of the prompt version, so the same vocabulary keeps the next night incremental."""
    from enrich.store import Store
    from enrich.vocab import Vocabulary
    from flows.nightly import nightly

    store = tmp_path / "f.duckdb"
    labels = ("heroes", "villains", "ordinary people")
    with Store.borrow(str(store)) as opened:
        Vocabulary("film-themes", labels).save(opened)
    run = params(catalogue, store, vocabularies={"themes": "film-themes"})
    first = nightly(run)["items"]
    assert first["rows_enriched"] >= 16
    with duckdb.connect(str(store), read_only=True) as con:
        themes = con.execute(
            "SELECT DISTINCT unnest(CAST(json_extract(attributes, '$.themes') AS VARCHAR[])) "
            "FROM item_profiles"
        ).fetchall()
    assert themes and {t for (t,) in themes} <= set(labels)
    assert nightly(run)["items"]["rows_skipped"] == first["rows_enriched"]
    with pytest.raises(Exception, match="no vocabulary 'moods'"):
        nightly(params(catalogue, store, vocabularies={"mood": "moods"}))


def test_batch_mode_submits_one_night_and_the_next_night_collects(harness, tmp_path) -> None:
    """``--batch``'s settings: the first night submits and returns (every row pending), the
    batch finishes, the second night collects it without submitting again."""
    import threading

    from enrich.config import EnrichSettings
    from enrich.store import Store
    from enrich.testing import ScriptedChat
    from flows.nightly import NightlyParams, nightly
    from flows.sources import Source
    from tests.batch_server import BatchServer
    from tests.test_batches import catalogue, stored

    source, store = tmp_path / "items.parquet", tmp_path / "f.duckdb"
    catalogue(6).write_parquet(source)
    hold = threading.Event()
    with BatchServer(ScriptedChat(), hold=hold) as srv:
        run = NightlyParams(
            items=Source(kind="file", path=str(source)),
            store=str(store),
            llm=f"{srv.url}#m",
            settings=EnrichSettings(batch=True, batch_wait=False, batch_poll_s=0.05),
        )
        first = nightly(run)["items"]
        assert first["rows_pending"] == 6 and first["rows_generated"] == 0
        hold.set()
        srv.wait_for_status(srv.created()[0], "completed")
        second = nightly(run)["items"]
    assert second["rows_generated"] == 6 and second["rows_pending"] == 0
    assert second["rows_skipped"] == 0 and len(srv.created()) == 1 and len(srv.executed) == 6
    assert len(stored(Store.open(store, read_only=True))) == 6


def test_a_reader_process_sees_whole_chunks_while_the_flow_runs(
    harness, ml_items, tmp_path, caplog
) -> None:
    """Another process reads the features in a loop through ``Store.open_reader`` while a
    nightly run merges 8 chunks: it never fails, sees only whole chunks, newer each time, and
    the flow never waits for it (no store-lock wait is logged)."""
    from enrich.config import EnrichSettings
    from enrich.testing import ScriptedChat
    from flows.nightly import NightlyParams, nightly
    from flows.sources import Source
    from tests.batch_server import BatchServer

    source, store, stop = tmp_path / "items.parquet", tmp_path / "f.duckdb", tmp_path / "stop"
    ml_items.head(61).write_parquet(source)  # 7 chunks of 8 and one of 5
    with BatchServer(ScriptedChat()) as srv:
        run = NightlyParams(
            items=Source(kind="file", path=str(source)),
            store=str(store),
            llm=f"{srv.url}#m",
            settings=EnrichSettings(chunk_size=8, structured_method="json_schema"),
            snapshot_every_s=0,  # a snapshot after every merge
        )
        reader = subprocess.Popen(
            [sys.executable, "-m", "tests.read_during_flow", str(store), str(stop)],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        try:
            report = nightly(run)["items"]
            time.sleep(1.0)  # the reader opens the final snapshot too
        finally:
            stop.touch()
            out, err = reader.communicate(timeout=60)
    assert reader.returncode == 0, err[-3000:]
    assert report["rows_generated"] == 61 and report["chunks"] == 8, report
    seen = json.loads(out)
    sizes = [len(s["ids"]) for s in seen]
    assert all(n % 8 in (0, 5) for n in sizes), sizes  # sums of whole chunks only
    assert sizes[-1] == 61 and len(set(sizes)) >= 3, sizes  # read while the chunks came in
    for before, after in itertools.pairwise(seen):  # each read as new as the one before, or newer
        assert set(before["ids"]) <= set(after["ids"]) and before["file"] <= after["file"]
    assert all("f.duckdb.snapshots" in s["file"] for s in seen)  # never the writer's file
    assert "held by another process" not in caplog.text


def test_deployment_carries_the_cron_schedule(catalogue, tmp_path) -> None:
    from flows.serve import DEFAULT_CRON, build_deployment

    deployment = build_deployment(params(catalogue, tmp_path / "f.duckdb"))
    assert DEFAULT_CRON == "0 2 * * *"
    assert [s.schedule.cron for s in deployment.schedules] == ["0 2 * * *"]
    custom = build_deployment(params(catalogue, tmp_path / "f.duckdb"), cron="30 1 * * *")
    assert custom.schedules[0].schedule.cron == "30 1 * * *"
    assert custom.parameters["params"]["store"].endswith("f.duckdb")


def _start_nightly(items: Path, store: Path, env: dict[str, str]) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "flows.nightly",
            "--items",
            str(items),
            "--store",
            str(store),
            "--chunk-size",
            "4",
        ],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )


def _stored(store: Path, running: bool = False) -> int:
    """Items stored: read from the newest snapshot while the flow runs (never blocking it),
    from the file itself once no process writes."""
    from enrich import snapshots

    if running and snapshots.newest(store) is None:
        return -1  # the flow has not published its first snapshot yet
    try:
        with duckdb.connect(
            str(snapshots.newest(store) if running else store), read_only=True
        ) as con:
            return con.execute("SELECT count(*) FROM item_profiles").fetchall()[0][0]
    except duckdb.Error:  # no profile table yet
        return -1


def test_killed_run_resumes_exactly_once(catalogue, tmp_path) -> None:
    store = tmp_path / "f.duckdb"
    env = {**os.environ, "PREFECT_HOME": str(tmp_path / "prefect")}
    proc = _start_nightly(catalogue, store, env)
    try:
        deadline = time.monotonic() + 600
        while _stored(store, running=True) < 4 and time.monotonic() < deadline:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            time.sleep(0.5)
    finally:  # mid-run: some chunks merged, one in flight (and never leave it running)
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()
    done_before = _stored(store)
    assert 4 <= done_before < 20

    proc = _start_nightly(catalogue, store, env)
    try:
        out, err = proc.communicate(timeout=900)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 0, err[-3000:]
    report = json.loads(out.strip().splitlines()[-1])
    assert report["items"]["rows_skipped"] == done_before  # merged chunks: not enriched again
    assert report["items"]["llm_calls"] == 20 - done_before
    with duckdb.connect(str(store), read_only=True) as con:
        ids = con.execute("SELECT item_id FROM item_profiles").fetchall()
    assert sorted(i for (i,) in ids) == sorted(pl.read_parquet(catalogue)["item_id"].cast(str))


def test_dask_workers_share_one_rate_limit_and_one_budget_per_run(catalogue, tmp_path) -> None:
    """2 Dask worker processes against the local llama.cpp server behind a counting proxy, with a
    real Prefect server: the request rate holds in every 1-second window, the run's tokens stay
    within its budget plus the requests in flight, each run has its own budget, and the rest is
    done exactly once — and the profiles the three Dask nights stored equal those one
    single-process night (threads) stores for the first 10 items."""
    from tests.servers import FaultProxy, llama_server, max_in_window, prefect_server

    store = tmp_path / "f.duckdb"
    budget, rpm = 1_500, 60  # ~4 requests (~430 tokens each) a run; one request a second
    limits = {"requests_per_minute": rpm, "max_tokens_total": budget, "fix_attempts": 0}
    with (
        prefect_server(str(tmp_path / "server-home")) as api,
        llama_server() as llm,
        FaultProxy(llm, rate=0.0) as proxy,
    ):
        env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(tmp_path / "p")}

        def night(settings: dict) -> tuple[dict, list]:
            before = len(proxy.requests)
            out = _run_on_runner(
                catalogue, store, f"{proxy.url}#smollm2", "dask", tmp_path, env, settings
            )
            report = json.loads(out.strip().splitlines()[-1])
            return report["items"], proxy.requests[before:]

        first, sent1 = night(limits)
        second, sent2 = night(limits)
        rest, sent3 = night({"fix_attempts": 0})
        single, half = tmp_path / "single.duckdb", tmp_path / "items10.parquet"
        pl.read_parquet(catalogue).head(10).write_parquet(half)
        _run_on_runner(
            half, single, f"{llm}#smollm2", "threads", tmp_path, env, {"fix_attempts": 0}
        )

    for sent in (sent1, sent2):
        assert max_in_window([t for t, _, _ in sent]) <= rpm // 60 + 1
        biggest = max(n for _, _, n in sent)
        in_flight = 2 * 2  # 2 workers x max_concurrency 2
        assert budget <= sum(n for _, _, n in sent) <= budget + in_flight * biggest
    assert first["rows_failed"] > 0 and second["rows_generated"] > 0  # a budget per run
    assert rest["rows_generated"] > 0  # without a budget, the rest
    with duckdb.connect(str(store), read_only=True) as con:
        budget_stops = con.execute(
            "SELECT count(*) FROM enrich_errors WHERE stage = 'budget'"
        ).fetchone()[0]
        stored = {i for (i,) in con.execute("SELECT item_id FROM item_profiles").fetchall()}
        failing = {
            i
            for (i,) in con.execute(
                "SELECT DISTINCT entity_id FROM enrich_errors WHERE stage = 'validation'"
            ).fetchall()
        }
    assert budget_stops > 0
    titles = dict(pl.read_parquet(catalogue).select(pl.col("item_id").cast(str), "title").rows())
    asked = [_ids_in(sent, titles) for sent in (sent1, sent2, sent3)]
    assert not (asked[0] & asked[1] or asked[0] & asked[2] or asked[1] & asked[2])  # once
    assert stored | failing == set(titles)  # every item: a profile or a recorded failure
    alone = profiles(single)  # the first 10 items, in one process
    on_dask = profiles(store).filter(pl.col("item_id").is_in(alone["item_id"].to_list()))
    assert alone.height >= 8 and alone.equals(on_dask)


def _run_on_runner(
    items: Path,
    store: Path,
    llm: str,
    runner: str,
    tmp_path: Path,
    env: dict[str, str],
    settings: dict | None = None,
) -> str:
    """``tests/run_flow_on_dask.py`` in a process of its own; its stdout."""
    result = subprocess.run(
        [
            *(sys.executable, str(ROOT / "tests" / "run_flow_on_dask.py"), str(items)),
            *(str(store), llm, runner, str(tmp_path / "dask")),
            *([json.dumps(settings)] if settings is not None else []),
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def _ids_in(sent: list, titles: dict[str, str]) -> set[str]:
    """The items whose title a request shows."""
    bodies = [
        " ".join(str(m.get("content")) for m in json.loads(b)["messages"]) for _, b, _ in sent
    ]
    return {i for i, t in titles.items() if any(t in body for body in bodies)}
