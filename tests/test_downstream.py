"""Downstream adapters and metrics, on hand-made cases and on MovieLens 100K."""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from enrich.downstream import assert_before, paired_bootstrap, ranking_metrics, temporal_split
from enrich.downstream.als import ALSRecommender, history_vectors, nearest_items
from enrich.downstream.metrics import coverage
from enrich.downstream.ranker import feature_columns, labels, pair_cosine, ranker_features
from enrich.errors import EnrichError
from enrich.movielens import load_ml100k_ratings


def test_metrics_match_hand_computed_values() -> None:
    ranked = pl.DataFrame(
        {
            "user_id": ["u"] * 4 + ["v"] * 2,
            "item_id": ["a", "b", "c", "d", "x", "y"],
            "rank": [1, 2, 3, 4, 1, 2],
        }
    )
    relevant = pl.DataFrame({"user_id": ["u", "u", "v", "w"], "item_id": ["b", "d", "z", "q"]})
    m = {r["user_id"]: r for r in ranking_metrics(ranked, relevant).to_dicts()}
    dcg = 1 / math.log2(3) + 1 / math.log2(5)
    idcg = 1 + 1 / math.log2(3)
    assert m["u"]["ndcg@10"] == pytest.approx(dcg / idcg)
    assert m["u"]["recall@10"] == 1.0 and m["u"]["mrr"] == 0.5
    assert m["v"] == {
        "user_id": "v",
        "ndcg@10": 0.0,
        "recall@10": 0.0,
        "recall@20": 0.0,
        "mrr": 0.0,
    }
    assert m["w"]["recall@20"] == 0.0  # relevant items but no ranking at all: zeros, not dropped
    assert coverage(ranked, catalogue_size=12, k=1) == pytest.approx(2 / 12)


def test_recall_at_k_cuts_at_k() -> None:
    ranked = pl.DataFrame(
        {"user_id": ["u"] * 25, "item_id": [f"i{j}" for j in range(25)], "rank": range(1, 26)}
    )
    relevant = pl.DataFrame({"user_id": ["u", "u"], "item_id": ["i4", "i14"]})  # ranks 5 and 15
    row = ranking_metrics(ranked, relevant).row(0, named=True)
    assert row["recall@10"] == 0.5 and row["recall@20"] == 1.0 and row["mrr"] == 0.2
    assert row["ndcg@10"] == pytest.approx((1 / math.log2(6)) / (1 + 1 / math.log2(3)))


def test_paired_bootstrap() -> None:
    rng = np.random.default_rng(0)
    b = rng.random(500)
    mean, low, high = paired_bootstrap(b + 0.1, b)
    assert mean == pytest.approx(0.1) and low == pytest.approx(0.1) and high == pytest.approx(0.1)
    mean, low, high = paired_bootstrap(rng.random(500), rng.random(500))
    assert low < mean < high and low < 0 < high


@pytest.fixture(scope="module")
def split(ml100k):
    return temporal_split(load_ml100k_ratings(ml100k), validation=0.1, test=0.1, cold_items=0.1)


def test_split_is_temporal_and_cold_items_are_cold(split) -> None:
    assert split.train["timestamp"].max() < split.validation_start
    assert split.validation["timestamp"].min() >= split.validation_start
    assert split.validation["timestamp"].max() < split.test_start <= split.test["timestamp"].min()
    seen = set(split.train["item_id"]) | set(split.validation["item_id"])
    assert not seen & split.cold_items and len(split.cold_items) == 168  # 10% of 1,682
    assert split.test.filter(pl.col("item_id").is_in(list(split.cold_items))).height > 0
    assert_before(split.history("test"), "timestamp", split.test_start)
    with pytest.raises(EnrichError, match="leakage"):
        assert_before(split.test, "timestamp", split.test_start)


def test_als_recommends_unseen_items_and_places_cold_ones(split) -> None:
    als = ALSRecommender(factors=16, iterations=5, seed=0).fit(split.train)
    users = sorted(split.train["user_id"].unique().to_list())[:50]
    recs = als.recommend(users, k=20, exclude=split.train)
    assert recs.group_by("user_id").len()["len"].to_list() == [20] * 50
    assert recs.join(split.train, on=["user_id", "item_id"], how="semi").height == 0
    assert not set(recs["item_id"]) & split.cold_items

    rng = np.random.default_rng(0)  # vectors that carry the factors: the map must find them
    everything = sorted(set(split.train["item_id"]) | split.cold_items)
    known = {v: i for i, v in enumerate(als.items)}
    mix = rng.standard_normal((16, 32))
    base = rng.standard_normal((len(everything), 16))
    for j, v in enumerate(everything):
        if v in known:
            base[j] = als.item_factors[known[v]]
    vectors = pl.DataFrame({"item_id": everything, "embedding": (base @ mix).tolist()})
    placed = als.place_items(vectors)
    assert set(placed) == split.cold_items - set(split.train["item_id"])
    recs = als.recommend(users, k=100, exclude=split.train)
    assert set(recs["item_id"]) & split.cold_items  # cold items now reachable


