"""Real local servers for tests: llama-cpp-python's OpenAI-compatible server with the embedded
model, and a fault-injecting HTTP proxy in front of it. Both bind 127.0.0.1 only."""

from __future__ import annotations

import http.client
import json
import random
import socket
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from enrich.llm.embedded import default_model_path


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_http(url: str, timeout: float = 120.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2):
                return
        except OSError:
            time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout}s")


@contextmanager
def llama_server(alias: str = "smollm2") -> Iterator[str]:
    """``python -m llama_cpp.server`` on 127.0.0.1; yields its base URL (``.../v1``)."""
    port = free_port()
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "llama_cpp.server",
            "--model",
            str(default_model_path()),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--model_alias",
            alias,
            "--n_ctx",
            "2048",
            "--n_threads",
            "2",
            "--verbose",
            "False",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
        yield f"http://127.0.0.1:{port}/v1"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:  # busy with a request the proxy abandoned
            proc.kill()
            proc.wait(timeout=10)


FAULTS = ("429", "500", "hang", "drop", "truncated", "malformed", "refusal", "empty")


class FaultProxy:
    """Forwards to ``upstream``; a share ``rate`` of chat requests get one of FAULTS instead.

    ``forwarded`` counts the requests that reached the upstream server; ``faults`` what was
    injected. Faults are drawn from a seeded RNG, so a run is reproducible.
    """

    def __init__(
        self,
        upstream: str,
        rate: float = 0.25,
        seed: int = 0,
        hang_s: float = 4.0,
        faults: tuple[str, ...] = (),
    ):
        self.upstream = upstream.rstrip("/")
        self.rate, self.hang_s = rate, hang_s
        self.kinds = faults or FAULTS  # the faults drawn from
        self.rng = random.Random(seed)
        self.lock = threading.Lock()
        self.forwarded = 0
        self.faults: list[str] = []
        self.seen_headers: list[dict[str, str]] = []
        self.requests: list[tuple[float, bytes, int]] = []
        """Each chat request forwarded: (arrival time, body, total tokens the server reported)."""
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                self._forward(b"")

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                with proxy.lock:
                    proxy.seen_headers.append(dict(self.headers))
                    drawn = proxy.rng.random() < proxy.rate
                    fault = proxy.rng.choice(proxy.kinds) if drawn else None
                    if fault:
                        proxy.faults.append(fault)
                if fault is None:
                    self._forward(body)
                else:
                    self._inject(fault, body)

            def _forward(self, body: bytes) -> None:
                path = self.path.removeprefix("/v1")
                req = urllib.request.Request(
                    proxy.upstream + path,
                    data=body or None,
                    method=self.command,
                    headers={"Content-Type": "application/json"},
                )
                if self.command == "POST":
                    with proxy.lock:
                        proxy.forwarded += 1
                arrived = time.time()
                with urllib.request.urlopen(req, timeout=600) as resp:
                    payload, status = resp.read(), resp.status
                if self.command == "POST" and path.endswith("/chat/completions"):
                    usage = json.loads(payload).get("usage") or {}
                    with proxy.lock:
                        proxy.requests.append((arrived, body, int(usage.get("total_tokens", 0))))
                self._send(status, payload)

            def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None):
                self.send_response(status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(payload)))
                for k, v in (headers or {}).items():
                    self.send_header(k, v)
                self.end_headers()
                self.wfile.write(payload)

            def _completion(self, content: str | None) -> bytes:
                return json.dumps(
                    {
                        "id": "x",
                        "object": "chat.completion",
                        "created": 0,
                        "model": "smollm2",
                        "choices": [
                            {
                                "index": 0,
                                "finish_reason": "stop",
                                "message": {"role": "assistant", "content": content},
                            }
                        ],
                        "usage": {"prompt_tokens": 1, "completion_tokens": 1, "total_tokens": 2},
                    }
                ).encode()

            def _inject(self, fault: str, body: bytes) -> None:
                if fault == "429":
                    err = b'{"error": {"message": "rate limited", "type": "rate_limit"}}'
                    self._send(429, err, {"Retry-After": "1"})
                elif fault == "400":  # not in FAULTS: a terminal error, asked for by name
                    self._send(400, b'{"error": {"message": "bad request", "type": "invalid"}}')
                elif fault == "500":
                    self._send(500, b'{"error": {"message": "internal error"}}')
                elif fault == "hang":
                    time.sleep(proxy.hang_s)
                    self.close_connection = True
                elif fault == "drop":
                    self.close_connection = True
                    self.connection.shutdown(socket.SHUT_RDWR)
                elif fault == "truncated":
                    self._send(200, self._completion("{}")[:40])
                elif fault == "malformed":
                    self._send(200, self._completion('{"summary": "oops", "keywords": ['))
                elif fault == "refusal":
                    self._send(200, self._completion("I'm sorry, I cannot help with that."))
                else:
                    self._send(200, self._completion(""))

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FaultProxy:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()


def max_in_window(stamps: list[float], seconds: float = 1.0) -> int:
    """The most of ``stamps`` that fall in any window of ``seconds``."""
    stamps = sorted(stamps)
    return max(sum(1 for u in stamps if s <= u < s + seconds) for s in stamps)


__all__ = [
    "FaultProxy",
    "http",
    "llama_server",
    "max_in_window",
    "postgres_server",
    "prefect_server",
]


def _pg_bin(name: str) -> str:
    import glob

    found = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    if not found:
        raise RuntimeError("PostgreSQL server binaries not found: apt-get install postgresql")
    return found[-1]


@contextmanager
def postgres_server() -> Iterator[str]:
    """A throwaway PostgreSQL server on 127.0.0.1 in a temporary data directory; yields a DSN."""
    import os
    import shutil
    import tempfile

    root = tempfile.mkdtemp(prefix="enrich-pg-")
    as_user: list[str] = []
    if os.geteuid() == 0:  # initdb refuses to run as root: run the server as 'postgres'
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = os.path.join(root, "data"), free_port()
    subprocess.run(
        [*as_user, _pg_bin("initdb"), "-D", data, "-U", "enrich", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    subprocess.run(
        [
            *as_user,
            _pg_bin("pg_ctl"),
            "-D",
            data,
            "-l",
            os.path.join(root, "log"),
            "-o",
            f"-p {port} -k {root} -c listen_addresses=127.0.0.1",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        yield f"postgresql://enrich@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", data, "-m", "immediate", "stop"],
            capture_output=True,
        )
        shutil.rmtree(root, ignore_errors=True)


@contextmanager
def prefect_server(home: str) -> Iterator[str]:
    """``prefect server start`` on 127.0.0.1 with its own PREFECT_HOME; yields the API URL."""
    import os

    port = free_port()
    env = {
        **os.environ,
        "PREFECT_HOME": home,
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_API_URL": "",
        "PREFECT_SERVER_UI_ENABLED": "false",
    }
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "prefect",
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--no-ui",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_http(f"http://127.0.0.1:{port}/api/health", timeout=180)
        yield f"http://127.0.0.1:{port}/api"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
