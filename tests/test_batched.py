"""Batched decoding of the embedded model, against the real SmolLM2 weights."""

from __future__ import annotations

import json

import polars as pl
import pytest
from pydantic import ValidationError

import enrich
from enrich.errors import EnrichError
from enrich.llm.batched import BatchDecoder, grammar_for_schema
from enrich.llm.embedded import ROLES, WORKER, ChatEmbedded, chat_tokens
from enrich.prompts import PromptTemplate
from enrich.schemas import ItemProfile
from enrich.store import Store

pytestmark = pytest.mark.slow

SCHEMA = ItemProfile.model_json_schema()
GRAMMAR = grammar_for_schema(json.dumps(SCHEMA))


def _chats(items: pl.DataFrame) -> list[list[dict[str, str]]]:
    prompt = PromptTemplate.for_items()
    return [
        [{"role": ROLES[m.type], "content": m.text} for m in prompt.render(v, ItemProfile)]
        for v in items.select("title", "genres").to_dicts()
    ]


def _valid(text: str) -> bool:
    try:
        ItemProfile.model_validate(json.loads(text, strict=False))
        return True
    except (ValidationError, ValueError):
        return False


@pytest.fixture(scope="module")
def llama(chat: ChatEmbedded):
    return chat.llama()


def _decoder(llama, **kwargs) -> BatchDecoder:
    return WORKER.submit(BatchDecoder, llama, run_on=WORKER.submit, **kwargs).result()


def test_single_sequence_reproduces_create_chat_completion(llama, ml_items) -> None:
    """N=1 without flash attention: token for token what llama-cpp-python's own loop answers."""
    chats = _chats(ml_items.slice(20, 2))
    decoder = _decoder(llama, n_seq=1, n_ctx_seq=1024, flash_attn=False)
    try:
        for chat in chats:
            tokens, shared = chat_tokens(llama, chat)
            assert 50 < shared < len(tokens)  # the system turn is the shared prefix
            ours = decoder.submit(tokens, prefix_len=shared, grammar=GRAMMAR).result()
            theirs = WORKER.submit(
                llama.create_chat_completion,
                messages=chat,
                response_format={"type": "json_object", "schema": SCHEMA},
                temperature=0.0,
                max_tokens=200,
                repeat_penalty=1.15,
                seed=0,
            ).result()
            assert ours.text == theirs["choices"][0]["message"]["content"]
            assert ours.completion_tokens == theirs["usage"]["completion_tokens"]
        # every tier of the grammar check was needed and still chose as the full chain does
        stats = decoder.stats
        assert stats.grammar_fallbacks > stats.grammar_wide_scans > stats.grammar_full_scans > 0
    finally:
        WORKER.submit(decoder.close).result()


def test_more_requests_than_sequences_all_finish_and_validate(llama, ml_items) -> None:
    """7 requests on 3 sequences: queued and admitted as slots free up, none failed."""
    chats = _chats(ml_items.slice(40, 7))
    decoder = _decoder(llama, n_seq=3, n_ctx_seq=1024)
    try:
        futures = [
            decoder.submit(t, prefix_len=k, grammar=GRAMMAR)
            for t, k in (chat_tokens(llama, c) for c in chats)
        ]
        done = [f.result(timeout=600) for f in futures]
    finally:
        WORKER.submit(decoder.close).result()
    assert all(_valid(d.text) for d in done), [d.text for d in done]
    assert {d.finish_reason for d in done} == {"stop"}
    assert decoder.stats.shared_tokens > 0  # the system turn was copied, not decoded, 7 times


def test_a_prompt_longer_than_a_sequence_fails_alone(llama, ml_items) -> None:
    chats = _chats(ml_items.head(2))
    decoder = _decoder(llama, n_seq=2, n_ctx_seq=1024)
    try:
        (short, k) = chat_tokens(llama, chats[0])
        too_long = decoder.submit(short * 4, prefix_len=k, grammar=GRAMMAR)
        fine = decoder.submit(short, prefix_len=k, grammar=GRAMMAR)
        with pytest.raises(EnrichError, match="exceeds the 1024-token context"):
            too_long.result()
        assert _valid(fine.result(timeout=300).text)
    finally:
        WORKER.submit(decoder.close).result()


def test_an_answer_cut_at_max_tokens_is_reported_as_length(llama, ml_items) -> None:
    decoder = _decoder(llama, n_seq=2, n_ctx_seq=1024)
    try:
        tokens, k = chat_tokens(llama, _chats(ml_items.head(1))[0])
        done = decoder.submit(tokens, prefix_len=k, grammar=GRAMMAR, max_tokens=6).result()
    finally:
        WORKER.submit(decoder.close).result()
    assert done.finish_reason == "length"
    assert done.completion_tokens == 6


def test_cut_answers_are_recorded_never_stored(ml_items, embedder) -> None:
    """A model whose answers always hit max_tokens: every row ends in enrich_errors."""
    store = Store.open(None)
    out, report = enrich.profile_items(
        ml_items.head(3),
        llm=ChatEmbedded(max_tokens=12, n_parallel=2),
        embedder=embedder,
        store=store,
        with_report=True,
    )
    assert report.rows_failed == 3 and report.rows_generated == 0
    assert out["status"].to_list() == ["failed"] * 3
    assert out["error"].str.contains("max_tokens").all()
    assert store.con.sql("SELECT count(*) FROM item_profiles").fetchall() == [(0,)]
    errors = store.con.sql("SELECT stage, error FROM enrich_errors").fetchall()
    assert len(errors) == 3 and all("max_tokens" in e for _, e in errors)


def test_langchain_batch_is_decoded_together(ml_items) -> None:
    """``ChatEmbedded.batch`` (threads) lands in one decoder: its prompts run side by side."""
    chat = ChatEmbedded(n_parallel=4)
    runnable = chat.with_structured_output(ItemProfile)
    prompt = PromptTemplate.for_items()
    rows = ml_items.slice(60, 4).select("title", "genres").to_dicts()
    messages = [prompt.render(v, ItemProfile) for v in rows]
    decoder = chat.decoder()
    calls_before, tokens_before = decoder.stats.decode_calls, decoder.stats.completion_tokens
    results = runnable.batch(messages, config={"max_concurrency": 4})
    assert all(isinstance(r, ItemProfile) for r in results)
    tokens = decoder.stats.completion_tokens - tokens_before
    calls = decoder.stats.decode_calls - calls_before
    assert calls < 0.6 * tokens  # one at a time would take a decode call per token