def test_nearest_items_and_history_vectors() -> None:
    items = pl.DataFrame(
        {"item_id": ["a", "b", "c"], "embedding": [[1.0, 0.0], [0.0, 1.0], [0.7, 0.7]]}
    )
    history = pl.DataFrame({"user_id": ["u", "u"], "item_id": ["a", "c"]})
    users = history_vectors(history, items)
    assert np.allclose(
        users["embedding"][0].to_list(), np.array([1.7, 0.7]) / np.hypot(1.7, 0.7), atol=1e-6
    )
    near = nearest_items(users, items, k=3, exclude=history)
    assert near["item_id"].to_list() == ["b"] and near["rank"].to_list() == [1]


def test_ranker_frame_groups_similarities_and_labels() -> None:
    candidates = pl.DataFrame(
        {
            "user_id": ["u", "u", "v"],
            "item_id": ["a", "b", "a"],
            "score": [0.9, 0.5, 0.4],
            "rank": [1, 2, 1],
        }
    )
    history = pl.DataFrame(
        {"user_id": ["u", "v", "v"], "item_id": ["c", "c", "b"], "rating": [5, 3, 4]}
    )
    items = pl.DataFrame(
        {"item_id": ["a", "b", "c"], "embedding": [[1.0, 0.0], [0.0, 1.0], [0.6, 0.8]]}
    )
    users = history_vectors(history, items)
    frame, groups, cats = ranker_features(
        candidates,
        history,
        similarities={"text": (users, items)},
        categoricals=pl.DataFrame({"item_id": ["a", "b"], "mood": ["Dark", "dark "]}),
    )
    assert groups == [2, 1] and cats == ["cat_mood"]
    assert frame["item_pop"].to_list() == [0, 1, 0]  # b once in history, a never
    assert frame["user_n"].to_list() == [1, 1, 2]
    assert frame["sim_text"][0] == pytest.approx(0.6)  # u's history is c = (0.6, 0.8); a = (1, 0)
    assert frame["cat_mood"].to_list() == [1, 1, 1]  # "Dark" and "dark " are one category
    assert "user_id" not in feature_columns(frame)
    period = pl.DataFrame({"user_id": ["u"], "item_id": ["b"]})
    assert labels(frame, period).tolist() == [0, 1, 0]
    missing = pair_cosine(pl.DataFrame({"user_id": ["zz"], "item_id": ["a"]}), users, items)
    assert np.isnan(missing[0])


@pytest.mark.slow
def test_ladder_without_llm_runs_end_to_end_and_is_stored(tmp_path, embedder) -> None:
    """Rungs 0-2 (no LLM) on all of MovieLens 100K, one seed: real ALS, LightGBM, metrics,
    eval_runs and the report."""
    from enrich.downstream.evaluate import EvalConfig, evaluate
    from enrich.store import Store

    config = EvalConfig(seeds=(0,), rungs=("0", "1", "2"), bootstrap=200, train_windows=2)
    store = tmp_path / "eval.duckdb"
    result = evaluate(config, store, out_dir=tmp_path / "report", embedder=embedder)
    s = result.summary
    assert set(s["rung"]) == {"0", "1", "2"}
    assert set(s["segment"]) == {"all", "warm items", "long-tail items", "cold items", "cold users"}
    ndcg = {
        r["rung"]: r["value"]
        for r in s.filter((pl.col("metric") == "ndcg@10") & (pl.col("segment") == "all")).to_dicts()
    }
    assert all(0 < v < 1 for v in ndcg.values()), ndcg
    with Store.borrow(str(store)) as db:
        rows = db.con.execute(
            "SELECT segment IN ('cold items: placement', 'new users'), count(*), "
            "count(DISTINCT eval_id) FROM eval_runs GROUP BY 1 ORDER BY 1"
        ).fetchall()
    side = result.cold.height + result.new_users.height  # type: ignore[union-attr]
    assert rows == [(False, s.height, 1), (True, side, 1)]
    # NDCG@10, Recall@20 and the table against rung 0
    assert result.report_path.read_text().count("| 2 + raw text embeddings") == 3
    assert result.plan == [] and "LLM plan" not in result.report_path.read_text()
    assert "**Verdict:** the re-ranker (rung 1)" in result.report_path.read_text()
    assert result.chart_path.stat().st_size > 10_000
    assert result.costs.filter(pl.col("rung") == "2")["llm_calls_per_1k"].to_list() == [0.0]
    new = result.new_users  # served without history, no LLM rung asked for: no LLM system
    assert new is not None
    assert set(new["system"]) == {
        "popularity",
        "popularity in their group",
        "attribute text -> raw item text",
    }
    assert "## New users" in result.report_path.read_text()


