"""``profile_items``: the LLM writes a profile of each item; it is embedded and stored.

Example:
    >>> import polars as pl, enrich
    >>> items = pl.DataFrame({"item_id": [1, 2], "title": ["Toy Story (1995)", "Heat (1995)"],
    ...                       "genres": ["Animation|Children's|Comedy", "Action|Crime|Thriller"]})
    >>> out = enrich.profile_items(items, store="features.duckdb")   # doctest: +SKIP
    >>> out.select("item_id", "profile_text", "embedding")           # doctest: +SKIP
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Literal, overload

import duckdb
import polars as pl
from langchain_core.language_models import BaseChatModel
from pydantic import BaseModel

from enrich.config import EnrichSettings
from enrich.embedding import Embedder, resolve_embedder
from enrich.engine import LLMEngine
from enrich.inputs import KEY, prepare, to_polars
from enrich.job import JobInput, Progress, run_job
from enrich.llm import model_id, resolve_llm
from enrich.plan import JobPlan, plan_job
from enrich.prompts import PromptTemplate, clean_text
from enrich.report import RunReport
from enrich.schemas import ItemProfile
from enrich.store import Store

StoreLike = str | Path | duckdb.DuckDBPyConnection | Store | None
LLMLike = BaseChatModel | str | None


@overload
def profile_items(data: Any, *, with_report: Literal[False] = ..., **kw: Any) -> pl.DataFrame: ...
@overload
def profile_items(
    data: Any, *, with_report: Literal[True], **kw: Any
) -> tuple[pl.DataFrame, RunReport]: ...


def profile_items(
    data: Any,
    *,
    id_col: str = "item_id",
    text_cols: Sequence[str] | None = None,
    template: str | None = None,
    llm: LLMLike = None,
    embedder: Embedder | str | Any | None = None,
    schema: type[BaseModel] = ItemProfile,
    prompt: PromptTemplate | None = None,
    store: StoreLike = None,
    settings: EnrichSettings | None = None,
    progress: Progress | None = None,
    with_report: bool = False,
    dry_run: bool = False,
) -> pl.DataFrame | tuple[pl.DataFrame, RunReport] | JobPlan:
    """Profile each item with an LLM, embed the profile, and upsert it into ``store``.

    Args:
        data: polars, pandas or pyarrow frame with one row per item.
        id_col: the id column; its dtype is kept in the output.
        text_cols: columns the LLM reads; default: every string column but the id.
        template: a row template such as ``"{title}, a film of genres {genres}"``.
        llm: ``None`` (embedded offline SmolLM2), a LangChain spec (``"openai:gpt-4o-mini"``),
            an OpenAI-compatible base URL (``"http://host:8000/v1#model"``) or a chat model.
        embedder: ``None`` (all-MiniLM-L6-v2, shipped), a model path, or LangChain Embeddings.
        schema: pydantic model the LLM must fill (default :class:`ItemProfile`).
        prompt: a :class:`PromptTemplate`; its version is recorded with every row.
        store: DuckDB file path or connection; ``None`` keeps everything in memory.
        settings: concurrency, chunking, retries, rate limits, budget (:class:`EnrichSettings`).
        progress: called with the number of rows finished after each chunk.
        with_report: also return the :class:`RunReport` (the ``runs`` table row).
        dry_run: do nothing; return the :class:`enrich.plan.JobPlan` (rows stored, cached and
            to generate, tokens, time) — :func:`enrich.plan.plan_items` does the same.

    Returns:
        One row per input item, in input order: the id, ``status`` (enriched, skipped or
        failed), ``profile_text``, the schema's fields, ``embedding`` (float32, unit norm),
        ``input_hash``, ``model``, ``prompt_version``, ``embedding_model``, ``created_at`` and
        ``error`` (why a failed row failed; also in the ``enrich_errors`` table).
    """
    job, prompt = item_job(data, id_col, text_cols, template, schema, prompt)
    if dry_run:
        return plan_profile_job("items", job, schema, prompt, llm, store, settings)
    out, report = run_profile_job(
        "items", job, schema, prompt, llm, embedder, store, settings, progress
    )
    return (out, report) if with_report else out


def item_job(
    data: Any,
    id_col: str,
    text_cols: Sequence[str] | None,
    template: str | None,
    schema: type[BaseModel],
    prompt: PromptTemplate | None,
) -> tuple[JobInput, PromptTemplate]:
    """The rows, hashes and prompts of an item run (shared by profile and plan)."""
    prompt = prompt or PromptTemplate.for_items(row_template=template)
    rows = prepare(data, id_col, text_cols, prompt.template_fields())
    values = rows.frame.select(rows.text_cols).to_dicts()
    messages = [
        prompt.render(v, schema) if any(x and clean_text(x) for x in v.values()) else None
        for v in values
    ]
    job = JobInput(
        frame=rows.frame.select(id_col, KEY, "input_hash"),
        messages=messages,
        empty_reason=(
            f"no text in columns {rows.text_cols} (markup alone counts as none): fill one of "
            "them or drop the row"
        ),
    )
    return job, prompt


def plan_profile_job(
    kind: str,
    job: JobInput,
    schema: type[BaseModel],
    prompt: PromptTemplate,
    llm: LLMLike,
    store: StoreLike,
    settings: EnrichSettings | None,
) -> JobPlan:
    """What :func:`run_profile_job` would do with the same job (shared by items and users)."""
    settings = settings or EnrichSettings()
    with Store.borrow(store) as opened:
        chat = resolve_llm(llm, timeout=settings.timeout_s, planning=True)
        return plan_job(kind, kind, job, schema, prompt, chat, opened, settings)


def run_profile_job(
    kind: str,
    job: JobInput,
    schema: type[BaseModel],
    prompt: PromptTemplate,
    llm: LLMLike,
    embedder: Embedder | str | Any | None,
    store: StoreLike,
    settings: EnrichSettings | None,
    progress: Progress | None,
) -> tuple[pl.DataFrame, RunReport]:
    """Resolve the backends, run the job and shape its output (shared by items and users)."""
    settings = settings or EnrichSettings()
    chat = resolve_llm(llm, timeout=settings.timeout_s)
    emb = resolve_embedder(embedder)
    with Store.borrow(store) as opened:
        engine = LLMEngine(chat, schema, prompt.version_id(schema), opened, settings)
        try:
            out, report = run_job(kind, job, engine, emb, opened, settings, progress)
        finally:
            engine.close()
    return _shape(out, report, schema, emb.dim), report


def _shape(out: pl.DataFrame, report: RunReport, schema: type[BaseModel], dim: int) -> pl.DataFrame:
    """Attributes as typed columns, a status and error per row, the embedding as Array[f32, d]."""
    if "attributes" not in out.columns:  # nothing was enriched or stored
        out = out.with_columns(
            pl.lit(None, pl.Utf8).alias("attributes"),
            pl.lit(None, pl.Utf8).alias("run_id"),
            pl.lit(None, pl.Array(pl.Float32, dim)).alias("embedding"),
        )
    fields = list(schema.model_fields)
    attrs = pl.DataFrame(
        [json.loads(a) if a else dict.fromkeys(fields) for a in out["attributes"].to_list()],
        schema={f: _dtype(schema, f) for f in fields},
    )
    attrs = attrs.rename({c: f"attr_{c}" for c in attrs.columns if c in out.columns})
    errors = pl.DataFrame(
        {KEY: list(report.failures), "error": list(report.failures.values())},
        schema={KEY: pl.Utf8, "error": pl.Utf8},
    )
    status = (
        pl.when(pl.col("error").is_not_null())
        .then(pl.lit("failed"))
        .when(pl.col("run_id") == report.run_id)
        .then(pl.lit("enriched"))
        .when(pl.col("run_id").is_not_null())
        .then(pl.lit("skipped"))
        .otherwise(pl.lit("failed"))
    )
    return (
        pl.concat([out.drop("attributes"), attrs], how="horizontal")
        .join(errors, on=KEY, how="left", maintain_order="left")
        .with_columns(status.alias("status"), pl.col("embedding").cast(pl.Array(pl.Float32, dim)))
        .drop(KEY, "run_id")
    )


def _dtype(schema: type[BaseModel], field: str) -> pl.DataType:
    annotation = schema.model_fields[field].annotation
    origin = getattr(annotation, "__origin__", None)
    if origin is list:
        return pl.List(pl.Utf8)
    return {int: pl.Int64, float: pl.Float64, bool: pl.Boolean}.get(annotation, pl.Utf8)  # type: ignore[arg-type]


def pending_items(
    data: Any,
    store: StoreLike,
    *,
    id_col: str = "item_id",
    text_cols: Sequence[str] | None = None,
    template: str | None = None,
    llm: LLMLike = None,
    schema: type[BaseModel] = ItemProfile,
    prompt: PromptTemplate | None = None,
) -> pl.DataFrame:
    """The rows of ``data`` that are new or changed: not stored with the same input hash, model
    and prompt version. Only these need the LLM (the flows ship only these to workers).

    Example:
        >>> todo = pending_items(catalogue, "features.duckdb")   # doctest: +SKIP
    """
    prompt = prompt or PromptTemplate.for_items(row_template=template)
    frame = to_polars(data)
    rows = prepare(frame, id_col, text_cols, prompt.template_fields())
    with Store.borrow(store) as opened:
        needed = opened.not_profiled(
            "items",
            rows.frame.select(KEY, "input_hash"),
            model_id(resolve_llm(llm)),
            prompt.version_id(schema),
        )
    return frame.filter(rows.frame[KEY].is_in(needed.implode()))
