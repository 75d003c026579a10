"""Batch mode: a run's requests through the provider's Batches API, resumable across processes
and nights, no request paid twice.

For the requests a run needs (``{cache key: messages}``) a :class:`BatchRunner`:

1. takes the store's open submissions for this endpoint and model (:mod:`enrich.batch_manifest`).
   One recorded but never confirmed (the process died between recording and creating it) is
   looked up among the provider's batches by the ``enrich_submission`` metadata it was created
   with: adopted if it exists, abandoned if not;
2. submits only the requests no open batch holds: batch JSONL files cut at the provider's limits,
   each recorded in the manifest *before* it is uploaded and created;
3. polls with a growing wait, downloads the output and error files, and returns one result per
   request: the answer line (the engine validates it like an online answer), or why there is
   none (``batch``: failed, expired or cancelled before it ran; ``pending``: still running,
   collected by the next run when ``batch_wait`` is off).

Example:
    >>> profile_items(df, llm="openai:gpt-4o-mini",                       # doctest: +SKIP
    ...               settings=EnrichSettings(batch=True, batch_wait=False))
"""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import BaseMessage
from pydantic import BaseModel

from enrich.config import EnrichSettings
from enrich.errors import redact
from enrich.llm.batch_format import (
    ENDPOINT,
    LineResult,
    chat_body,
    encode,
    parse_line,
    request_line,
    split_files,
)
from enrich.report import utc_now
from enrich.store import Store

log = logging.getLogger(__name__)

RUNNING = ("validating", "in_progress", "finalizing", "cancelling")
"""The provider's statuses of a batch not yet finished."""
METADATA_KEY = "enrich_submission"


@dataclass
class Unanswered:
    """A request the batches did not answer (yet)."""

    stage: str  # "pending", "batch" or "input"
    error: str