def test_new_users_are_served_from_their_attributes() -> None:
    """Users with no history: group popularity follows their gender and age band; every system
    ranks every new user; metrics are over the new users only."""
    from datetime import datetime

    from enrich.downstream.enrichment import Enriched
    from enrich.downstream.new_users import new_user_systems, new_users
    from enrich.downstream.protocols import make_protocol

    def t(day: int) -> datetime:
        return datetime(2020, 1, day)

    ratings = pl.DataFrame(
        {  # before the test: a (F, 20) x, w; b (M, 60) y, z, y2; e (M, 65) y, z
            "user_id": ["a", "a", "b", "b", "b", "e", "e", "c", "d"],
            "item_id": ["x", "w", "y", "z", "y2", "y", "z", "x", "y"],
            "rating": [5.0] * 9,
            "timestamp": [t(1), t(2), t(3), t(4), t(5), t(6), t(7), t(9), t(9)],
        }
    )
    window = (
        make_protocol(ratings, "global", window=0.2, train_windows=1, cold_items=0.0).folds[0].test
    )
    assert new_users(window) == ["c", "d"]  # new in the test window: c (F, 22), d (M, 61)
    attrs = pl.DataFrame(
        {
            "user_id": ["a", "b", "c", "d", "e"],
            "age": [20, 60, 22, 61, 65],
            "gender": ["F", "M", "F", "M", "M"],
        }
    )
    items = ["x", "w", "y", "z", "y2"]
    vec = pl.DataFrame({"item_id": items, "embedding": np.eye(5).tolist()})
    users = pl.DataFrame({"user_id": ["c", "d"], "embedding": [np.eye(5)[1], np.eye(5)[2]]})
    per_user = new_user_systems(window, attrs, Enriched(raw=vec, llm=vec), users, users, k=2)
    by = {(r["system"], r["user_id"]): r["recall@20"] for r in per_user.to_dicts()}
    assert (by[("popularity", "c")], by[("popularity", "d")]) == (0.0, 1.0)  # top 2: y, z
    assert by[("popularity in their group", "c")] == 1.0  # w, x: the young women's items
    assert by[("popularity in their group", "d")] == 1.0
    nearest = new_user_systems(window, attrs, Enriched(raw=vec, llm=vec), users, users, k=1)
    top1 = nearest.filter(pl.col("system") == "LLM profile -> LLM item profiles")
    assert top1.sort("user_id")["recall@20"].to_list() == [0.0, 1.0]  # c -> w (wants x), d -> y
    assert per_user.group_by("system").len()["len"].to_list() == [2] * 5


def test_segments_do_not_depend_on_row_order() -> None:
    """Items tied in popularity at the head / long-tail boundary land on the same side every
    run (the split was once at the mercy of group_by order)."""
    from enrich.downstream.ladder import Period, segment_metrics
    from enrich.downstream.protocols import Window

    items = [f"i{n}" for n in range(10)]  # every item rated once: all tied
    history = pl.DataFrame({"user_id": [f"u{n}" for n in range(10)], "item_id": items})
    target = pl.DataFrame({"user_id": ["t"] * 10, "item_id": items})
    ranked = pl.DataFrame({"user_id": ["t"] * 10, "item_id": items, "rank": range(1, 11)})

    def window(seed: int) -> Window:
        shuffled = history.sample(fraction=1.0, shuffle=True, seed=seed)
        return Window("w0", shuffled, target, target.select("user_id"), None)

    runs = [
        segment_metrics(ranked, Period(window(s), ranked, None))["long-tail items"]  # type: ignore[arg-type]
        for s in range(5)
    ]
    assert all(r.equals(runs[0]) for r in runs)
    assert runs[0]["recall@20"].to_list() == [1.0]  # 8 of 10 items in the tail, all found


def test_latest_small_tags_can_be_cut_in_time() -> None:
    from datetime import datetime

    from enrich.movielens import find_data_dir, load_latest_small_items

    folder = find_data_dir("ml-latest-small")
    assert folder is not None, "ml-latest-small not found in ../shared/data"
    every = load_latest_small_items(folder)
    early = load_latest_small_items(folder, tags_before=datetime(2010, 1, 1))
    assert early.height == every.height  # every movie kept, fewer tags
    assert 0 < early["tags"].drop_nulls().len() < every["tags"].drop_nulls().len()


