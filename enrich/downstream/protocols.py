"""Evaluation protocols: which interactions are predicted, and what may be known when.

Every protocol cuts the log into *windows*. A window has a target (the interactions it asks to
predict: every (user, item) pair's first event falls in exactly one place) and a history (what
is known at its cut: for every user, only interactions strictly before that user's cut). A
*fold* is one evaluated window plus the earlier windows the re-ranker learns from, so the ranker
trains on labels from several windows, never on the evaluated one.

    global      one cut-off for everyone: the last ``window`` share of interactions is the test
                window, the ``train_windows`` windows of the same share before it train the ranker
    rolling     ``cuts`` consecutive test windows at the end of the log (each with its own
                training windows before it); users are pooled across cut-offs
    leave-last  each user's last ``n`` interactions by time are the test window, the ``n`` before
                them the first training window, and so on. Numbers compare with most LLM4Rec
                papers, but the history of one user may hold interactions made after another
                user's test interaction: it leaks global time (the report says so)

A share ``cold_items`` of the items (drawn with ``seed``) is held out of every history: those
items are cold in every window, and their interactions in training windows teach the ranker
what a cold item that gets chosen looks like.

Example:
    >>> protocol = make_protocol(log, "rolling", cuts=3, seed=0)           # doctest: +SKIP
    >>> [f.test.name for f in protocol.folds]                              # doctest: +SKIP
    ['w2', 'w1', 'w0']
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

import polars as pl

from enrich.errors import EnrichError, InputError

PROTOCOLS = ("global", "rolling", "leave-last")


@dataclass(frozen=True)
class Window:
    """One cut of the log: what is known before it, and what happens in it."""

    name: str
    history: pl.DataFrame
    """``user_id, item_id, timestamp, rating``: each user's interactions before their cut,
    without the held-out cold items."""
    target: pl.DataFrame
    """``user_id, item_id, timestamp``: the interactions to predict."""
    cuts: pl.DataFrame
    """``user_id, cut``: the instant before which every feature of each target user is built."""
    start: datetime | None
    """The cut shared by every user (None under leave-last: one cut per user)."""

    def known_users(self) -> list[str]:
        """Users to predict who have history before their cut (sorted): the ones ALS and a
        re-ranker can score."""
        return sorted(set(self.target["user_id"]) & set(self.history["user_id"]))

    def new_users(self) -> list[str]:
        """Users to predict with no interaction before their cut (sorted)."""
        return sorted(set(self.target["user_id"]) - set(self.history["user_id"]))

    @property
    def earliest(self) -> datetime:
        """The earliest cut of any user (the shared cut where there is one)."""
        if self.start is not None:
            return self.start
        return self.cuts["cut"].min()  # type: ignore[return-value]


@dataclass(frozen=True)
class Fold:
    """An evaluated window and the earlier windows the ranker learns from (newest first)."""

    test: Window
    train: tuple[Window, ...]


@dataclass(frozen=True)
class Protocol:
    """The folds of one protocol over one log, and the items held out as cold."""

    name: str
    folds: tuple[Fold, ...]
    cold_items: frozenset[str]
    leaks_global_time: bool

    def windows(self) -> list[Window]:
        """Every window of every fold, once (folds of a rolling protocol share windows)."""
        seen: dict[str, Window] = {}
        for fold in self.folds:
            for window in (fold.test, *fold.train):
                seen.setdefault(window.name, window)
        return list(seen.values())

    @property
    def context_start(self) -> datetime:
        """The earliest cut of any window: item text that accrues over time (tags) and the
        collaborative context written into item prompts come from before it."""
        return min(w.earliest for w in self.windows())

    def context_history(self) -> pl.DataFrame:
        """Interactions before :attr:`context_start` (without the cold items)."""
        window = min(self.windows(), key=lambda w: w.earliest)
        return window.history.filter(pl.col("timestamp") < self.context_start)


def make_protocol(
    log: pl.DataFrame,
    name: str = "global",
    *,
    window: float = 0.1,
    train_windows: int = 3,
    cuts: int = 3,
    last_n: int = 1,
    cold_items: float = 0.1,
    seed: int = 0,
) -> Protocol:
    """The folds of protocol ``name`` over ``log`` (``user_id, item_id, timestamp, rating``,
    one row per pair, as :func:`enrich.downstream.data.eval_data` makes it)."""
    if name not in PROTOCOLS:
        raise InputError(f"unknown protocol {name!r}; choose one of {', '.join(PROTOCOLS)}")
    if train_windows < 1:
        raise InputError("train_windows must be at least 1: the ranker needs labels")
    items = log["item_id"].unique().sort()
    cold = (
        frozenset(items.sample(fraction=cold_items, seed=seed).to_list())
        if cold_items
        else frozenset()
    )
    if name == "leave-last":
        if last_n < 1:
            raise InputError(f"last_n must be at least 1, not {last_n}")
        windows = _per_user_windows(log, last_n, train_windows + 1, cold)
        folds = (Fold(windows[0], tuple(windows[1:])),)
        return Protocol(name, folds, cold, leaks_global_time=True)
    n_test = 1 if name == "global" else cuts
    if n_test < 1:
        raise InputError(f"cuts must be at least 1, not {cuts}")
    n = n_test + train_windows
    if not window > 0 or n * window >= 1:
        raise InputError(
            f"{n} windows of {window:.0%} each leave nothing to learn from before them; use a "
            "smaller window, fewer cuts or fewer train_windows"
        )
    grid = _global_windows(log, window, n, cold)
    folds = tuple(
        Fold(grid[k], tuple(grid[k + 1 : k + 1 + train_windows])) for k in reversed(range(n_test))
    )
    return Protocol(name, folds, cold, leaks_global_time=False)


def _global_windows(log: pl.DataFrame, share: float, n: int, cold: frozenset[str]) -> list[Window]:
    """``n`` windows of ``share`` of the interactions each, newest first (``w0`` = the last)."""
    times = log["timestamp"].sort()
    bounds = [times.quantile(1 - j * share, "lower") for j in range(n + 1)]
    out = []
    warm = ~pl.col("item_id").is_in(list(cold))
    for j in range(n):
        start, end = bounds[j + 1], bounds[j]
        inside = pl.col("timestamp") >= start
        if j:  # the newest window runs to the end of the log
            inside &= pl.col("timestamp") < end
        target = log.filter(inside).select("user_id", "item_id", "timestamp")
        if not target.height:
            raise EnrichError(f"window w{j} from {start} holds no interaction; use fewer windows")
        out.append(
            Window(
                name=f"w{j}",
                history=log.filter((pl.col("timestamp") < start) & warm),
                target=target,
                cuts=target.select("user_id").unique().with_columns(pl.lit(start).alias("cut")),
                start=start,
            )
        )
    return out


def _per_user_windows(log: pl.DataFrame, n: int, count: int, cold: frozenset[str]) -> list[Window]:
    """Leave-last windows: ``L0`` = each user's last ``n`` interactions, ``L1`` the ``n``
    before them, ... Each user's history is what they did strictly before their cut."""
    ranked = log.sort("timestamp", "item_id").with_columns(
        (pl.len().over("user_id") - pl.int_range(pl.len()).over("user_id") - 1).alias("_back")
    )  # 0 = the user's last interaction
    warm = ~pl.col("item_id").is_in(list(cold))
    out: list[Window] = []
    bound = pl.DataFrame(schema={"user_id": pl.Utf8, "cut": pl.Datetime("us")})
    for j in range(count):
        in_window = (pl.col("_back") >= j * n) & (pl.col("_back") < (j + 1) * n)
        target = ranked.filter(in_window)
        # strictly before every later window's cut: a same-second label would be "at" it
        target = (
            target.join(bound, on="user_id", how="left")
            .filter(pl.col("cut").is_null() | (pl.col("timestamp") < pl.col("cut")))
            .drop("cut")
        )
        cuts = target.group_by("user_id").agg(pl.col("timestamp").min().alias("cut"))
        bound = pl.concat([bound, cuts]).group_by("user_id").agg(pl.col("cut").min())
        earlier = ranked.filter(pl.col("_back") >= (j + 1) * n).join(cuts, on="user_id", how="left")
        history = earlier.filter(  # strictly before the cut: same-second events are not known
            (pl.col("cut").is_null() | (pl.col("timestamp") < pl.col("cut"))) & warm
        ).select(log.columns)
        out.append(
            Window(
                name=f"L{j}",
                history=history,
                target=target.select("user_id", "item_id", "timestamp"),
                cuts=cuts,
                start=None,
            )
        )
    return out


def assert_before_cut(frame: pl.DataFrame, column: str, window: Window) -> None:
    """Raise if a row of ``frame`` (``user_id`` and ``column``) is at or after its user's cut
    in ``window`` (leakage). Under a shared cut every row is checked; under per-user cuts the
    rows of the window's target users (the only users the window builds features for)."""
    if window.start is not None:
        frame = frame.with_columns(pl.lit(window.start).alias("_cut"))
        late = frame.filter(pl.col(column) >= pl.col("_cut")).drop("_cut")
    else:
        late = frame.join(window.cuts, on="user_id").filter(pl.col(column) >= pl.col("cut"))
    if late.height:
        raise EnrichError(
            f"leakage in window {window.name}: {late.height} row(s) have {column} at or after "
            f"their user's cut (first: {late.row(0)}); features may only use earlier data"
        )
