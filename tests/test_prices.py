"""Prices from the maintained table, offline tokenizers, and costs in the ledger and the plan."""

from __future__ import annotations

import logging

import polars as pl
import pytest

import enrich
from enrich.config import EnrichSettings
from enrich.plan import plan_items
from enrich.prices import model_prices
from enrich.store import Store
from enrich.testing import HashEmbedder, ScriptedChat
from enrich.tokens import seed_tiktoken

CATALOGUE = pl.DataFrame({"item_id": [1, 2], "title": ["Heat (1995)", "Babe (1995)"]})


def test_known_hosted_models_have_their_published_prices() -> None:
    mini = model_prices("openai:gpt-4o-mini")  # $0.15 / $0.60 per 1M, cached input $0.075
    assert mini is not None
    assert (mini.input_per_mtok, mini.output_per_mtok, mini.cached_input_per_mtok) == (
        0.15,
        0.6,
        0.075,
    )
    assert mini.cost(tokens_in=2_000_000, tokens_out=1_000_000, cached_in=1_000_000) == (
        pytest.approx(0.15 + 0.075 + 0.6)
    )
    haiku = model_prices("anthropic:claude-3-5-haiku-latest")  # $0.80 / $4 per 1M
    assert haiku is not None and haiku.cost(1_000_000, 1_000_000) == pytest.approx(4.8)


def test_batch_prices_are_the_providers_batch_prices() -> None:
    mini = model_prices("openai:gpt-4o-mini", batch=True)  # OpenAI's Batch API: half price
    assert mini is not None and mini.source.endswith("(batch)")
    assert mini.cost(1_000_000, 1_000_000) == pytest.approx(0.075 + 0.30)
    haiku = model_prices("anthropic:claude-haiku-4-5", batch=True)  # $1 / $5 online
    assert haiku is not None and haiku.cost(1_000_000, 1_000_000) == pytest.approx(3.0)
    online = plan_items(CATALOGUE, llm="openai:gpt-4o-mini")
    batched = plan_items(CATALOGUE, llm="openai:gpt-4o-mini", settings=EnrichSettings(batch=True))
    assert online.cost is not None and batched.cost == pytest.approx(online.cost / 2)
    assert batched.seconds is None and "batch window" in batched.rate_source


def test_a_tiered_price_is_applied_per_request() -> None:
    pro = model_prices("google_genai:gemini-2.5-pro")  # $1.25 per 1M input, $2.50 above 200k
    assert pro is not None
    small, large = pro.cost(100_000, 0), pro.cost(300_000, 0)
    assert small == pytest.approx(0.125) and large == pytest.approx(0.75)


def test_settings_override_the_table_and_unknown_models_are_none() -> None:
    given = model_prices("openai:gpt-4o-mini", price_in_per_mtok=1.0, price_out_per_mtok=2.0)
    assert given is not None and given.cost(1_000_000, 1_000_000) == 3.0
    assert model_prices("openai-compatible:smollm2", base_url="http://127.0.0.1:9/v1") is None
    assert model_prices("ollama:llama3").cost(10**6, 10**6) == 0.0  # type: ignore[union-attr]


def test_an_unknown_price_is_recorded_as_null_and_said_once(caplog) -> None:
    store = Store.open(None)
    llm = ScriptedChat(name_="some-unpriced-model")
    with caplog.at_level(logging.WARNING, logger="enrich.prices"):
        for _ in range(2):
            enrich.profile_items(CATALOGUE, llm=llm, embedder=HashEmbedder(), store=store)
    costs = store.con.execute("SELECT cost FROM runs").fetchall()
    assert costs == [(None,), (None,)]
    said = [
        r
        for r in caplog.records
        if "no price known for scripted:some-unpriced-model" in r.getMessage()
    ]
    assert len(said) == 1


def test_given_prices_fill_the_cost_column() -> None:
    store = Store.open(None)
    settings = EnrichSettings(price_in_per_mtok=1_000_000.0, price_out_per_mtok=0.0)
    enrich.profile_items(
        CATALOGUE, llm=ScriptedChat(), embedder=HashEmbedder(), store=store, settings=settings
    )
    tokens_in, cost = store.con.execute("SELECT tokens_in, cost FROM runs").fetchone()
    assert tokens_in > 0 and cost == pytest.approx(float(tokens_in))  # $1 a token


def test_max_cost_without_a_price_is_refused() -> None:
    with pytest.raises(enrich.EnrichError, match="max_cost needs the price"):
        enrich.profile_items(
            CATALOGUE,
            llm=ScriptedChat(),
            embedder=HashEmbedder(),
            settings=EnrichSettings(max_cost=1.0),
        )


def test_tiktoken_works_offline_with_the_shipped_encodings() -> None:
    import tiktoken

    seed_tiktoken()
    # OpenAI's own ids for "hello world" (o200k_base: GPT-4o; cl100k_base: GPT-4)
    assert tiktoken.get_encoding("o200k_base").encode("hello world") == [24912, 2375]
    assert tiktoken.get_encoding("cl100k_base").encode("hello world") == [15339, 1917]


def test_the_plan_counts_openai_prompts_with_tiktoken_and_prices_them() -> None:
    plan = plan_items(CATALOGUE, llm="openai:gpt-4o-mini", store=None)
    assert (plan.tokenizer, plan.tokens_exact) == ("tiktoken o200k_base", True)
    assert plan.price_source.endswith("openai/gpt-4o-mini")
    expected = (plan.prompt_tokens * 0.15 + plan.completion_tokens * 0.6) / 1e6
    assert plan.cost == pytest.approx(expected, rel=1e-6)
    scripted = plan_items(CATALOGUE, llm=ScriptedChat(), store=None)
    assert (scripted.tokens_exact, scripted.cost) == (False, None)
