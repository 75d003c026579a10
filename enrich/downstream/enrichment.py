"""The enriched features an evaluation compares, made through the library and cached in a store:
raw-text embeddings (no LLM), LLM item profiles, LLM item profiles written with collaborative
context ("people who liked this also liked ..."), and LLM user profiles as of a cut-off.

Example:
    >>> feats = ItemFeatures.build(items, store="eval.duckdb")           # doctest: +SKIP
    >>> feats.llm.columns                                                # doctest: +SKIP
    ['item_id', 'embedding']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import polars as pl

import enrich
from enrich.config import EnrichSettings
from enrich.embedding import embed_texts, resolve_embedder
from enrich.prompts import PromptTemplate
from enrich.store import Store

CF_PROMPT = PromptTemplate.for_items(name="item-profile-cf")
"""Item prompt with the collaborative context: a prompt version of its own."""


def raw_text(items: pl.DataFrame, text_cols: tuple[str, ...]) -> pl.Series:
    """The item text an embedder sees without an LLM: the text columns joined."""
    return items.select(
        pl.concat_str([pl.col(c).cast(pl.Utf8).fill_null("") for c in text_cols], separator=". ")
    ).to_series()


def also_liked(
    history: pl.DataFrame, items: pl.DataFrame, top: int = 5, min_rating: float = 4.0
) -> pl.DataFrame:
    """``item_id, also_liked``: titles most often liked by the users who liked each item, from
    ``history`` only (the training window: no later data reaches a prompt)."""
    likes = history.filter(pl.col("rating") >= min_rating).select("user_id", "item_id").unique()
    titles = items.select(pl.col("item_id").cast(pl.Utf8), "title")
    pairs = (
        likes.join(likes, on="user_id", suffix="_other")
        .filter(pl.col("item_id") != pl.col("item_id_other"))
        .group_by("item_id", "item_id_other")
        .len()
        .sort(["item_id", "len", "item_id_other"], descending=[False, True, False])
        .group_by("item_id", maintain_order=True)
        .head(top)
        .join(titles, left_on="item_id_other", right_on="item_id")
    )
    return pairs.group_by("item_id", maintain_order=True).agg(
        pl.col("title").str.join("; ").alias("also_liked")
    )


@dataclass
class Enriched:
    """Item and user vectors (``<id>, embedding``) by kind, with LLM attributes."""

    raw: pl.DataFrame
    llm: pl.DataFrame | None = None
    llm_cf: pl.DataFrame | None = None
    attributes: pl.DataFrame | None = None
    users: dict[str, pl.DataFrame] | None = None


def item_features(
    items: pl.DataFrame,
    text_cols: tuple[str, ...],
    store: Store,
    *,
    llm: Any = None,
    embedder: Any = None,
    cf_history: pl.DataFrame | None = None,
    with_llm: bool = True,
    settings: EnrichSettings | None = None,
    progress: Any = None,
) -> Enriched:
    """Raw-text vectors, and (``with_llm``) LLM profile vectors and attributes; with
    ``cf_history`` also the profiles written with collaborative context from it."""
    embedder = resolve_embedder(embedder)
    ids = items["item_id"].cast(pl.Utf8)
    vectors = embed_texts(embedder, raw_text(items, text_cols).to_list(), store)
    raw = pl.DataFrame({"item_id": ids, "embedding": pl.Series(vectors)})
    out = Enriched(raw=raw)
    if not with_llm:
        return out
    kwargs = {"llm": llm, "embedder": embedder, "store": store, "settings": settings}
    frame = items.select(pl.col("item_id").cast(pl.Utf8), *text_cols)
    profiles = enrich.profile_items(frame, text_cols=list(text_cols), progress=progress, **kwargs)
    ok = profiles.filter(pl.col("status") != "failed")
    out.llm = ok.select("item_id", "embedding")
    out.attributes = ok.select("item_id", "mood", "audience")
    if cf_history is not None:
        context = frame.join(also_liked(cf_history, items), on="item_id", how="left")
        cf = enrich.profile_items(
            context,
            text_cols=[*text_cols, "also_liked"],
            prompt=CF_PROMPT,
            progress=progress,
            **kwargs,
        )
        out.llm_cf = cf.filter(pl.col("status") != "failed").select("item_id", "embedding")
    return out


def user_vectors(
    history: pl.DataFrame,
    items: pl.DataFrame,
    users: list[str],
    as_of: datetime,
    store: Store,
    *,
    llm: Any = None,
    embedder: Any = None,
    settings: EnrichSettings | None = None,
    progress: Any = None,
) -> pl.DataFrame:
    """LLM user-profile vectors of ``users`` from ``history`` strictly before ``as_of``."""
    wanted = history.filter(pl.col("user_id").is_in(users))
    profiles = enrich.profile_users(
        wanted,
        items.select(pl.col("item_id").cast(pl.Utf8), "title"),
        as_of=as_of,
        llm=llm,
        embedder=embedder,
        store=store,
        settings=settings,
        progress=progress,
    )
    return profiles.filter(pl.col("status") != "failed").select(
        pl.col("user_id").cast(pl.Utf8), "embedding", "as_of"
    )
