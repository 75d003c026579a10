"""``enrich evaluate`` as a product: any log, protocols without leakage, user-level statistics
checked by hand, the plan against the calls made, and the bad inputs a new user ran into."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime

import numpy as np
import polars as pl
import pytest

import enrich
from enrich.downstream import (
    DEFAULT_RUNGS,
    EvalConfig,
    Rung,
    assert_before_cut,
    cluster_bootstrap,
    cluster_mean_se,
    eval_data,
    make_protocol,
    min_detectable_effect,
    movielens,
    paired_bootstrap,
    temporal_split,
)
from enrich.errors import EnrichError, InputError
from enrich.testing import GOOD, ScriptedChat

USER = {
    "summary": "Likes films of many kinds.",
    "liked": ["drama"],
    "disliked": [],
    "keywords": ["films"],
}


def scripted() -> ScriptedChat:
    return ScriptedChat(
        script=lambda text, attempt: USER if "<history>" in text or "<user>" in text else GOOD
    )


@pytest.fixture(scope="module")
def raw_ml100k(ml100k) -> pl.DataFrame:
    """u.data as it is on disk: integer ids and epoch-second timestamps."""
    return pl.read_csv(
        ml100k / "u.data",
        separator="\t",
        has_header=False,
        new_columns=["user_id", "item_id", "rating", "ts"],
    )


@pytest.fixture(scope="module")
def ml(ml100k):
    return movielens("ml-100k", ml100k)


# -- bad inputs a new user ran into ------------------------------------------------------------


def test_epoch_seconds_as_of_reads_like_the_epoch_column(raw_ml100k, ml_items, embedder) -> None:
    """An integer as_of is unix seconds, like the integer time column (it was compared as
    microseconds: every user failed with 'no interaction before as_of')."""
    log = raw_ml100k.filter(pl.col("user_id").is_in([1, 2]))
    as_of = int(log.filter(pl.col("user_id") == 2)["ts"].median())  # both users straddle it
    out = enrich.profile_users(
        log, ml_items, time_col="ts", as_of=as_of, llm=scripted(), embedder=embedder
    )
    assert out["status"].to_list() == ["enriched", "enriched"]
    expected = log.filter(pl.col("ts") < as_of).group_by("user_id").len().sort("user_id")
    assert out.sort("user_id")["n_interactions"].to_list() == expected["len"].to_list()
    cut = datetime.fromtimestamp(as_of, UTC).replace(tzinfo=None)
    assert all(a < cut for a in out["as_of"].to_list())


def test_temporal_split_on_epoch_seconds_gives_datetimes(raw_ml100k) -> None:
    split = temporal_split(raw_ml100k, time_col="ts", cold_items=0.0)
    assert isinstance(split.test_start, datetime) and isinstance(split.validation_start, datetime)
    assert split.test["timestamp"].dtype == pl.Datetime("us")
    cut = raw_ml100k["ts"].quantile(0.9, "lower")  # the same quantile, of the raw seconds
    assert split.test_start == datetime.fromtimestamp(cut, UTC).replace(tzinfo=None)


def test_enrich_data_without_movielens_is_an_error_not_a_fallback(tmp_path, monkeypatch) -> None:
    from enrich.cli import main

    monkeypatch.setenv("ENRICH_DATA", str(tmp_path))
    with pytest.raises(InputError, match=f"ENRICH_DATA={tmp_path} holds no ml-100k"):
        movielens("ml-100k")
    assert main(["evaluate", "--dry-run", "--store", str(tmp_path / "e.duckdb")]) == 2


def test_log_with_nulls_names_the_column_and_row() -> None:
    log = pl.DataFrame({"u": ["a", None], "i": [1, 2], "t": [1, 2]})
    with pytest.raises(InputError, match=r"null 'u' \(first: row 1\)"):
        eval_data(log, user_col="u", item_col="i", time_col="t")
    with pytest.raises(InputError, match="lack column"):
        eval_data(log, user_col="user", item_col="i", time_col="t")
    bad_time = pl.DataFrame({"u": ["a"], "i": [1], "t": ["yesterday"]})
    with pytest.raises(InputError, match="row 0 \\('yesterday'\\) is not a time"):
        eval_data(bad_time, user_col="u", item_col="i", time_col="t")


# -- statistics, against hand calculations ------------------------------------------------------


def test_cluster_standard_error_and_mde_by_hand() -> None:
    values = np.array([1.0, 2.0, 3.0, 4.0])
    mean, se, g = cluster_mean_se(values, np.array(["a", "b", "c", "d"]))
    # one row per user: sd (ddof 1) / sqrt(n) = sqrt(5/3) / 2
    assert (mean, g) == (2.5, 4) and se == pytest.approx(math.sqrt(5 / 3) / 2)
    # the same users scored under 3 seeds: still 4 users, the same standard error (pooling the
    # 12 rows as independent would shrink it by sqrt(3))
    tripled = np.repeat(values, 3)
    _, se3, g3 = cluster_mean_se(tripled, np.repeat(["a", "b", "c", "d"], 3))
    assert g3 == 4 and se3 == pytest.approx(math.sqrt(5 / 3) / 2)
    naive = tripled.std(ddof=1) / math.sqrt(tripled.size)
    assert naive < 0.6 * se3
    # 80% power, two-sided 5%: (1.959964 + 0.841621) * se
    assert min_detectable_effect(se) == pytest.approx(2.801585 * math.sqrt(5 / 3) / 2, rel=1e-6)


def test_cluster_bootstrap_moves_whole_users() -> None:
    rng = np.random.default_rng(1)
    per_user = rng.normal(0.0, 1.0, 60)
    users = np.arange(60).astype(str)
    single = cluster_bootstrap(per_user, users, 2000, seed=3)
    tripled = cluster_bootstrap(np.repeat(per_user, 3), np.repeat(users, 3), 2000, seed=3)
    assert tripled == pytest.approx(single)  # 3 identical seeds add no information
    _, low, high = paired_bootstrap(np.repeat(per_user, 3), np.zeros(180), 2000, seed=3)
    assert high - low < 0.7 * (single[2] - single[1])  # the old pooled interval was too narrow


# -- protocols: no interaction at or after a cut-off reaches a feature of it --------------------


@pytest.mark.parametrize("protocol", ["global", "rolling", "leave-last"])
def test_no_window_sees_its_own_future(ml, protocol) -> None:
    p = make_protocol(ml.interactions, protocol, cuts=2, train_windows=2, seed=0)
    assert len(p.folds) == (2 if protocol == "rolling" else 1)
    assert p.leaks_global_time == (protocol == "leave-last")
    for window in p.windows():
        history, target = window.history, window.target
        assert target.height and history.height
        late = history.join(window.cuts, on="user_id").filter(pl.col("timestamp") >= pl.col("cut"))
        assert late.height == 0
        early = target.join(window.cuts, on="user_id").filter(pl.col("timestamp") < pl.col("cut"))
        assert early.height == 0
        assert not set(history["item_id"].to_list()) & p.cold_items
        assert_before_cut(history, "timestamp", window)
        with pytest.raises(EnrichError, match="leakage"):
            assert_before_cut(target.head(1).with_columns(rating=pl.lit(1.0)), "timestamp", window)
    for fold in p.folds:  # the ranker learns from windows that end before the evaluated one
        for train in fold.train:
            ends = train.target.join(fold.test.cuts, on="user_id")
            assert ends.filter(pl.col("timestamp") >= pl.col("cut")).height == 0
    assert p.context_history()["timestamp"].max() < p.context_start


def test_rolling_pools_more_users_than_global(ml) -> None:
    one = make_protocol(ml.interactions, "global")
    three = make_protocol(ml.interactions, "rolling", cuts=3)
    users = [{u for f in p.folds for u in f.test.target["user_id"]} for p in (one, three)]
    assert users[0] < users[1] and len(users[1]) > 1.5 * len(users[0])


# -- the generic path, end to end ---------------------------------------------------------------


def implicit_log(ml100k) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """An implicit log that looks nothing like MovieLens: renamed columns, string ids, ISO
    times, repeated events, no rating; a catalogue with gaps."""
    ratings = pl.read_csv(
        ml100k / "u.data",
        separator="\t",
        has_header=False,
        new_columns=["user_id", "item_id", "rating", "ts"],
    )
    events = ratings.select(
        ("u" + pl.col("user_id").cast(pl.Utf8)).alias("account"),
        ("sku-" + pl.col("item_id").cast(pl.Utf8)).alias("product"),
        pl.from_epoch("ts").dt.strftime("%Y-%m-%dT%H:%M:%S").alias("when"),
    )
    repeats = events.sample(n=5000, seed=0).with_columns(  # plays again, a day later
        (pl.col("when").str.to_datetime() + pl.duration(days=1))
        .dt.strftime("%Y-%m-%dT%H:%M:%S")
        .alias("when")
    )
    items = pl.read_csv(
        ml100k / "u.item",
        separator="|",
        has_header=False,
        encoding="latin1",
        quote_char=None,
        new_columns=[f"c{i}" for i in range(24)],
    ).select(("sku-" + pl.col("c0").cast(pl.Utf8)).alias("sku"), pl.col("c1").alias("name"))
    missing = items["sku"].head(20).to_list()  # the catalogue lacks 20 items
    blank = items["sku"].slice(20, 5).to_list()  # and has no text for 5
    catalogue = items.filter(~pl.col("sku").is_in(missing)).with_columns(
        pl.when(pl.col("sku").is_in(blank)).then(pl.lit("  ")).otherwise("name").alias("name")
    )
    log = pl.concat([events, repeats]).sample(fraction=1.0, shuffle=True, seed=1)
    return log, catalogue, {"repeats": 5000, "missing": 20, "blank": 5}


@pytest.mark.slow
def test_implicit_log_with_renamed_columns_runs_the_ladder(ml100k, tmp_path, embedder) -> None:
    from enrich.downstream.evaluate import evaluate

    log, catalogue, made = implicit_log(ml100k)
    data = eval_data(
        log,
        catalogue,
        user_col="account",
        item_col="product",
        time_col="when",
        item_id_col="sku",
        text_cols=("name",),
        name="shop",
    )
    assert data.implicit and data.counts["duplicate_events"] == made["repeats"]
    assert data.counts["unknown_items"] == made["missing"]
    assert data.counts["items_without_text"] == made["missing"] + made["blank"]
    assert data.counts["interactions"] == 100_000  # every pair once: nothing lost
    seen: list[int] = []

    def window_size(candidates: pl.DataFrame, window) -> pl.DataFrame:  # a user's own rung
        seen.append(window.history["timestamp"].max() < window.earliest)
        return candidates.select("user_id", "item_id").with_columns(
            pl.lit(window.history.height, pl.Float64).alias("history_rows")
        )

    mine = Rung("9", "+ my feature", features=("text",), extra=window_size)
    config = EvalConfig(
        dataset="shop",
        protocol="rolling",
        cuts=2,
        train_windows=2,
        seeds=(0,),
        rungs=("0", "1", "2"),
        bootstrap=200,
    )
    from enrich.downstream.evaluate import fold_results, prepare, summarize
    from enrich.store import Store

    with Store.borrow(str(tmp_path / "eval.duckdb")) as db:
        prepared = prepare(config, db, data, embedder=embedder)
        ladder, _ = fold_results(config, prepared, rungs=(*DEFAULT_RUNGS, mine))
    assert set(ladder["rung"]) == {"0", "1", "2", "9"} and all(seen)
    assert set(ladder["window"]) == {"w1", "w0"}
    summary = summarize(ladder, 200)
    everyone = summary.filter((pl.col("segment") == "all") & (pl.col("metric") == "ndcg@10"))
    assert (
        everyone["n_users"] == ladder.filter(pl.col("segment") == "all")["user_id"].n_unique()
    ).all()
    assert everyone["mde"].drop_nans().min() > 0

    result = evaluate(
        config, tmp_path / "eval.duckdb", data=data, embedder=embedder, out_dir=tmp_path / "report"
    )
    text = result.report_path.read_text()
    assert "duplicate events: 5,000" in text and "## Power" in text


# -- the plan against the calls made ------------------------------------------------------------


def test_plan_items_counts_what_the_run_does(tmp_path, embedder) -> None:
    from enrich.plan import plan_items

    items = pl.DataFrame(
        {
            "item_id": [1, 2, 3, 4, 5, 6],
            "title": ["Heat", "Heat", "Alien", "Babe", None, "Fargo"],  # 1 and 2: one prompt
        }
    )
    store = str(tmp_path / "f.duckdb")
    llm = scripted()
    before = plan_items(items, llm=llm, store=store)
    assert (before.rows, before.stored, before.no_text, before.cached) == (6, 0, 1, 0)
    assert before.to_generate == 4 and not before.tokens_exact and before.seconds is None
    enrich.profile_items(items, llm=llm, embedder=embedder, store=store)
    assert len(llm.calls) == before.to_generate
    after = plan_items(items, llm=llm, store=store)
    assert (after.stored, after.no_text, after.to_generate) == (5, 1, 0)
    changed = items.with_columns(
        pl.when(pl.col("item_id") == 6)
        .then(pl.lit("Fargo (1996)"))
        .otherwise("title")
        .alias("title")
    )
    one = plan_items(changed, llm=llm, store=store)
    assert (one.stored, one.to_generate) == (4, 1)
    # rates now come from the ledger: the scripted model's answers are len(JSON) // 4 tokens
    assert one.completion_tokens == len(json.dumps(GOOD)) // 4
    assert one.seconds is not None and one.rate_source == "ledger: this prompt"


def test_plan_counts_the_reasks_the_ledger_measured(tmp_path, embedder) -> None:
    """Answers that fail validation are asked again in the run: the plan counts them at the
    rate the ledger measured for this model, prompt and ``fix_attempts``."""
    from enrich.config import EnrichSettings
    from enrich.plan import plan_items

    ending_0_to_3 = [f"Film {d}{e} " for d in range(10) for e in range(4)]

    def script(text: str, attempt: int) -> dict:  # films ending in 0-3: junk, then fixed
        first_try_fails = attempt == 0 and any(f in text for f in ending_0_to_3)
        return {**GOOD, "summary": "short"} if first_try_fails else GOOD

    llm = ScriptedChat(script=script)
    store = str(tmp_path / "f.duckdb")
    first = pl.DataFrame({"item_id": range(10), "title": [f"Film {n:02d} x" for n in range(10)]})
    _, calibration = enrich.profile_items(
        first, llm=llm, embedder=embedder, store=store, with_report=True
    )
    assert (calibration.llm_calls, calibration.llm_requests) == (14, 10)  # 00-03 asked twice

    later = pl.DataFrame(
        {"item_id": range(10, 30), "title": [f"Film {n:02d} x" for n in range(10, 30)]}
    )
    planned = plan_items(later, llm=llm, store=store)
    assert planned.to_generate == 20 and planned.reasks == pytest.approx(20 * 4 / 10)
    assert "1.40 calls a request" in planned.reask_source
    per_call = calibration.tokens_out / 14  # every call's answer, re-asks included
    assert planned.completion_tokens == pytest.approx(28 * per_call)
    _, run = enrich.profile_items(later, llm=llm, embedder=embedder, store=store, with_report=True)
    assert run.llm_calls == 28 == planned.calls  # 10-13 and 20-23 fail once: 8 re-asks
    # with no re-ask allowed, the ledger has no run like it: none planned, and it says so
    none = plan_items(later, llm=llm, store=str(tmp_path / "g.duckdb"))
    assert none.reasks == 0 and "not planned" in none.reask_source
    strict = plan_items(
        later.with_columns(pl.col("title") + " again"),
        llm=llm,
        store=store,
        settings=EnrichSettings(fix_attempts=0),
    )
    assert strict.reasks == 0 and "not planned" in strict.reask_source


@pytest.mark.slow
def test_plan_counts_prompt_tokens_with_the_model_tokenizer(tmp_path, chat, embedder) -> None:
    from enrich.plan import plan_items

    items = pl.DataFrame({"item_id": [1, 2], "title": ["Heat (1995)", "Babe (1995)"]})
    store = str(tmp_path / "f.duckdb")
    planned = plan_items(items, llm=chat, store=store)
    assert planned.tokens_exact
    _, report = enrich.profile_items(
        items, llm=chat, embedder=embedder, store=store, with_report=True
    )
    assert report.llm_calls == 2 and planned.prompt_tokens == report.tokens_in


@pytest.mark.slow
def test_cli_dry_run_on_your_own_files(ml100k, tmp_path) -> None:
    """The generic path from the command line: files in, the plan out, no LLM call."""
    from enrich.cli import main

    log, catalogue, _ = implicit_log(ml100k)
    log.write_parquet(tmp_path / "events.parquet")
    catalogue.write_csv(tmp_path / "catalogue.csv")
    store = tmp_path / "eval.duckdb"
    argv = [
        "evaluate",
        "--interactions",
        str(tmp_path / "events.parquet"),
        "--items",
        str(tmp_path / "catalogue.csv"),
        "--item-id-col",
        "sku",
        "--item-text-cols",
        "name",
        "--user-col",
        "account",
        "--item-col",
        "product",
        "--time-col",
        "when",
        "--rungs",
        "0",
        "3",
        "--seeds",
        "0",
        "--store",
        str(store),
        "--dry-run",
    ]
    assert main(argv) == 0
    from enrich.store import Store

    with Store.borrow(str(store)) as db:  # nothing paid, nothing recorded
        assert db.con.execute("SELECT count(*) FROM runs").fetchall() == [(0,)]


def test_times_read_the_same_whatever_their_form() -> None:
    from datetime import date, timedelta, timezone

    from enrich.timestamps import datetime_column, to_datetime

    noon = datetime(2024, 1, 31, 12, 0, 0)
    berlin = timezone(timedelta(hours=1))
    same = [
        1706702400,
        1706702400.0,
        "2024-01-31T12:00:00",
        noon,
        noon.replace(tzinfo=UTC),
        datetime(2024, 1, 31, 13, 0, 0, tzinfo=berlin),
    ]
    assert {to_datetime(v) for v in same} == {noon}
    assert to_datetime(date(2024, 1, 31)) == datetime(2024, 1, 31)
    for bad in (True, "not a date", object()):
        with pytest.raises(InputError, match="time"):
            to_datetime(bad)
    frames = [
        pl.DataFrame({"t": [1706702400]}),
        pl.DataFrame({"t": [1706702400.0]}),
        pl.DataFrame({"t": ["2024-01-31T12:00:00"]}),
        pl.DataFrame({"t": [noon]}).with_columns(pl.col("t").dt.replace_time_zone("UTC")),
        pl.DataFrame({"t": [noon]}).with_columns(
            pl.col("t").dt.replace_time_zone("UTC").dt.convert_time_zone("Europe/Berlin")
        ),
    ]
    for frame in frames:
        out = datetime_column(frame, "t")
        assert out["t"].dtype == pl.Datetime("us") and out["t"].to_list() == [noon]


def test_sources_named_in_one_string(tmp_path) -> None:
    """The CLI's --interactions/--items/--users: a file glob, a DuckDB table, a PostgreSQL
    table."""
    import duckdb

    from connectors import DuckDBSource, FileSource, PostgresSource, source
    from connectors.errors import ConnectorError

    db = tmp_path / "shop.duckdb"
    con = duckdb.connect(str(db))
    con.execute("CREATE SCHEMA sales")
    con.execute("CREATE TABLE sales.events AS SELECT 'u1' AS account, 7 AS sku, 1706702400 AS ts")
    con.close()
    duck = source(f"duckdb:{db}#sales.events")
    assert isinstance(duck, DuckDBSource) and (duck.schema, duck.table) == ("sales", "events")
    data = eval_data(duck.read(), user_col="account", item_col="sku", time_col="ts")
    assert data.interactions.row(0) == ("u1", "7", datetime(2024, 1, 31, 12), 1.0)
    pg = source("postgresql://me@127.0.0.1:5432/shop#events")
    assert isinstance(pg, PostgresSource) and pg.table == "events" and pg.schema is None
    assert pg.dsn == "postgresql://me@127.0.0.1:5432/shop"
    assert isinstance(source("events/*.parquet"), FileSource)
    with pytest.raises(ConnectorError, match="#table"):
        source(f"duckdb:{db}")
