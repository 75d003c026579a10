"""A Batches API for models that have none: OpenAI's Files, Batches and Chat Completions
endpoints on a local port, executing each batch with any chat model enrich can reach — the
embedded model, a vLLM or llama.cpp server, Ollama — through :func:`enrich.batch_run.execute`
(the path ``enrich batch run`` takes).

Batch mode then works against a team's own GPUs or an air-gapped machine exactly as against
OpenAI: the nightly flow submits and returns, the server works through the night, the next run
collects. With a state folder, files and batches are kept on disk: a restarted server finds its
batches again, and runs an unfinished one again from its start.

    $ enrich batch serve --llm http://vllm:8000/v1#Qwen/Qwen2.5-7B-Instruct --port 8090 \\
          --state /var/lib/enrich-batches
    $ enrich items catalogue.parquet --store f.duckdb --llm http://127.0.0.1:8090/v1#Qwen... --batch

Example:
    >>> from enrich.testing import ScriptedChat
    >>> with BatchServer(ScriptedChat()) as server:
    ...     server.url.startswith("http://127.0.0.1:")
    True
"""

from __future__ import annotations

import email
import email.policy
import json
import logging
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel

from enrich.batch_run import execute
from enrich.llm.batch_format import ENDPOINT, error_line

log = logging.getLogger(__name__)

WINDOW_S = 24 * 3600
"""The completion window: a batch not finished by then expires (its finished lines are kept)."""


