"""Re-embedding: vectors of the stored profile texts under another embedder, with no LLM call.

The texts are the LLM's work and stay; an embedder is a choice that can change. ``reembed``
embeds every stored profile text the embedder has no vector for yet (incremental: a second call
embeds nothing) into the store's ``embedding_cache``, keyed by the text's sha256 and the
embedder; the views ``item_features_with``, ``user_features_with`` and
``user_item_similarity_with`` (``sql/views/vectors_by_embedder.sql``) read any embedder's vectors,
the newest by default. The profile rows keep the vectors they were written with.

Example:
    >>> from enrich.store import Store
    >>> from enrich.testing import HashEmbedder
    >>> reembed(Store.open(None), HashEmbedder())
    ReembedReport(embedder='hash-embedder', texts=0, embedded=0, seconds=0.0)
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import pyarrow as pa

from enrich.embedding import Embedder, embed_texts, resolve_embedder
from enrich.errors import EnrichError
from enrich.profiles import StoreLike
from enrich.sqlfiles import read_sql
from enrich.store import Store


@dataclass
class ReembedReport:
    """What one ``reembed`` did."""

    embedder: str
    texts: int
    """Distinct stored profile texts without a vector under this embedder before the call."""
    embedded: int
    seconds: float


def reembed(
    store: StoreLike, embedder: Embedder | str | Any | None, batch_size: int = 512
) -> ReembedReport:
    """Embed the stored profile texts that ``embedder`` has no vector for; each batch of
    ``batch_size`` texts is committed on its own (an interrupted call keeps what it did)."""
    emb = resolve_embedder(embedder)
    started = time.perf_counter()
    with Store.borrow(store) as opened:
        dim = opened.embedding_dim()
        if dim is None:
            return ReembedReport(emb.name, 0, 0, 0.0)
        todo = opened.con.execute(
            read_sql("queries/texts_to_reembed.sql"), {"embedder": emb.name}
        ).fetchall()
        done = 0
        for start in range(0, len(todo), batch_size):
            part = todo[start : start + batch_size]
            vectors = embed_texts(emb, [text for _, text in part])
            with opened.transaction():
                opened.embedding_cache_put(
                    pa.table({"text_hash": [h for h, _ in part], "embedding": list(vectors)}),
                    emb.name,
                )
            done += len(part)
        if todo:
            dims = opened.scalar("SELECT dims FROM embedders WHERE embedding_model = ?", [emb.name])
            if dims != [emb.dim]:
                raise EnrichError(
                    f"embedder {emb.name!r} has vectors of lengths {dims} in this store: two "
                    "models share its name; give this one another name"
                )
    return ReembedReport(emb.name, len(todo), done, round(time.perf_counter() - started, 2))
