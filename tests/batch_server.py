"""A provider on 127.0.0.1: OpenAI's Files, Batches and Chat Completions endpoints, as OpenAI
documents them, executing with a real chat model through ``enrich.batch_run.execute`` (the path
``enrich batch run`` takes). Driven by the official ``openai`` SDK in the tests.

Faults, for the tests that need them: ``fail`` (a predicate on a request line: those answered
with a 500 error line), ``expire_after`` (a batch runs that many requests, then expires: the
rest go to the error file as ``batch_expired``), ``hold`` (batches stay ``in_progress`` until
the event is set), and ``hang_create`` (the batch is created, then the create call never
answers).
"""

from __future__ import annotations

import email
import email.policy
import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from langchain_core.language_models import BaseChatModel

from enrich.batch_run import execute
from enrich.llm.batch_format import ENDPOINT, error_line


class BatchServer:
    def __init__(
        self,
        llm: BaseChatModel,
        fail: Callable[[dict[str, Any]], bool] = lambda line: False,
        expire_after: int | None = None,
        hold: threading.Event | None = None,
        hang_create: bool = False,
        step: int = 8,
    ) -> None:
        self.llm, self.fail, self.expire_after, self.step = llm, fail, expire_after, step
        self.hold, self.hang_create = hold, hang_create
        self.lock = threading.RLock()
        self.files: dict[str, tuple[dict[str, Any], bytes]] = {}
        self.batches: dict[str, dict[str, Any]] = {}
        self.executed: list[str] = []
        """custom_id of every batch request run, in order (a request paid twice shows twice)."""
        self.online = 0
        """Chat completions answered one at a time (not in a batch)."""
        self.released = threading.Event()  # set on exit: hung calls and held batches end
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?")[0]
                if m := re.fullmatch(r"/v1/files/([\w-]+)/content", path):
                    meta_data = server.files.get(m[1])
                    if meta_data is None:
                        return self._error(404, "no such file")
                    return self._send(200, meta_data[1], "application/octet-stream")
                if m := re.fullmatch(r"/v1/files/([\w-]+)", path):
                    meta_data = server.files.get(m[1])
                    return self._json(meta_data[0]) if meta_data else self._error(404, "no file")
                if m := re.fullmatch(r"/v1/batches/([\w-]+)", path):
                    batch = server.batches.get(m[1])
                    return self._json(batch) if batch else self._error(404, "no such batch")
                if path == "/v1/batches":
                    return self._json(server._list(self.path))
                self._error(404, f"no route {path}")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                path = self.path.split("?")[0]
                if path == "/v1/files":
                    return self._json(server._upload(self.headers["Content-Type"], body))
                if path == "/v1/batches":
                    batch = server._create(json.loads(body))
                    if isinstance(batch, str):
                        return self._error(400, batch)
                    if server.hang_create:  # created; the caller never hears of it
                        server.released.wait(600)
                        self.close_connection = True
                        return None
                    return self._json(batch)
                if m := re.fullmatch(r"/v1/batches/([\w-]+)/cancel", path):
                    batch = server.batches.get(m[1])
                    if batch is None:
                        return self._error(404, "no such batch")
                    with server.lock:
                        if batch["status"] in ("validating", "in_progress"):
                            batch["status"] = "cancelling"
                            batch["cancelling_at"] = int(time.time())
                    return self._json(batch)
                if path == "/v1/chat/completions":
                    return self._chat(json.loads(body))
                self._error(404, f"no route {path}")

            def _chat(self, request: dict[str, Any]) -> None:
                line = {"custom_id": "online", "method": "POST", "url": ENDPOINT, "body": request}
                out, err = execute([line], server.llm)
                with server.lock:
                    server.online += 1
                if out:
                    return self._json(out[0]["response"]["body"])
                response = err[0]["response"]
                self._json(response["body"], response["status_code"])

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

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> BatchServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.released.set()
        if self.hold is not None:
            self.hold.set()
        self.server.shutdown()
        self.server.server_close()

    def created(self) -> list[str]:
        """Ids of the batches created, oldest first."""
        return list(self.batches)

    def wait_for_batches(self, n: int, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        while len(self.batches) < n:
            if time.monotonic() > deadline:
                raise TimeoutError(f"{n} batch(es) not created within {timeout}s")
            time.sleep(0.05)

    # -- the endpoints' work ---------------------------------------------------------------------

    def _upload(self, content_type: str, body: bytes) -> dict[str, Any]:
        message = email.message_from_bytes(
            f"Content-Type: {content_type}\r\n\r\n".encode() + body, policy=email.policy.HTTP
        )
        fields: dict[str, tuple[str | None, bytes]] = {}
        for part in message.iter_parts():
            name = part.get_param("name", header="content-disposition")
            fields[str(name)] = (part.get_filename(), part.get_payload(decode=True) or b"")
        filename, data = fields["file"]
        return self._store_file(data, filename or "upload.jsonl", fields["purpose"][1].decode())

    def _store_file(self, data: bytes, filename: str, purpose: str) -> dict[str, Any]:
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
        return meta

    def _create(self, request: dict[str, Any]) -> dict[str, Any] | str:
        if request.get("input_file_id") not in self.files:
            return f"input_file_id {request.get('input_file_id')!r} does not exist"
        if request.get("endpoint") != ENDPOINT or request.get("completion_window") != "24h":
            return "only /v1/chat/completions with a 24h completion window"
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
            "expires_at": now + 86400,
            "request_counts": {"total": 0, "completed": 0, "failed": 0},
            "metadata": request.get("metadata"),
        }
        with self.lock:
            self.batches[batch["id"]] = batch
        threading.Thread(target=self._execute, args=(batch,), daemon=True).start()
        return batch

    def _list(self, url: str) -> dict[str, Any]:
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

    def _execute(self, batch: dict[str, Any]) -> None:
        _, data = self.files[batch["input_file_id"]]
        try:
            lines = [json.loads(t) for t in data.decode().splitlines() if t.strip()]
        except json.JSONDecodeError as exc:
            return self._end(
                batch, "failed", [], [], errors=[{"code": "invalid_json", "message": str(exc)}]
            )
        batch["request_counts"]["total"] = len(lines)
        batch["status"], batch["in_progress_at"] = "in_progress", int(time.time())
        if self.hold is not None:
            self.hold.wait()
        out: list[dict[str, Any]] = []
        err: list[dict[str, Any]] = []
        done = 0
        end = "completed"
        while done < len(lines):
            if batch["status"] == "cancelling":
                end = "cancelled"
                break
            if self.expire_after is not None and done >= self.expire_after:
                end = "expired"
                break
            step = lines[done : done + self.step]  # then look again: cancelled? expired?
            with self.lock:
                self.executed += [line["custom_id"] for line in step]
            o, e = execute(step, self.llm)
            failing = {line["custom_id"] for line in step if self.fail(line)}
            for line in o:
                if line["custom_id"] in failing:
                    e.append(error_line(line["custom_id"], 500, "server_error", "injected fault"))
                else:
                    out.append(line)
            err += e
            done += len(step)
            batch["request_counts"].update(completed=len(out), failed=len(err))
        code = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(end)
        for line in lines[done:] if code else []:
            err.append(error_line(line["custom_id"], None, code, f"the batch was {end}"))
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
            return self._store_file(data, f"{batch['id']}_output.jsonl", "batch_output")["id"]

        with self.lock:
            batch["output_file_id"], batch["error_file_id"] = file(out), file(err)
            batch["errors"] = {"object": "list", "data": errors} if errors else None
            batch["request_counts"].update(completed=len(out), failed=len(err))
            batch[f"{status}_at"] = int(time.time())
            batch["status"] = status