class BatchServer:
    """The endpoints, served from a thread; ``state`` (a folder) keeps files and batches."""

    def __init__(
        self,
        llm: BaseChatModel,
        host: str = "127.0.0.1",
        port: int = 0,
        state: Path | None = None,
        step: int = 8,
    ) -> None:
        self.llm, self.step = llm, step
        self.state = state
        self.lock = threading.RLock()
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        """custom_id of every batch request run, in order (a request run twice shows twice)."""
        self.online = 0
        """Chat completions answered one at a time (not in a batch)."""
        self.released = threading.Event()  # set on exit: waits end
        self._load()
        self.server = ThreadingHTTPServer((host, port), _handler(self))
        self.url = f"http://{host}:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BatchServer:
        self.thread.start()
        for batch in self.batches.values():  # found unfinished on disk: run again
            if batch["status"] in ("validating", "in_progress", "finalizing", "cancelling"):
                self._start(batch)
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        self.server.shutdown()
        self.server.server_close()

    def created(self) -> list[str]:
        """Ids of the batches created, oldest first."""
        return list(self.batches)

    def wait_for_batches(self, n: int, timeout: float = 120.0) -> None:
        """Block until ``n`` batches exist."""
        deadline = time.monotonic() + timeout
        while len(self.batches) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} batch(es) not created within {timeout}s")
            time.sleep(0.05)

    def wait_for_status(self, batch_id: str, status: str, timeout: float = 120.0) -> None:
        """Block until batch ``batch_id`` has ``status``."""
        deadline = time.monotonic() + timeout
        while self.batches[batch_id]["status"] != status:
            if time.monotonic() > deadline:
                raise TimeoutError(
                    f"{batch_id} is {self.batches[batch_id]['status']}, not {status}"
                )
            time.sleep(0.05)

    # -- hooks (tests override them to inject faults) --------------------------------------------

    def line_fails(self, line: dict[str, Any]) -> bool:
        """Whether a request line is answered with a server error instead of its answer."""
        return False

    def expired(self, batch: dict[str, Any], done: int) -> bool:
        """Whether ``batch`` ends here, ``done`` requests run: past its completion window."""
        return time.time() > batch["expires_at"]

    def before_run(self, batch: dict[str, Any]) -> None:
        """Called when a batch starts running."""

    def after_create(self, batch: dict[str, Any]) -> None:
        """Called after a batch is created, before the caller hears of it."""

    # -- the endpoints' work ---------------------------------------------------------------------

    def upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        message = email.message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        if "file" not in fields or "purpose" not in fields:
            raise ValueError("a file upload needs the multipart fields 'file' and 'purpose'")
        filename, data = fields["file"]
        return self.store_file(data, filename or "upload.jsonl", fields["purpose"][1].decode())

    def store_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
        meta = {
            "id": f"file-{uuid.uuid4().hex[:24]}",
            "object": "file",
            "bytes": len(data),
            "created_at": int(time.time()),
            "filename": filename,
            "purpose": purpose,
            "status": "processed",
        }
        with self.lock:
            self.files[meta["id"]] = (meta, data)
            if self.state is not None:
                (self.state / "files" / meta["id"]).write_bytes(data)
                self._save(self.state / "files" / f"{meta['id']}.json", meta)
        return meta

    def create(self, request: dict[str, Any]) -> dict[str, Any] | str:
        if request.get("input_file_id") not in self.files:
            return f"input_file_id {request.get('input_file_id')!r} does not exist"
        if request.get("endpoint") != ENDPOINT or request.get("completion_window") != "24h":
            return f"only {ENDPOINT} with a 24h completion window is served here"
        now = int(time.time())
        batch = {
            "id": f"batch_{uuid.uuid4().hex[:24]}",
            "object": "batch",
            "endpoint": ENDPOINT,
            "errors": None,
            "input_file_id": request["input_file_id"],
            "completion_window": "24h",
            "status": "validating",
            "output_file_id": None,
            "error_file_id": None,
            "created_at": now,
            "expires_at": now + WINDOW_S,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": request.get("metadata"),
        }
        with self.lock:
            self.batches[batch["id"]] = batch
            self._save_batch(batch)
        self._start(batch)
        return batch

    def cancel(self, batch: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            if batch["status"] in ("validating", "in_progress"):
                batch["status"] = "cancelling"
                batch["cancelling_at"] = int(time.time())
                self._save_batch(batch)
        return batch

    def listing(self, url: str) -> dict[str, Any]:
        query = dict(re.findall(r"(\w+)=([^&]+)", url.partition("?")[2]))
        newest_first = list(reversed(self.batches.values()))
        if "after" in query:
            ids = [b["id"] for b in newest_first]
            newest_first = newest_first[ids.index(query["after"]) + 1 :]
        limit = int(query.get("limit", 20))
        page = newest_first[:limit]
        return {
            "object": "list",
            "data": page,
            "first_id": page[0]["id"] if page else None,
            "last_id": page[-1]["id"] if page else None,
            "has_more": len(newest_first) > limit,
        }

    def chat(self, request: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        line = {"custom_id": "online", "method": "POST", "url": ENDPOINT, "body": request}
        out, err = execute([line], self.llm)
        with self.lock:
            self.online += 1
        if out:
            return 200, out[0]["response"]["body"]
        response = err[0]["response"]
        return response["status_code"], response["body"]

    # -- running a batch -------------------------------------------------------------------------

    def _start(self, batch: dict[str, Any]) -> None:
        threading.Thread(target=self._run, args=(batch,), daemon=True).start()

    def _run(self, batch: dict[str, Any]) -> None:
        _, data = self.files[batch["input_file_id"]]
        try:
            lines = [json.loads(t) for t in data.decode().splitlines() if t.strip()]
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            error = {"code": "invalid_json", "message": f"the input file is not JSONL: {exc}"}
            return self._end(batch, "failed", [], [], errors=[error])
        with self.lock:
            batch["request_counts"]["total"] = len(lines)
            if batch["status"] == "validating":
                batch["status"], batch["in_progress_at"] = "in_progress", int(time.time())
            self._save_batch(batch)
        self.before_run(batch)
        out: list[dict[str, Any]] = []
        err: list[dict[str, Any]] = []
        done, end = 0, "completed"
        while done < len(lines):
            if self.released.is_set():
                return  # the server is stopping: the batch stays unfinished on disk
            if batch["status"] == "cancelling":
                end = "cancelled"
                break
            if self.expired(batch, done):
                end = "expired"
                break
            step = lines[done : done + self.step]  # then look again: cancelled? expired?
            with self.lock:
                self.executed += [line.get("custom_id") for line in step]
            o, e = execute(step, self.llm)
            failing = {line.get("custom_id") for line in step if self.line_fails(line)}
            for line in o:
                if line["custom_id"] in failing:
                    e.append(error_line(line["custom_id"], 500, "server_error", "injected fault"))
                else:
                    out.append(line)
            err += e
            done += len(step)
            with self.lock:
                batch["request_counts"].update(completed=len(out), failed=len(err))
        code = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(end)
        for line in lines[done:] if code else []:
            err.append(error_line(line.get("custom_id", ""), None, code, f"the batch was {end}"))
        self._end(batch, end, out, err)

    def _end(
        self,
        batch: dict[str, Any],
        status: str,
        out: list[dict[str, Any]],
        err: list[dict[str, Any]],
        errors: list[dict[str, Any]] | None = None,
    ) -> None:
        def file(lines: list[dict[str, Any]]) -> str | None:
            if not lines:
                return None
            data = "".join(json.dumps(x) + "\n" for x in lines).encode()
            return self.store_file(data, f"{batch['id']}_output.jsonl", "batch_output")["id"]

        with self.lock:
            batch["output_file_id"], batch["error_file_id"] = file(out), file(err)
            batch["errors"] = {"object": "list", "data": errors} if errors else None
            batch["request_counts"].update(completed=len(out), failed=len(err))
            batch[f"{status}_at"] = int(time.time())
            batch["status"] = status
            self._save_batch(batch)
        log.info("batch %s %s: %d answered, %d failed", batch["id"], status, len(out), len(err))

    # -- state on disk ---------------------------------------------------------------------------

    def _load(self) -> None:
        if self.state is None:
            return
        for sub in ("files", "batches"):
            (self.state / sub).mkdir(parents=True, exist_ok=True)
        for path in sorted((self.state / "files").glob("*.json")):
            meta = json.loads(path.read_text())
            self.files[meta["id"]] = (meta, (self.state / "files" / meta["id"]).read_bytes())
        batches = [json.loads(p.read_text()) for p in (self.state / "batches").glob("*.json")]
        for batch in sorted(batches, key=lambda b: (b["created_at"], b["id"])):
            self.batches[batch["id"]] = batch

    def _save_batch(self, batch: dict[str, Any]) -> None:
        if self.state is not None:
            self._save(self.state / "batches" / f"{batch['id']}.json", batch)

    @staticmethod
    def _save(path: Path, payload: dict[str, Any]) -> None:
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(payload))
        tmp.replace(path)  # a reader (or a restart) never sees half a file


def _handler(server: BatchServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args: object) -> None:
            pass

        def do_GET(self) -> None:
            path = self.path.split("?")[0]
            if m := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
                found = server.files.get(m[1])
                if found is None:
                    return self._error(404, f"no file {m[1]}")
                return self._send(200, found[1], "application/octet-stream")
            if m := re.fullmatch(r"/v1/files/([\w-]+)", path):
                found = server.files.get(m[1])
                return self._json(found[0]) if found else self._error(404, f"no file {m[1]}")
            if m := re.fullmatch(r"/v1/batches/([\w-]+)", path):
                batch = server.batches.get(m[1])
                return self._json(batch) if batch else self._error(404, f"no batch {m[1]}")
            if path == "/v1/batches":
                return self._json(server.listing(self.path))
            if path == "/v1/models":
                return self._json({"object": "list", "data": []})
            self._error(404, f"no route {path}")

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
            path = self.path.split("?")[0]
            try:
                if path == "/v1/files":
                    return self._json(server.upload(self.headers["Content-Type"], body))
                if path == "/v1/batches":
                    batch = server.create(json.loads(body))
                    if isinstance(batch, str):
                        return self._error(400, batch)
                    server.after_create(batch)
                    return self._json(batch)
                if m := re.fullmatch(r"/v1/batches/([\w-]+)/cancel", path):
                    batch = server.batches.get(m[1])
                    if batch is None:
                        return self._error(404, f"no batch {m[1]}")
                    return self._json(server.cancel(batch))
                if path == "/v1/chat/completions":
                    status, payload = server.chat(json.loads(body))
                    return self._json(payload, status)
            except (ValueError, KeyError) as exc:  # a malformed request: say what is wrong
                return self._error(400, str(exc))
            self._error(404, f"no route {path}")

        def _json(self, payload: Any, status: int = 200) -> None:
            self._send(status, json.dumps(payload).encode(), "application/json")

        def _error(self, status: int, message: str) -> None:
            self._json({"error": {"message": message, "type": "invalid_request_error"}}, status)

        def _send(self, status: int, payload: bytes, kind: str) -> None:
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    return Handler
