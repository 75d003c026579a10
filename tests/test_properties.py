"""Property tests: prompt rendering and truncation, content hashing, idempotent upserts."""

from __future__ import annotations

import hashlib
from datetime import datetime

import numpy as np
import pandas as pd
import polars as pl
import pyarrow as pa
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from enrich.inputs import prepare, row_hash, row_hashes
from enrich.prompts import PromptTemplate, estimate_tokens
from enrich.store import Store

text = st.text(st.characters(blacklist_categories=("Cs",)), max_size=400)
fast = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@fast
@given(
    values=st.dictionaries(st.sampled_from(["title", "genres", "plot"]), text, min_size=1),
    budget=st.integers(8, 300),
)
def test_data_block_is_delimited_and_within_budget(values, budget) -> None:
    prompt = PromptTemplate.for_items(max_input_tokens=budget)
    block = prompt.data_block(values)
    assert block.startswith("<item>\n") and block.endswith("\n</item>")
    body = block[len("<item>\n") : -len("\n</item>")]
    assert "</item>" not in body.lower().replace(" ", "") and "<item>" not in body.lower()
    assert estimate_tokens(body) <= budget + len(values)  # + the newlines between lines


@fast
@given(rows=st.lists(st.tuples(text, text), min_size=1, max_size=8, unique_by=lambda r: r[0]))
def test_hash_ignores_column_order_and_frame_library(rows) -> None:
    frame = pl.DataFrame(
        {"item_id": list(range(len(rows))), "a": [r[0] for r in rows], "b": [r[1] for r in rows]}
    )
    ours = prepare(frame, "item_id", ["a", "b"]).frame["input_hash"].to_list()
    swapped = prepare(frame.select("b", "a", "item_id"), "item_id", ["b", "a"])
    assert swapped.frame["input_hash"].to_list() == ours
    assert prepare(frame.to_pandas(), "item_id", ["a", "b"]).frame["input_hash"].to_list() == ours
    arrow = prepare(frame.to_arrow(), "item_id", ["a", "b"]).frame["input_hash"].to_list()
    assert arrow == ours


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    names=st.lists(st.text(min_size=1, max_size=12), min_size=1, max_size=4, unique=True),
    data=st.data(),
)
def test_vectorized_hashes_equal_the_row_by_row_hash(names, data) -> None:
    """The hash computed at once in DuckDB is the one ``row_hash`` gives each row — any text,
    control characters, quotes, backslashes, escapes written out, nulls, any column names."""
    tricky = st.text(st.sampled_from('\x0b\x1f\x00\n\t"\\u0/é\u2028😀aB '), max_size=12)
    value = st.none() | text | tricky
    rows = data.draw(
        st.lists(st.lists(value, min_size=len(names), max_size=len(names)), max_size=6)
    )
    frame = pl.DataFrame(
        {n: [r[i] for r in rows] for i, n in enumerate(names)},
        schema={n: pl.Utf8 for n in names},
    )
    expected = [row_hash(dict(zip(names, r, strict=True))) for r in rows]
    assert row_hashes(frame, names).to_list() == expected


@fast
@given(a=text, b=text)
def test_any_change_gives_a_new_hash(a, b) -> None:
    assert (row_hash({"t": a}) == row_hash({"t": b})) == (a == b)


def _rows(ids: list[int], version: int) -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "item_id": [str(i) for i in ids],
            "model": ["m"] * n,
            "prompt_version": ["p"] * n,
            "input_hash": [f"{i}-{version}" for i in ids],
            "profile_text": [f"v{version}"] * n,
            "attributes": ["{}"] * n,
            "embedding": list(np.ones((n, 4), np.float32)),
            "embedding_model": ["e"] * n,
            "run_id": ["r"] * n,
            "created_at": [datetime(2026, 1, 1)] * n,
        }
    )


@fast
@given(
    batches=st.lists(
        st.tuples(st.lists(st.integers(0, 20), unique=True, max_size=10), st.integers(0, 2)),
        max_size=5,
    ),
    data=st.data(),
)
def test_upsert_is_idempotent_and_the_last_write_of_a_key_wins_in_any_order(batches, data) -> None:
    def final(order) -> list[tuple]:
        store = Store.open(None)
        store.ensure_profile_tables(4)
        for ids, version in order:
            with store.transaction():
                store.upsert_profiles("items", _rows(ids, version))
                store.upsert_profiles("items", _rows(ids, version))  # again: no change
        return store.con.execute(
            "SELECT item_id, input_hash FROM item_profiles ORDER BY item_id"
        ).fetchall()

    def last_writes(order) -> dict[str, str]:  # by hand: each key's hash of its last write
        return {str(i): f"{i}-{v}" for ids, v in order for i in ids}

    result = final(batches)
    assert dict(result) == last_writes(batches) and len(result) == len(last_writes(batches))
    shuffled = data.draw(st.permutations(batches))
    assert dict(final(shuffled)) == last_writes(shuffled)
    if batches:
        assert final(batches + batches[-1:]) == result


def test_pandas_frame_with_object_text_is_hashed_like_polars() -> None:
    df = pd.DataFrame({"item_id": [1], "title": ["Heat"]})
    expected = hashlib.sha256(b'{"title": "Heat"}').hexdigest()  # the canonical JSON, by hand
    assert prepare(df, "item_id").frame["input_hash"][0] == expected
    assert (
        prepare(pl.DataFrame({"item_id": [1], "title": ["Heat"]}), "item_id").frame["input_hash"][0]
        == expected
    )
