"""profile_users on real MovieLens 100K users: point in time, incremental, cold users."""

from __future__ import annotations

import json
from datetime import datetime

import polars as pl
import pytest
from pydantic import ValidationError

import enrich
import enrich.testing
from enrich.movielens import load_ml100k_items, load_ml100k_ratings, load_ml100k_users
from enrich.schemas import UserProfile
from enrich.testing import ScriptedChat

CUTOFF = datetime(1997, 12, 1)
LIKES = {
    "summary": "Enjoys witty dramas and comedies.",
    "liked": ["drama"],
    "disliked": [],
    "keywords": ["classics"],
}


@pytest.fixture(scope="module")
def ml(ml100k):
    return load_ml100k_ratings(ml100k), load_ml100k_items(ml100k), load_ml100k_users(ml100k)


def test_prompt_never_shows_an_interaction_after_as_of(ml) -> None:
    ratings, items, _ = ml
    user = 1  # rated movies on both sides of the cut-off
    mine = ratings.filter(pl.col("user_id") == user).join(items, on="item_id")
    before = set(mine.filter(pl.col("timestamp") < CUTOFF)["title"])
    after_only = set(mine.filter(pl.col("timestamp") >= CUTOFF)["title"]) - before
    assert after_only, "the fixture user must have later interactions"
    prompt = enrich.render_user_prompts(ratings, items, as_of=CUTOFF)[str(user)]
    assert not [t for t in after_only if t in prompt]
    assert any(t in prompt for t in before)
    n_before = mine.filter(pl.col("timestamp") < CUTOFF).height
    assert f"history: {n_before} interactions" in prompt


def test_rendered_prompts_are_the_ones_sent_with_the_same_options(ml) -> None:
    """render_user_prompts honours prompt= and needs no as_of, like profile_users."""
    ratings, items, _ = ml
    log = ratings.filter(pl.col("user_id").is_in([1, 2]))
    custom = enrich.PromptTemplate.for_users(tag="taste", max_input_tokens=120)
    shown = enrich.render_user_prompts(log, items, prompt=custom)
    assert set(shown) == {"1", "2"} and shown["1"].startswith("<taste>\n")
    llm = ScriptedChat(script=lambda text, attempt: LIKES)
    enrich.profile_users(log, items, prompt=custom, llm=llm, embedder=enrich.testing.HashEmbedder())
    assert sorted(c[c.index("<taste>\n") :] for c in llm.calls) == sorted(shown.values())
    with pytest.raises(TypeError, match="as_off"):
        enrich.render_user_prompts(log, items, as_off=CUTOFF)  # a misspelt option is refused


def test_cold_users_are_profiled_from_what_is_known_or_recorded(ml) -> None:
    ratings, items, users = ml
    log = ratings.filter(pl.col("user_id").is_in([1, 2, 3]))
    log = pl.concat(
        [log.filter(pl.col("user_id") != 3), log.filter(pl.col("user_id") == 3).head(2)]
    )  # user 3: 2 interactions
    people = users.filter(pl.col("user_id").is_in([1, 2, 3, 4]))  # user 4: no interactions
    out, report = enrich.profile_users(
        log,
        items,
        as_of=None,
        users=people,
        user_attr_cols=("age", "occupation"),
        llm=ScriptedChat(script=lambda t, a: LIKES),
        with_report=True,
    )
    assert report.rows_in == 4 and report.balanced() and report.rows_failed == 0
    flags = dict(zip(out["user_id"], out["is_cold"], strict=True))
    assert flags == {1: False, 2: False, 3: True, 4: True}
    # no attributes and no interactions before as_of: recorded with the reason, not dropped
    out, report = enrich.profile_users(
        log,
        items,
        as_of=datetime(1990, 1, 1),
        llm=ScriptedChat(script=lambda t, a: LIKES),
        with_report=True,
    )
    assert report.rows_failed == 3 and report.balanced()
    assert out["error"].str.contains("no interaction before as_of").all()


def test_rerun_returns_the_profile_of_the_asked_cut_off(ml, tmp_path) -> None:
    """A store holds one row per (user, as_of); a re-run at either cut-off (all skipped) returns
    one row per user: the profile of that cut-off's history."""
    from langchain_core.embeddings import DeterministicFakeEmbedding

    ratings, items, _ = ml
    log = ratings.filter(pl.col("user_id").is_in([1, 2, 5]))
    later = datetime(1998, 3, 1)

    def run(as_of: datetime) -> pl.DataFrame:
        return enrich.profile_users(
            log,
            items,
            as_of=as_of,
            llm=ScriptedChat(script=lambda t, a: LIKES),
            embedder=DeterministicFakeEmbedding(size=8),
            store=str(tmp_path / "s.duckdb"),
        )

    first, second = run(CUTOFF), run(later)
    assert (first["as_of"] < CUTOFF).all() and (second["as_of"] > first["as_of"]).any()
    for as_of, expected in ((CUTOFF, first), (later, second)):
        again = run(as_of)
        assert again["user_id"].to_list() == expected["user_id"].to_list()  # one row each
        assert again["as_of"].to_list() == expected["as_of"].to_list()
        assert again["input_hash"].to_list() == expected["input_hash"].to_list()


def test_missing_columns_are_named(ml) -> None:
    ratings, items, _ = ml
    with pytest.raises(enrich.InputError, match=r"interactions lack column\(s\) \['ts'\]"):
        enrich.profile_users(ratings, items, time_col="ts")