class BatchRunner:
    """Submits, finds again, polls and collects the batches of one model and prompt version."""

    def __init__(
        self,
        llm: BaseChatModel,
        schema: type[BaseModel],
        model: str,
        prompt_version: str,
        store: Store,
        settings: EnrichSettings,
    ) -> None:
        self.body = chat_body(llm, schema)  # refuses a model without a Batches API
        self.client = llm.root_client.with_options(max_retries=5)  # type: ignore[attr-defined]
        self.endpoint = str(self.client.base_url).rstrip("/")
        self.model, self.prompt_version = model, prompt_version
        self.store, self.settings = store, settings
        self.run_id: str | None = None
        self.submitted: list[str] = []
        """Batch ids this runner created (tests and reports)."""

    def answers(
        self, todo: Mapping[str, list[BaseMessage]], may_submit: bool = True
    ) -> dict[str, LineResult | Unanswered]:
        """One result per key of ``todo``; answer lines of other requests in the collected
        batches are returned too (the caller decides what to keep)."""
        open_ = self._reconcile(self.store.batches_open(self.endpoint, self.model))
        held = {k: sub for sub in open_ for k in self.store.batch_requests(sub["submission_id"])}
        results: dict[str, LineResult | Unanswered] = {}
        new = {k: m for k, m in todo.items() if k not in held}
        if new and may_submit:
            subs, too_big = self._submit(new)
            open_ += subs
            for key in too_big:
                results[key] = Unanswered(
                    "input",
                    f"the request is over the batch file limit ({self.settings.batch_max_bytes}"
                    " bytes): shorten the row's text or raise batch_max_bytes",
                )
        elif new:
            for key in new:
                results[key] = Unanswered("budget", "the run's budget was spent before this batch")
        batches = self._wait(open_) if self.settings.batch_wait else self._look(open_)
        for sub in open_:
            batch = batches.get(sub["submission_id"])
            keys = self.store.batch_requests(sub["submission_id"])
            if batch is None or batch.status in RUNNING:
                status = "not created" if batch is None else batch.status
                for key in keys:
                    results[key] = Unanswered(
                        "pending",
                        f"waiting in batch {sub['batch_id']} ({status}, submitted "
                        f"{sub['created_at']:%Y-%m-%d %H:%M} UTC): the next run collects it",
                    )
                continue
            results |= self._collect(sub, batch, keys)
        return results

    # -- submitting ------------------------------------------------------------------------------

    def _submit(
        self, todo: Mapping[str, list[BaseMessage]]
    ) -> tuple[list[dict[str, Any]], list[str]]:
        lines = [(k, encode(request_line(k, self.body, m))) for k, m in todo.items()]
        files, too_big = split_files(
            lines, self.settings.batch_max_requests, self.settings.batch_max_bytes
        )
        subs = [self._submit_file(f) for f in files]
        return [s for s in subs if s is not None], too_big

    def _submit_file(self, lines: list[tuple[str, bytes]]) -> dict[str, Any] | None:
        sid = uuid.uuid4().hex
        data = b"".join(line for _, line in lines)
        self.store.batch_record(
            {
                "submission_id": sid,
                "endpoint": self.endpoint,
                "model": self.model,
                "prompt_version": self.prompt_version,
                "n_requests": len(lines),
                "n_bytes": len(data),
                "run_id": self.run_id,
            },
            [k for k, _ in lines],
        )
        uploaded = self.client.files.create(file=(f"enrich-{sid}.jsonl", data), purpose="batch")
        self.store.batch_update(sid, input_file_id=uploaded.id)
        batch = self.client.batches.create(
            input_file_id=uploaded.id,
            endpoint=ENDPOINT,
            completion_window="24h",
            metadata={METADATA_KEY: sid},
        )
        self.store.batch_update(sid, batch_id=batch.id, status="submitted", submitted_at=utc_now())
        self.submitted.append(batch.id)
        log.info("submitted batch %s: %d requests, %d bytes", batch.id, len(lines), len(data))
        return {
            "submission_id": sid,
            "batch_id": batch.id,
            "status": "submitted",
            "created_at": utc_now(),
        }

    def _reconcile(self, subs: list[dict[str, Any]]) -> list[dict[str, Any]]:
        """Submissions recorded but not confirmed: adopt the batch created for them, if any."""
        unconfirmed = {s["submission_id"]: s for s in subs if s["batch_id"] is None}
        if not unconfirmed:
            return subs
        found: dict[str, Any] = {}
        for batch in self.client.batches.list(limit=100):  # the SDK pages through them all
            sid = (batch.metadata or {}).get(METADATA_KEY)
            if sid in unconfirmed and sid not in found:
                found[sid] = batch
                if len(found) == len(unconfirmed):
                    break
        kept = []
        for sub in subs:
            sid = sub["submission_id"]
            if sid not in unconfirmed:
                kept.append(sub)
            elif sid in found:
                batch = found[sid]
                self.store.batch_update(
                    sid, batch_id=batch.id, input_file_id=batch.input_file_id, status="submitted"
                )
                log.info("found batch %s of an interrupted submission", batch.id)
                kept.append({**sub, "batch_id": batch.id, "status": "submitted"})
            else:
                self.store.batch_update(
                    sid, status="abandoned", error="never created: its requests are resubmitted"
                )
        return kept

    # -- waiting and collecting ------------------------------------------------------------------

    def _look(self, subs: list[dict[str, Any]]) -> dict[str, Any]:
        return {s["submission_id"]: self.client.batches.retrieve(s["batch_id"]) for s in subs}

    def _wait(self, subs: list[dict[str, Any]]) -> dict[str, Any]:
        wait = self.settings.batch_poll_s
        batches = self._look(subs)
        while any(b.status in RUNNING for b in batches.values()):
            time.sleep(wait)
            wait = min(wait * 1.5, 300.0)
            for sid, batch in list(batches.items()):
                if batch.status in RUNNING:
                    batches[sid] = self.client.batches.retrieve(batch.id)
        return batches

    def _collect(
        self, sub: dict[str, Any], batch: Any, keys: list[str]
    ) -> dict[str, LineResult | Unanswered]:
        """The lines of a finished batch; requests it has no line for are ``batch`` failures."""
        results: dict[str, LineResult | Unanswered] = {}
        for file_id in (batch.output_file_id, batch.error_file_id):
            if not file_id:
                continue
            text = self.client.files.content(file_id).text
            for raw in text.splitlines():
                if raw.strip():
                    line = parse_line(json.loads(raw))
                    results[line.custom_id] = line
        why = f"batch {batch.id} ended {batch.status} before this request ran"
        if batch.status == "failed" and batch.errors and batch.errors.data:
            why += ": " + "; ".join(str(e.message) for e in batch.errors.data)[:500]
        missing = [k for k in keys if k not in results]
        for key in missing:
            results[key] = Unanswered("batch", redact(why) + "; the next run asks again")
        failed = sum(isinstance(r, Unanswered) or r.error is not None for r in results.values())
        self.store.batch_update(
            sub["submission_id"],
            status=batch.status,
            n_answered=len(results) - failed,
            n_failed=failed,
            collected_at=utc_now(),
        )
        return results
