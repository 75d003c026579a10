"""Batch mode against a local provider (tests/batch_server.py: OpenAI's Files, Batches and Chat
Completions endpoints, driven by the official openai SDK): partial failures, expiry,
cancellation, submit-and-return across runs, a process SIGKILLed between submit and collect or
while the batch is being created, files split at the limits. Every row ends stored once or
recorded; no request is run twice; the ledger adds up to what the provider reports.

The fault tests answer with a scripted model inside the server; the end-to-end tests at the end
run the real embedded model behind it, and ``enrich batch run`` on a file."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import openai
import polars as pl
import pytest

from enrich import profile_items
from enrich.config import EnrichSettings
from enrich.errors import EnrichError
from enrich.llm import resolve_llm
from enrich.llm.batch_format import chat_body, request_line
from enrich.schemas import ItemProfile
from enrich.store import Store
from enrich.testing import HashEmbedder, ScriptedChat
from tests.batch_server import BatchServer

ROOT = Path(__file__).resolve().parents[1]
SETTINGS = {"batch": True, "batch_poll_s": 0.05, "structured_method": "json_schema"}


def catalogue(n: int) -> pl.DataFrame:
    return pl.DataFrame(
        {"item_id": range(n), "title": [f"Item {i} ({1990 + i})" for i in range(n)]}
    )


def run(srv: BatchServer, store: Store, n: int = 6, **settings):
    return profile_items(
        catalogue(n),
        llm=f"{srv.url}#m",
        store=store,
        embedder=HashEmbedder(),
        settings=EnrichSettings(**(SETTINGS | settings)),
        with_report=True,
    )


def stored(store: Store) -> list[str]:
    return [r for (r,) in store.con.execute("SELECT item_id FROM item_profiles").fetchall()]


def errors(store: Store) -> pl.DataFrame:
    return store.con.sql("SELECT run_id, entity_id, stage, error FROM enrich_errors").pl()


def provider_usage(srv: BatchServer) -> tuple[int, int]:
    """(requests run, prompt tokens) by every output and error file the provider wrote (a line
    without a response is a request the batch ended before running)."""
    lines = tokens = 0
    for meta, data in srv.files.values():
        if meta["purpose"] == "batch_output":
            for text in data.decode().splitlines():
                response = json.loads(text).get("response")
                lines += response is not None
                tokens += ((response or {}).get("body", {}).get("usage") or {}).get(
                    "prompt_tokens", 0
                )
    return lines, tokens


def ledger(store: Store) -> tuple[int, int]:
    calls, tokens = store.con.execute("SELECT sum(llm_calls), sum(tokens_in) FROM runs").fetchone()
    return int(calls), int(tokens)


def test_partial_failures_are_recorded_and_only_they_are_sent_again() -> None:
    failing = ("Item 2 ", "Item 4 ")
    with BatchServer(
        ScriptedChat(), fail=lambda line: any(f in json.dumps(line["body"]) for f in failing)
    ) as srv:
        store = Store.open(None)
        _, first = run(srv, store)
        assert sorted(stored(store)) == ["0", "1", "3", "5"]
        errs = errors(store)
        assert sorted(errs["entity_id"]) == ["2", "4"] and set(errs["stage"]) == {"llm"}
        assert errs["error"].str.contains("injected fault").all()
        assert first.status == "partial" and len(srv.created()) == 1

        srv.fail = lambda line: False
        _, second = run(srv, store)
        assert sorted(stored(store)) == [str(i) for i in range(6)]
        assert second.rows_generated == 2 and second.rows_skipped == 4
        assert len(srv.created()) == 2 and len(srv.executed) == 8  # 6, then the 2 that failed
        assert srv.online == 0
        assert ledger(store) == provider_usage(srv)


def test_enrich_batch_list_shows_the_manifest(tmp_path, capsys) -> None:
    from enrich.cli import main

    path = tmp_path / "f.duckdb"
    with BatchServer(ScriptedChat()) as srv:
        with Store.borrow(str(path)) as store:
            run(srv, store, n=3)
        assert main(["batch", "list", "--store", str(path)]) == 0
    shown = capsys.readouterr().out
    assert srv.created()[0] in shown and "completed" in shown


def test_an_expired_batch_keeps_what_ran_and_the_next_run_asks_the_rest() -> None:
    with BatchServer(ScriptedChat(), expire_after=2, step=2) as srv:
        store = Store.open(None)
        run(srv, store)
        assert len(stored(store)) == 2
        errs = errors(store)
        assert errs.height == 4 and set(errs["stage"]) == {"batch"}
        assert errs["error"].str.contains("batch_expired").all()
        assert store.scalar("SELECT status FROM llm_batches") == "expired"

        srv.expire_after = None
        run(srv, store)
        assert len(stored(store)) == 6 and len(srv.executed) == 6
        assert ledger(store) == provider_usage(srv)


def test_submit_and_return_then_the_next_run_collects_without_submitting_again() -> None:
    hold = threading.Event()
    with BatchServer(ScriptedChat(), hold=hold) as srv:
        store = Store.open(None)
        out, first = run(srv, store, batch_wait=False)
        assert first.status == "pending" and stored(store) == []
        assert out["profile_text"].null_count() == 6
        assert set(errors(store)["stage"]) == {"pending"}

        _, second = run(srv, store, batch_wait=False)  # still running: nothing new submitted
        assert second.status == "pending" and len(srv.created()) == 1

        hold.set()
        srv.wait_for_status(srv.created()[0], "completed")
        _, third = run(srv, store, batch_wait=False)
        assert third.status == "ok" and third.rows_generated == 6
        assert sorted(stored(store)) == [str(i) for i in range(6)]
        assert len(srv.created()) == 1 and len(srv.executed) == 6
        assert ledger(store) == provider_usage(srv)


def test_a_cancelled_batch_records_its_rows_and_the_next_run_sends_them_again() -> None:
    hold = threading.Event()
    with BatchServer(ScriptedChat(), hold=hold) as srv:
        store = Store.open(None)
        run(srv, store, batch_wait=False)
        client = openai.OpenAI(base_url=srv.url, api_key="unused")
        assert client.batches.cancel(srv.created()[0]).status == "cancelling"
        hold.set()
        srv.wait_for_status(srv.created()[0], "cancelled")
        run(srv, store)
        errs = errors(store).filter(pl.col("stage") == "batch")
        assert errs.height == 6 and errs["error"].str.contains("batch_cancelled").all()
        run(srv, store)
        assert len(stored(store)) == 6 and len(srv.created()) == 2


def test_files_are_cut_at_the_request_limit_and_a_request_over_the_byte_limit_is_recorded():
    with BatchServer(ScriptedChat()) as srv:
        store = Store.open(None)
        run(srv, store, n=5, batch_max_requests=2)
        assert len(srv.created()) == 3 and len(stored(store)) == 5
        sizes = store.con.execute("SELECT n_requests FROM llm_batches ORDER BY 1").fetchall()
        assert [n for (n,) in sizes] == [1, 2, 2]

        other = Store.open(None)
        _, report = run(srv, other, n=2, batch_max_bytes=1024)  # a request is ~4 KB
        errs = errors(other)
        assert report.rows_failed == 2 and set(errs["stage"]) == {"input"}
        assert errs["error"].str.contains("over the batch file limit").all()
        assert len(srv.created()) == 3  # nothing submitted for them


def test_the_executor_keeps_the_schema_field_order() -> None:
    """A grammar writes fields in the schema's order, and the order steers a small model (an
    alphabetical schema had it write the summary last, copying the title: 3/6 junk)."""
    from langchain_core.messages import HumanMessage

    from enrich.batch_run import execute

    seen: list[list[str]] = []

    class Recording(ScriptedChat):
        def with_structured_output(self, schema, **kwargs):  # type: ignore[override]
            seen.append(list(schema["properties"]))
            return super().with_structured_output(schema, **kwargs)

    body = chat_body(resolve_llm("http://127.0.0.1:9/v1#m"), ItemProfile)
    out, err = execute([request_line("a", body, [HumanMessage("Heat (1995)")])], Recording())
    fields = list(ItemProfile.model_json_schema()["properties"])
    assert seen == [fields] and fields != sorted(fields)
    assert len(out) == 1 and err == []


def test_batch_mode_refuses_a_model_without_a_batches_api() -> None:
    with pytest.raises(EnrichError, match="enrich batch run"):
        profile_items(
            catalogue(2),
            llm=ScriptedChat(),
            store=Store.open(None),
            embedder=HashEmbedder(),
            settings=EnrichSettings(batch=True),
        )


def _start(srv: BatchServer, store: Path, n: int = 6) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.run_batch_job", srv.url, str(store), str(n)],
        cwd=ROOT,
        env=os.environ.copy(),
        stderr=subprocess.PIPE,
        text=True,
    )


def _kill(proc: subprocess.Popen) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)


def test_a_process_killed_between_submit_and_collect_is_collected_by_the_next_run(
    tmp_path,
) -> None:
    hold = threading.Event()
    path = tmp_path / "f.duckdb"
    with BatchServer(ScriptedChat(), hold=hold) as srv:
        proc = _start(srv, path)
        srv.wait_for_batches(1)
        deadline = time.monotonic() + 30  # the process records the batch id, then polls
        while _manifest(path, proc) != "submitted":
            assert time.monotonic() < deadline
            time.sleep(0.1)
        _kill(proc)
        hold.set()
        store = Store.open(path)
        _, report = run(srv, store)
        assert report.rows_generated == 6 and report.status == "ok"
        assert sorted(stored(store)) == [str(i) for i in range(6)]
        assert len(srv.created()) == 1 and len(srv.executed) == 6
        assert ledger(store) == provider_usage(srv)


def test_a_batch_created_by_a_process_killed_before_it_heard_back_is_found_not_sent_again(
    tmp_path,
) -> None:
    path = tmp_path / "f.duckdb"
    with BatchServer(ScriptedChat(), hang_create=True) as srv:
        proc = _start(srv, path)
        srv.wait_for_batches(1)
        time.sleep(0.3)
        _kill(proc)
        store = Store.open(path)
        assert store.con.execute("SELECT status, batch_id FROM llm_batches").fetchall() == [
            ("preparing", None)
        ]
        srv.hang_create = False
        _, report = run(srv, store)
        assert report.rows_generated == 6
        assert len(srv.created()) == 1 and len(srv.executed) == 6
        assert store.scalar("SELECT batch_id FROM llm_batches") == srv.created()[0]


def _manifest(path: Path, proc: subprocess.Popen) -> str | None:
    """The status of the (one) submission the running process recorded, read without taking
    its write lock (a copy of the file)."""
    assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
    copy = path.with_suffix(".copy")
    try:
        copy.write_bytes(path.read_bytes())
        wal = path.with_suffix(".duckdb.wal")
        if wal.exists():
            copy.with_suffix(".copy.wal").write_bytes(wal.read_bytes())
        store = Store.open(copy, read_only=True)
        row = store.con.execute("SELECT status FROM llm_batches").fetchone()
        store.close()
    except Exception:  # the file mid-write, or no table yet
        return None
    return row[0] if row else None


# -- the real embedded model ---------------------------------------------------------------------


@pytest.mark.slow
def test_enrich_batch_run_executes_a_file_with_the_embedded_model(tmp_path) -> None:
    from enrich.cli import main

    body = chat_body(resolve_llm("http://127.0.0.1:9/v1#smollm2"), ItemProfile)
    prompt = "Describe this film as JSON.\n<data>\ntitle: Heat (1995)\n</data>"
    from langchain_core.messages import HumanMessage

    lines = [request_line(f"r{i}", body, [HumanMessage(prompt)]) for i in range(3)]
    lines.append({"method": "POST", "url": "/v1/chat/completions", "body": body})  # no custom_id
    source = tmp_path / "in.jsonl"
    source.write_text("".join(json.dumps(x) + "\n" for x in lines))
    assert main(["batch", "run", str(source), "--output", str(tmp_path / "out.jsonl")]) == 0
    out = [json.loads(t) for t in (tmp_path / "out.jsonl").read_text().splitlines()]
    err = [json.loads(t) for t in (tmp_path / "out.errors.jsonl").read_text().splitlines()]
    assert [x["custom_id"] for x in out] == ["r0", "r1", "r2"]
    for x in out:
        content = x["response"]["body"]["choices"][0]["message"]["content"]
        ItemProfile.model_validate_json(content)  # the grammar held the schema
        assert x["response"]["body"]["usage"]["prompt_tokens"] > 0
    assert len(err) == 1 and err[0]["response"]["status_code"] == 400
    assert "custom_id" in err[0]["response"]["body"]["error"]["message"]

    (tmp_path / "bad.jsonl").write_text('{"custom_id": "a"}\nnot json\n')
    assert main(["batch", "run", str(tmp_path / "bad.jsonl"), "--output", str(tmp_path / "x")]) == 2


@pytest.mark.slow
def test_enrich_batch_serve_keeps_its_batches_across_a_restart(tmp_path, ml_items) -> None:
    """End to end with the embedded model: ``enrich batch serve`` (a real process) is SIGKILLed
    while it runs a submitted batch; started again on the same state folder, it runs the batch
    again and the next run collects it: one batch, every row stored (schema-valid) or recorded
    once, as many valid as the online path gives these items (6/6 at the time of writing)."""
    from tests.servers import free_port

    port, state = free_port(), tmp_path / "state"

    def serve() -> subprocess.Popen:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "enrich.cli", "batch", "serve"),
                *("--port", str(port), "--state", str(state)),
            ],
            cwd=ROOT,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert proc.stdout is not None and "serving" in proc.stdout.readline()
        return proc

    url = f"http://127.0.0.1:{port}/v1"

    def night(wait: bool):
        return profile_items(
            ml_items.head(6),
            id_col="item_id",
            text_cols=["title", "genres"],
            llm=f"{url}#smollm2",
            store=store,
            embedder=HashEmbedder(),
            settings=EnrichSettings(**(SETTINGS | {"batch_wait": wait, "batch_poll_s": 0.5})),
            with_report=True,
        )[1]

    store = Store.open(tmp_path / "f.duckdb")
    server = serve()
    first = night(wait=False)
    assert first.status == "pending" and first.rows_failed == 6
    _kill(server)  # mid-batch: the embedded model needs ~15 s for 6 items
    client = openai.OpenAI(base_url=url, api_key="unused")
    server = serve()
    try:
        (batch,) = client.batches.list().data
        assert batch.status == "in_progress"  # found on disk, running again
        second = night(wait=True)
    finally:
        server.terminate()
        server.wait(timeout=30)
    assert second.rows_generated + second.rows_failed == 6 and second.rows_generated >= 5
    rows = store.con.execute("SELECT status, n_requests FROM llm_batches").fetchall()
    assert rows == [("completed", 6)]
    assert second.llm_calls >= 6  # the batch's 6 lines, then any online re-ask
    profiles = store.con.execute("SELECT attributes FROM item_profiles").fetchall()
    assert len(profiles) == second.rows_generated
    for (attrs,) in profiles:
        ItemProfile.model_validate_json(attrs)