@pytest.mark.parametrize(
    "summary",
    [
        ", Most recent: Mulholland Falls (1996), ",  # the leading '",' token of SmolLM2
        "162 interactions, average rating 3.0; most recent: Hamlet",  # the history line
        "Heat (1995) (4.0); Babe (1995) (5.0); Fargo (1996)",  # the list of titles
        'Likes {"liked": dramas}',
        "Likes dramas\nand westerns",
    ],
)
def test_user_summary_must_be_a_sentence_not_a_copied_list(summary: str) -> None:
    with pytest.raises(ValidationError, match="summary"):
        UserProfile(summary=summary, liked=["drama"], disliked=[], keywords=["crime"])


@pytest.mark.parametrize("label", ["2.0", "The (1997)", "Fargo]", "history: 12", ", Heat"])
def test_user_labels_are_words(label: str) -> None:
    with pytest.raises(ValidationError, match="liked"):
        UserProfile(summary="Enjoys dark dramas.", liked=[label], disliked=[], keywords=["x y"])


def test_user_profile_patterns_take_any_script_and_reach_the_grammar() -> None:
    from enrich.llm.batched import grammar_for_schema

    ok = UserProfile(
        summary="Cet utilisateur aime les films noirs, pas les comédies.",
        liked=["Film-Noir", "Children's", "rock & roll", "犯罪"],
        disliked=[],
        keywords=["Amélie"],
    )
    assert ok.liked[3] == "犯罪"
    grammar = grammar_for_schema(json.dumps(UserProfile.model_json_schema()))
    # the summary's first character may not be a comma, a digit, a space or a bracket
    assert 'summary ::= "\\"" [^ \\t\\n0-9,;:.!?' in grammar
    assert "liked-item-1 ::= [^0-9" in grammar


@pytest.mark.slow
def test_real_model_profiles_validate_and_rerun_incrementally(ml, tmp_path, chat, embedder):
    ratings, items, _ = ml
    log = ratings.filter(pl.col("user_id").is_in([1, 5, 8]))  # all active before the cut-off
    store = str(tmp_path / "f.duckdb")
    kw = {"as_of": CUTOFF, "llm": chat, "embedder": embedder, "store": store, "with_report": True}
    out, first = enrich.profile_users(log, items, **kw)
    assert first.rows_generated + first.rows_failed == 3 and first.balanced(), first.failures
    assert first.rows_generated >= 1  # the model's junk (a copied title...) is recorded, not kept
    assert all(e.startswith("validation: junk") for e in first.failures.values())
    for row in out.filter(pl.col("status") == "enriched").iter_rows(named=True):
        UserProfile.model_validate({k: row[k] for k in UserProfile.model_fields})
        assert row["as_of"] < CUTOFF and row["embedding"] is not None
    stored = out.filter(pl.col("status") == "enriched")["user_id"].to_list()
    _, again = enrich.profile_users(log, items, **kw)
    assert again.rows_skipped == len(stored)  # only the recorded failures are asked again
    assert again.llm_calls <= 2 * first.rows_failed
    user = stored[0]  # one more interaction for a stored user: that user alone is redone
    last = log.filter((pl.col("user_id") == user) & (pl.col("timestamp") < CUTOFF))
    extra = (
        last.sort("timestamp")
        .tail(1)
        .with_columns(
            pl.lit(1).cast(pl.Int64).alias("item_id"),
            (pl.col("timestamp") + pl.duration(seconds=1)),
        )
    )
    again_out, _ = enrich.profile_users(log, items, **kw)
    now_stored = again_out.filter(pl.col("status") != "failed")["user_id"].to_list()
    redone, once = enrich.profile_users(pl.concat([log, extra]), items, **kw)
    assert once.rows_skipped == len(now_stored) - 1 and once.llm_calls >= 1
    row = redone.filter(pl.col("user_id") == user).row(0, named=True)
    assert row["status"] in ("enriched", "failed") and user not in (
        redone.filter(pl.col("status") == "skipped")["user_id"].to_list()
    )


def test_cli_profiles_users_from_a_file_log_and_a_duckdb_catalogue(ml, tmp_path, capsys) -> None:
    """``enrich users``: the log from a Parquet file, the catalogue from a DuckDB table, through
    a local OpenAI-compatible Batches server (``--batch``); every user ends in the store."""
    import duckdb

    from enrich.cli import main
    from enrich.store import Store
    from tests.batch_server import BatchServer

    ratings, items, _ = ml
    log = tmp_path / "log.parquet"
    ratings.filter(pl.col("user_id").is_in([1, 2, 3])).write_parquet(log)
    warehouse = tmp_path / "warehouse.duckdb"
    with duckdb.connect(str(warehouse)) as con:
        con.register("catalogue", items.select("item_id", "title").to_arrow())
        con.execute("CREATE TABLE items AS SELECT * FROM catalogue")
    store = tmp_path / "f.duckdb"
    with BatchServer(ScriptedChat(script=lambda text, attempt: LIKES)) as srv:
        args = [str(log), "--items", f"duckdb:{warehouse}#items", "--store", str(store)]
        assert main(["users", *args, "--llm", f"{srv.url}#m", "--batch"]) == 0
        assert main(["users", *args, "--llm", f"{srv.url}#m", "--as-of", "nonsense"]) == 2
    out, err = capsys.readouterr()
    assert "users: 3 in, 0 skipped, 0 from cache, 3 generated, 0 failed" in out
    assert "nonsense" in err  # a bad --as-of is named
    with Store.borrow(str(store)) as opened:
        profiled = opened.con.execute("SELECT user_id FROM user_profiles ORDER BY 1").fetchall()
    assert [u for (u,) in profiled] == ["1", "2", "3"] and len(srv.executed) == 3
