"""``enrich.batch_server.BatchServer`` with faults for the tests that need them: ``fail`` (a
predicate on a request line: those answered with a 500 error line), ``expire_after`` (a batch
runs that many requests, then expires: the rest go to the error file as ``batch_expired``),
``hold`` (batches stay ``in_progress`` until the event is set), and ``hang_create`` (the batch is
created, then the create call does not answer until the server stops)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from langchain_core.language_models import BaseChatModel

from enrich.batch_server import BatchServer as _BatchServer


class BatchServer(_BatchServer):
    def __init__(
        self,
        llm: BaseChatModel,
        fail: Callable[[dict[str, Any]], bool] = lambda line: False,
        expire_after: int | None = None,
        hold: threading.Event | None = None,
        hang_create: bool = False,
        step: int = 8,
    ) -> None:
        super().__init__(llm, step=step)
        self.fail, self.expire_after = fail, expire_after
        self.hold, self.hang_create = hold, hang_create

    def line_fails(self, line: dict[str, Any]) -> bool:
        return self.fail(line)

    def expired(self, batch: dict[str, Any], done: int) -> bool:
        return self.expire_after is not None and done >= self.expire_after

    def before_run(self, batch: dict[str, Any]) -> None:
        if self.hold is not None:
            self.hold.wait()

    def after_create(self, batch: dict[str, Any]) -> None:
        if self.hang_create:  # created; the caller does not hear of it
            self.released.wait(600)

    def __exit__(self, *exc: object) -> None:
        if self.hold is not None:
            self.hold.set()
        super().__exit__(*exc)