@pytest.mark.slow
def test_every_rung_runs_with_a_scripted_model(tmp_path, embedder) -> None:
    """All rungs, LLM ones included, wired end to end (a scripted model stands in for the LLM
    here, so this checks the plumbing and the leakage guards, not the lift)."""
    from enrich.downstream.evaluate import EvalConfig, evaluate
    from enrich.testing import GOOD, ScriptedChat

    user = {
        "summary": "Likes films of many kinds.",
        "liked": ["drama"],
        "disliked": [],
        "keywords": ["films"],
    }
    llm = ScriptedChat(
        script=lambda text, attempt: user if "<history>" in text or "<user>" in text else GOOD
    )
    config = EvalConfig(seeds=(0,), bootstrap=100, train_windows=2)
    store = tmp_path / "eval.duckdb"
    dry = evaluate(config, store, llm=llm, embedder=embedder, dry_run=True)
    assert llm.calls == [] and dry.plan  # the plan costs no call
    labels = [p.kind for p in dry.plan]
    assert labels[:3] == ["item profiles", "controlled item profiles", "item profiles + CF context"]
    assert {"users @ w0", "users @ w1", "users @ w2", "new users @ w0"} <= set(labels)
    result = evaluate(config, store, llm=llm, embedder=embedder)
    # the plan is the run's: one request per distinct prompt it said it would generate
    assert len(llm.calls) == sum(p.to_generate for p in dry.plan) > 0
    again = evaluate(config, store, llm=llm, embedder=embedder, dry_run=True)
    assert sum(p.to_generate for p in again.plan) == 0
    assert [p.stored + p.no_text + p.cached for p in again.plan] == [p.rows for p in again.plan]
    assert set(result.summary["rung"]) == {"0", "1", "2", "3", "3b", "4", "4c", "5"}
    costs = {r["rung"]: r["llm_calls_per_1k"] for r in result.costs.to_dicts()}
    assert costs["2"] == 0 and costs["3"] > 0 and costs["3b"] > 0 and costs["5"] > costs["4"]
    assert costs["4c"] > costs["4"]  # the controlled profiles are a second item pass
    assert set(result.cold["system"]) == {
        "ALS + raw-text map",
        "ALS + LLM-profile map",
        "popularity",
    }
    assert result.new_users is not None
    assert "LLM profile -> LLM item profiles" in set(result.new_users["system"])
    assert costs["new users"] > 0


@pytest.mark.slow
def test_report_counts_the_rows_the_llm_failed(tmp_path, embedder) -> None:
    """Rows whose answer fails validation end without an LLM feature: the report says how many
    each job lost, and the count is the store's recorded errors, not a guess."""
    from enrich.downstream.evaluate import EvalConfig, evaluate
    from enrich.store import Store
    from enrich.testing import GOOD, ScriptedChat

    junk = {**GOOD, "audience": "}\n{"}  # the 135M model's most common failure
    llm = ScriptedChat(script=lambda text, attempt: junk if "(1995)" in text else GOOD)
    config = EvalConfig(seeds=(0,), bootstrap=50, train_windows=2, rungs=("0", "1", "2", "3"))
    store = tmp_path / "eval.duckdb"
    result = evaluate(config, store, llm=llm, embedder=embedder, out_dir=tmp_path / "report")
    [items] = result.coverage
    with Store.borrow(store) as db:
        (errors,) = db.con.execute(
            "SELECT count(DISTINCT entity_id) FROM enrich_errors WHERE stage = 'validation'"
        ).fetchone()
        (stored,) = db.con.execute("SELECT count(*) FROM item_profiles").fetchone()
    assert items["job"] == "item profiles" and items["failed"] == errors > 0
    assert items["profiled"] == items["this_run"] == stored
    assert items["rows"] == stored + errors == result.plan[0].rows
    text = result.report_path.read_text()
    share = f"{errors / items['rows']:.1%}"
    assert (
        f"| item profiles | {items['rows']:,} | {stored:,} | {stored:,} | {errors:,} ({share}) |"
        in text
    )


@pytest.mark.slow
def test_evaluation_flow_records_its_results(tmp_path, embedder) -> None:
    """The Prefect flow (ephemeral API) runs the same steps and records one eval_id."""
    from enrich.downstream.evaluate import EvalConfig
    from enrich.store import Store
    from flows.evaluate import evaluate_flow

    config = EvalConfig(seeds=(1,), rungs=("0", "1"), bootstrap=100)
    store = str(tmp_path / "eval.duckdb")
    eval_id = evaluate_flow(config, store, str(tmp_path / "report"))
    with Store.borrow(store) as db:
        rows = db.con.execute(
            "SELECT DISTINCT rung FROM eval_runs WHERE eval_id = ? AND segment = 'all' ORDER BY 1",
            [eval_id],
        ).fetchall()
    assert rows == [("0",), ("1",)]
    assert (tmp_path / "report" / "report.md").exists()
