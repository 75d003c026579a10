"""Re-embedding: another embedder's vectors for the stored profile texts, with no LLM call; both
embedders queryable side by side; a store written before the per-embedder views gets them and
keeps its vectors; an embedder with mixed lengths fails the audit."""

from __future__ import annotations

import duckdb
import numpy as np
import polars as pl
import pyarrow as pa
import pytest

from enrich import profile_items, profile_users
from enrich.embedding import normalize
from enrich.errors import EnrichError
from enrich.hashing import sha256_hex
from enrich.reembed import reembed
from enrich.store import Store, audit
from enrich.testing import GOOD, HashEmbedder, ScriptedChat

ITEMS = pl.DataFrame({"item_id": [1, 2, 3], "title": ["Heat (1995)", "Up (2009)", "Jaws (1975)"]})
LOG = pl.DataFrame(
    {
        "user_id": [7, 7, 8],
        "item_id": [1, 2, 3],
        "rating": [5, 4, 3],
        "timestamp": [100, 200, 300],
    }
)
USER = {
    "summary": "Likes tense films.",
    "liked": ["thriller"],
    "disliked": [],
    "keywords": ["suspense"],
}


class Hash16(HashEmbedder):
    """A second embedder: another name, another dimension."""

    name = "hash-16"
    dim = 16

    def embed(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(int(sha256_hex(t)[8:16], 16)).random(16) for t in texts]
        return normalize(np.asarray(rows, dtype=np.float32).reshape(len(texts), 16))


def script(text: str, attempt: int) -> dict:
    if "<history>" in text or "<user>" in text:
        return USER
    title = next(t for t in ITEMS["title"] if t in text)
    return {**GOOD, "summary": f"A story told with care, about {title.split(' (')[0].lower()}."}


def filled(path=None) -> tuple[Store, ScriptedChat]:
    store = Store.open(path)
    llm = ScriptedChat(script=script)
    profile_items(ITEMS, llm=llm, store=store, embedder=HashEmbedder())
    profile_users(LOG, ITEMS, llm=llm, store=store, embedder=HashEmbedder())
    return store, llm


def test_reembed_adds_an_embedder_without_a_call_and_both_are_queryable() -> None:
    store, llm = filled()
    calls, runs = len(llm.calls), store.scalar("SELECT count(*) FROM runs")
    cached = store.scalar("SELECT count(*) FROM llm_cache")
    texts = store.scalar(
        "SELECT count(DISTINCT profile_text) FROM "
        "(SELECT profile_text FROM item_profiles UNION ALL SELECT profile_text FROM user_profiles)"
    )
    done = reembed(store, Hash16())
    assert (done.texts, done.embedded) == (texts, texts) and texts >= 4
    assert len(llm.calls) == calls and store.scalar("SELECT count(*) FROM runs") == runs
    assert store.scalar("SELECT count(*) FROM llm_cache") == cached
    assert reembed(store, Hash16()).texts == 0  # incremental: nothing left

    embedders = dict(store.con.execute("SELECT embedding_model, dims FROM embedders").fetchall())
    assert embedders == {"hash-embedder": [8], "hash-16": [16]}
    new = store.con.sql(
        "SELECT item_id, profile_text, embedding FROM item_features_with(embedder := 'hash-16') "
        "ORDER BY item_id"
    ).pl()
    assert new["item_id"].to_list() == ["1", "2", "3"]
    expected = Hash16().embed(new["profile_text"].to_list())
    assert np.allclose(np.array(new["embedding"].to_list()), expected, atol=1e-6)
    newest = store.con.sql("SELECT DISTINCT embedding_model FROM item_features_with()").fetchall()
    assert newest == [("hash-16",)]
    old = store.con.sql(
        "SELECT f.embedding = p.embedding::FLOAT[] FROM "
        "item_features_with(embedder := 'hash-embedder') AS f JOIN item_profiles AS p "
        "USING (item_id, model, prompt_version)"
    ).fetchall()
    assert old == [(True,)] * 3

    store.con.execute("CREATE TABLE candidates AS SELECT 7 AS user_id, 3 AS item_id")
    for name, embedder in (("hash-embedder", HashEmbedder()), ("hash-16", Hash16())):
        (similarity,) = store.con.execute(
            "SELECT similarity FROM user_item_similarity_with('candidates', embedder := ?)",
            [name],
        ).fetchone()
        user_text = store.scalar("SELECT profile_text FROM user_features WHERE user_id = '7'")
        item_text = store.scalar("SELECT profile_text FROM item_features WHERE item_id = '3'")
        u, i = embedder.embed([user_text, item_text])
        assert similarity == pytest.approx(float(u @ i), abs=1e-5)


def test_an_older_store_gets_the_views_and_keeps_its_vectors(tmp_path) -> None:
    path = tmp_path / "f.duckdb"
    store, _ = filled(path)
    before = store.con.sql("SELECT item_id, embedding FROM item_profiles ORDER BY 1").fetchall()
    store.close()
    with duckdb.connect(str(path)) as con:  # as the previous enrich left it
        for macro in ("item_features_with", "user_item_similarity_with", "newest_embedder"):
            con.execute(f"DROP MACRO {'TABLE ' if macro != 'newest_embedder' else ''}{macro}")
        con.execute("DROP VIEW embedders")
    again = Store.open(path)
    after = again.con.sql(
        "SELECT item_id, embedding FROM item_features_with() ORDER BY 1"
    ).fetchall()
    assert [(i, list(v)) for i, v in after] == [(i, list(v)) for i, v in before]


def test_an_embedder_with_mixed_lengths_is_refused_and_fails_the_audit() -> None:
    store, _ = filled()
    reembed(store, Hash16())
    text = store.scalar("SELECT profile_text FROM item_profiles LIMIT 1")
    store.con.execute("DELETE FROM embedding_cache WHERE embedding_model = 'hash-16'")
    store.embedding_cache_put(
        pa.table({"text_hash": [sha256_hex(text)], "embedding": [[0.5] * 4]}), "hash-16"
    )
    with pytest.raises(EnrichError, match=r"lengths \[4, 16\]"):
        reembed(store, Hash16())  # fills the rest, then sees two lengths under one name
    found = audit(store)["embedders_mixed_dimensions"]
    assert found.to_dicts() == [{"embedding_model": "hash-16", "dims": [4, 16]}]
