"""Chunks overlap: the next chunk's requests run while the current one is embedded and stored,
within one concurrency limit, each distinct prompt asked once (a scripted model and a hash
embedder make the timing observable; the real decoder's gain is measured in
bench/embedded_throughput.py --pipeline)."""

from __future__ import annotations

import threading
import time

import numpy as np
import polars as pl
import pytest

import enrich
from enrich.config import EnrichSettings
from enrich.engine import Usage
from enrich.testing import GOOD, HashEmbedder, ScriptedChat

ITEMS = pl.DataFrame(
    {
        "item_id": list(range(1, 9)),
        "title": ["Heat", "Alien", "Fargo", "Brazil", "Ran", "Heat", "Big", "Jaws"],
        "genres": ["Drama"] * 8,
    }
)


class _EmbedderWaitingForChunkTwo(HashEmbedder):
    """Embeds the first chunk only once chunk two's requests reached the model (or a timeout)."""

    def __init__(self, chunk_two_asked: threading.Event, wait_s: float) -> None:
        self.chunk_two_asked, self.wait_s = chunk_two_asked, wait_s
        self.saw_chunk_two_while_storing_chunk_one: bool | None = None

    def embed(self, texts: list[str]) -> np.ndarray:
        if self.saw_chunk_two_while_storing_chunk_one is None:
            self.saw_chunk_two_while_storing_chunk_one = self.chunk_two_asked.wait(self.wait_s)
        return super().embed(texts)


@pytest.mark.parametrize("overlap", [True, False])
def test_the_next_chunk_is_asked_while_the_current_one_is_stored(overlap: bool) -> None:
    asked = threading.Event()

    def script(prompt: str, attempt: int) -> dict:
        if "Ran" in prompt or "Jaws" in prompt:  # rows of the second chunk
            asked.set()
        return GOOD

    embedder = _EmbedderWaitingForChunkTwo(asked, wait_s=10.0 if overlap else 0.5)
    out = enrich.profile_items(
        ITEMS,
        llm=ScriptedChat(script=script),
        embedder=embedder,
        settings=EnrichSettings(chunk_size=4, max_concurrency=2, overlap_chunks=overlap),
    )
    assert embedder.saw_chunk_two_while_storing_chunk_one is overlap
    assert out["status"].to_list() == ["enriched"] * 8


def test_overlapping_chunks_keep_within_max_concurrency() -> None:
    lock, in_flight, peak = threading.Lock(), [0], [0]

    def script(prompt: str, attempt: int) -> dict:
        with lock:
            in_flight[0] += 1
            peak[0] = max(peak[0], in_flight[0])
        time.sleep(0.05)
        with lock:
            in_flight[0] -= 1
        return GOOD

    items = pl.DataFrame(
        {"item_id": list(range(12)), "title": [f"Film {i}" for i in range(12)], "genres": "Drama"}
    )
    out = enrich.profile_items(
        items,
        llm=ScriptedChat(script=script),
        embedder=HashEmbedder(),
        settings=EnrichSettings(chunk_size=4, max_concurrency=3),
    )
    assert peak[0] == 3  # reached, never exceeded, though two chunks' batches were running
    assert out["status"].to_list() == ["enriched"] * 12


def test_a_prompt_in_two_chunks_in_flight_is_asked_once() -> None:
    llm = ScriptedChat()
    out, report = enrich.profile_items(
        ITEMS,  # "Heat" is row 1 (chunk one) and row 6 (chunk two)
        llm=llm,
        embedder=HashEmbedder(),
        settings=EnrichSettings(chunk_size=4),
        with_report=True,
    )
    assert len(llm.calls) == 7
    assert report.rows_generated == 7 and report.cache_hits == 1 and report.balanced()
    assert out["status"].to_list() == ["enriched"] * 8
    heat = out.filter(pl.col("item_id").is_in([1, 6]))["profile_text"].to_list()
    assert len(heat) == 2 and heat[0] == heat[1] and heat[0]


def test_llm_seconds_count_overlapping_bursts_once(monkeypatch) -> None:
    clock = iter([0.0, 1.0, 3.0, 5.0, 7.0, 8.0])
    monkeypatch.setattr("enrich.engine.time.perf_counter", lambda: next(clock))
    usage = Usage()
    usage.busy(True)  # chunk one from 0
    usage.busy(True)  # chunk two from 1
    usage.busy(False)  # chunk one done at 3
    usage.busy(False)  # chunk two done at 5: busy 0..5
    usage.busy(True)  # 7
    usage.busy(False)  # 8
    assert usage.llm_seconds == 6.0


def test_llm_seconds_include_the_burst_still_open(monkeypatch) -> None:
    """Overlapped chunks keep one burst open for the whole run: a ledger row written meanwhile
    (each chunk's, or a killed run's last) must hold the time spent so far, not 0."""
    clock = iter([0.0, 1.0, 4.0, 6.0, 9.0])
    monkeypatch.setattr("enrich.engine.time.perf_counter", lambda: next(clock))
    usage = Usage()
    usage.busy(True)  # chunk one from 0
    usage.busy(True)  # chunk two from 1 (overlapping)
    usage.busy(False)  # chunk one done at 4; chunk two still answering
    assert usage.llm_seconds == 6.0  # read at 6
    assert usage.llm_seconds == 9.0  # read at 9
