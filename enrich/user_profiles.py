"""``profile_users``: the LLM reads what each user did before ``as_of`` and writes their tastes.

User and item profiles are embedded by the same embedder, so they live in one space and
``user_item_similarity`` compares them.

Example:
    >>> users = enrich.profile_users(ratings, items, as_of=datetime(1998, 1, 1),
    ...                              store="features.duckdb")                   # doctest: +SKIP
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal, overload

import polars as pl
from pydantic import BaseModel

from enrich.config import EnrichSettings
from enrich.embedding import Embedder
from enrich.history import DEFAULT_HISTORY, Columns, HistoryOptions, verbalize
from enrich.inputs import KEY, row_hash, to_polars
from enrich.job import JobInput, Progress
from enrich.llm import model_id, resolve_llm
from enrich.plan import JobPlan
from enrich.profiles import LLMLike, StoreLike, plan_profile_job, run_profile_job
from enrich.prompts import PromptTemplate
from enrich.report import RunReport
from enrich.schemas import UserProfile
from enrich.store import Store
from enrich.timestamps import TimeLike, to_datetime

LABELS = {
    "about": "user",
    "history": "history",
    "recent": "most recent",
    "liked": "rated highest",
    "disliked": "rated lowest",
}


@overload
def profile_users(
    interactions: Any, items: Any = ..., *, with_report: Literal[False] = ..., **kw: Any
) -> pl.DataFrame: ...
@overload
def profile_users(
    interactions: Any, items: Any = ..., *, with_report: Literal[True], **kw: Any
) -> tuple[pl.DataFrame, RunReport]: ...


def profile_users(
    interactions: Any,
    items: Any | None = None,
    *,
    user_col: str = "user_id",
    item_col: str = "item_id",
    time_col: str = "timestamp",
    rating_col: str | None = "rating",
    as_of: TimeLike | None = None,
    item_text_cols: tuple[str, ...] = ("title",),
    use_item_profiles: bool = False,
    users: Any | None = None,
    user_attr_cols: tuple[str, ...] = (),
    history: HistoryOptions = DEFAULT_HISTORY,
    llm: LLMLike = None,
    embedder: Embedder | str | Any | None = None,
    schema: type[BaseModel] = UserProfile,
    prompt: PromptTemplate | None = None,
    store: StoreLike = None,
    settings: EnrichSettings | None = None,
    progress: Progress | None = None,
    with_report: bool = False,
    dry_run: bool = False,
) -> pl.DataFrame | tuple[pl.DataFrame, RunReport] | JobPlan:
    """Profile each user from their interactions strictly before ``as_of``; embed and store.

    Args:
        interactions: one row per interaction (polars, pandas or Arrow).
        items: item metadata; ``item_text_cols`` name what the history shows of each item.
        as_of: cut-off (datetime, ISO string or unix seconds, like the time column);
            interactions at or after it are never read (None: all).
        use_item_profiles: also show each item's profile keywords from ``store``.
        users, user_attr_cols: optional user attributes (age, occupation...) for the prompt.
        history: how many recent / liked / disliked items to show; part of the prompt version.
        llm, embedder, schema, prompt, store, settings, progress, with_report, dry_run: as for
            :func:`enrich.profile_items`.

    Returns:
        One row per user (every user of ``interactions`` or ``users``): the user id, ``as_of``
        (the newest interaction used), ``n_interactions``, ``is_cold`` (at most
        ``history.cold_max`` interactions), ``status``, ``profile_text``, the schema's fields,
        ``embedding`` and provenance. A user with no interaction before ``as_of`` and no
        attributes is ``failed`` with the reason; nobody is dropped.
    """
    options = UserOptions(
        user_col=user_col,
        item_col=item_col,
        time_col=time_col,
        rating_col=rating_col,
        as_of=as_of,
        item_text_cols=tuple(item_text_cols),
        use_item_profiles=use_item_profiles,
        users=users,
        user_attr_cols=tuple(user_attr_cols),
        history=history,
        schema=schema,
        prompt=prompt,
    )
    job, prompt = user_job(interactions, items, options, store)
    if dry_run:
        return plan_profile_job("users", job, schema, prompt, llm, store, settings)
    out, report = run_profile_job(
        "users", job, schema, prompt, llm, embedder, store, settings, progress
    )
    return (out, report) if with_report else out


@dataclass(frozen=True)
class UserOptions:
    """How users are read and shown to the LLM: the options :func:`profile_users`,
    :func:`pending_users` and :func:`render_user_prompts` share (see :func:`profile_users`)."""

    user_col: str = "user_id"
    item_col: str = "item_id"
    time_col: str = "timestamp"
    rating_col: str | None = "rating"
    as_of: TimeLike | None = None
    item_text_cols: tuple[str, ...] = ("title",)
    use_item_profiles: bool = False
    users: Any | None = None
    user_attr_cols: tuple[str, ...] = ()
    history: HistoryOptions = DEFAULT_HISTORY
    schema: type[BaseModel] = UserProfile
    prompt: PromptTemplate | None = None


def user_job(
    interactions: Any, items: Any | None, options: UserOptions, store: StoreLike
) -> tuple[JobInput, PromptTemplate]:
    """The rows, hashes and prompts of a user run (shared by profile, pending and render)."""
    o = options
    cols = Columns(o.user_col, o.item_col, o.time_col, o.rating_col)
    history, schema, users, user_attr_cols = o.history, o.schema, o.users, o.user_attr_cols
    as_of = None if o.as_of is None else to_datetime(o.as_of, "as_of")
    user_col, item_col = cols.user, cols.item
    text_cols = tuple(o.item_text_cols)
    if o.use_item_profiles and items is not None and store is not None:
        with Store.borrow(store) as opened:
            themes = opened.item_themes()
        items = to_polars(items).with_columns(pl.col(item_col).cast(pl.Utf8).alias("_item_key"))
        items = items.join(themes.rename({"item_id": "_item_key"}), on="_item_key", how="left")
        text_cols += ("themes",)
    prompt = o.prompt or PromptTemplate.for_users(
        extra=history.as_dict()
        | {"item_text_cols": ",".join(text_cols), "user_attr_cols": ",".join(user_attr_cols)}
    )
    hist = verbalize(
        interactions,
        items,
        as_of=as_of,
        cols=cols,
        item_text_cols=text_cols,
        users=users,
        user_attr_cols=tuple(user_attr_cols),
        options=history,
    )
    values = [
        {LABELS[k]: v for k, v in row.items() if v is not None}
        for row in hist.select(list(LABELS)).to_dicts()
    ]
    messages = [prompt.render(v, schema) if v else None for v in values]
    frame = hist.select(
        pl.col(user_col),
        KEY,
        "as_of",
        "n_interactions",
        "is_cold",
    ).with_columns(pl.Series("input_hash", [row_hash(v) for v in values], pl.Utf8))
    job = JobInput(
        frame=frame,
        messages=messages,
        empty_reason=(
            f"no interaction before as_of={as_of} and no user attributes: nothing to profile "
            "(pass users= with user_attr_cols=, or an earlier cut-off)"
        ),
    )
    return job, prompt


def pending_users(
    interactions: Any, items: Any | None, store: StoreLike, *, llm: LLMLike = None, **options: Any
) -> list[Any]:
    """Ids of the users whose history shown to the LLM changed since they were last profiled
    (with this model and prompt version), or who were never profiled. ``options``: those of
    :func:`profile_users` (:class:`UserOptions`).

    Example:
        >>> todo = pending_users(ratings, items, "features.duckdb", as_of=cutoff)  # doctest: +SKIP
    """
    opts = UserOptions(**options)
    job, prompt = user_job(interactions, items, opts, store)
    with Store.borrow(store) as opened:
        needed = opened.not_profiled(
            "users",
            job.frame.select(KEY, "input_hash"),
            model_id(resolve_llm(llm)),
            prompt.version_id(opts.schema),
        )
    return job.frame.filter(pl.col(KEY).is_in(needed.implode()))[opts.user_col].to_list()


def render_user_prompts(
    interactions: Any, items: Any | None = None, *, store: StoreLike = None, **options: Any
) -> dict[str, str]:
    """``{user_id: data block}``: exactly what :func:`profile_users` with the same options would
    show the LLM (users with nothing to show are left out). ``options``: :class:`UserOptions`.

    Example:
        >>> import polars as pl
        >>> log = pl.DataFrame({"user_id": [7], "item_id": [1], "timestamp": [0], "rating": [5]})
        >>> titles = pl.DataFrame({"item_id": [1], "title": ["Heat (1995)"]})
        >>> print(render_user_prompts(log, titles)["7"])  # doctest: +ELLIPSIS
        <history>
        ...Heat (1995)...
        </history>
    """
    job, _ = user_job(interactions, items, UserOptions(**options), store)
    keys = job.frame[KEY].to_list()
    return {k: m[-1].text for k, m in zip(keys, job.messages, strict=True) if m is not None}
