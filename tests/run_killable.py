"""A run to kill: ``profile_items`` over N synthetic items with a scripted model that logs every
call (one line per call, appended atomically) and takes a little time per call.

    python -m tests.run_killable STORE CALL_LOG N_ITEMS
"""

from __future__ import annotations

import os
import re
import sys
import time

import polars as pl
from langchain_core.embeddings import DeterministicFakeEmbedding

import enrich
from enrich.config import EnrichSettings
from enrich.testing import GOOD, ScriptedChat


def main() -> None:
    store, log, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
    fd = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)

    def answer(text: str, attempt: int) -> dict:
        title = re.search(r"title: (Item \d+)", text)
        os.write(fd, f"{title.group(1) if title else '?'}\n".encode())
        time.sleep(0.01)
        return GOOD

    items = pl.DataFrame({"item_id": range(n), "title": [f"Item {i}" for i in range(n)]})
    _, report = enrich.profile_items(
        items,
        llm=ScriptedChat(script=answer),
        embedder=DeterministicFakeEmbedding(size=16),
        store=store,
        settings=EnrichSettings(chunk_size=25, max_concurrency=2),
        with_report=True,
    )
    print(report.run_id, report.rows_skipped, report.rows_generated, report.cache_hits, flush=True)


if __name__ == "__main__":
    main()
