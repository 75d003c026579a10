"""Attributes a ranker can use: controlled fields, induced vocabularies, junk rejected, cleaning,
and the facets the re-ranker reads. Fast tests use a scripted model for fault injection; the
slow ones run the embedded model, in process and behind a real OpenAI-compatible server."""

from __future__ import annotations

import json

import duckdb
import polars as pl
import pytest

import enrich
from enrich.config import EnrichSettings
from enrich.downstream.ranker import facet_features, ranker_features
from enrich.junk import JunkRules
from enrich.llm import structured
from enrich.llm.batched import grammar_for_schema
from enrich.prompts import PromptTemplate, clean_text
from enrich.schemas import FreeTextItemProfile, ItemProfile
from enrich.store import Store
from enrich.testing import GOOD, ScriptedChat
from enrich.vocab import Vocabulary, controlled, induce_vocabulary, merge_keywords

BABE = {"item_id": [8], "title": ["Babe (1995)"], "genres": ["Children's|Comedy|Drama"]}
SOURCE = PromptTemplate.for_items().data_block({"title": "Babe (1995)", "genres": "Comedy"})
FREE_OK = {
    "summary": "A pig raised by sheepdogs learns to herd sheep.",
    "keywords": ["farm", "animals"],
    "audience": "families",
    "mood": "warm",
}

# The junk the issue found in the demo store, each in the field it was found in.
JUNK = [
    ("audience", '}\n{\n    "'),
    ("audience", "}\n<item>\ntitle: Babe (2017)\ngenres: Children's|Comedy"),
    ("mood", "tone or mood in a few words"),
    ("summary", "Babe (1995) Comedy"),  # the input, copied where an inference is asked
]


@pytest.mark.parametrize(("field", "value"), JUNK)
def test_every_junk_example_is_rejected(field: str, value: str) -> None:
    answer = {**FREE_OK, field: value}
    FreeTextItemProfile.model_validate(answer)  # the schema alone lets each of them through
    problems = JunkRules().problems(answer, FreeTextItemProfile, SOURCE)
    assert len(problems) >= 1 and all(p.startswith(field) for p in problems)


def test_plausible_answers_are_not_junk(ml_items) -> None:
    """No false alarm on ordinary answers, including ones that name the input's genres."""
    rules = JunkRules()
    for title, genres in ml_items.head(50).select("title", "genres").iter_rows():
        source = PromptTemplate.for_items().data_block({"title": title, "genres": genres})
        answer = {
            **FREE_OK,
            "summary": f"A {genres.split('|')[0].lower()} film people talk about.",
            "keywords": [g.lower() for g in genres.split("|")[:2]] + ["people"],
        }
        assert rules.problems(answer, FreeTextItemProfile, source) == []


def test_rules_are_configurable() -> None:
    answer = {**FREE_OK, "audience": "kids {and} parents"}
    assert JunkRules().problems(answer, FreeTextItemProfile, SOURCE)
    assert JunkRules(enabled=False).problems(answer, FreeTextItemProfile, SOURCE) == []
    assert JunkRules(markup=r"<").problems(answer, FreeTextItemProfile, SOURCE) == []
    copied = {**FREE_OK, "audience": "Babe (1995) Comedy"}
    assert JunkRules().problems(copied, FreeTextItemProfile, SOURCE) == []  # not inferred
    found = JunkRules(inferred_fields=("audience",)).problems(copied, FreeTextItemProfile, SOURCE)
    assert found == ["audience copies the input verbatim where it asks for an inference"]


def test_junk_is_re_asked_then_recorded_with_the_reason(tmp_path, embedder) -> None:
    def script(text: str, attempt: int):
        if "Alien" in text:
            return {**GOOD, "summary": '"}\n{\n    "summary": "x"'}  # junk every time
        if "does not fit what was asked" in text:  # the re-ask
            return GOOD
        return {**GOOD, "summary": "Heat (1995)\ngenres: Crime"}

    items = pl.DataFrame({"item_id": [1, 2], "title": ["Heat (1995)", "Alien"], "genres": "Crime"})
    llm = ScriptedChat(script=script)
    store = str(tmp_path / "f.duckdb")
    out, report = enrich.profile_items(
        items, llm=llm, store=store, embedder=embedder, with_report=True
    )
    assert out["status"].to_list() == ["enriched", "failed"]
    assert report.llm_calls == 4  # each asked twice: fix_attempts=1
    assert any("junk: summary" in c for c in llm.calls)  # the reason was fed back
    with duckdb.connect(store, read_only=True) as con:
        errors = con.execute("SELECT entity_id, stage, error FROM enrich_errors").fetchall()
    assert [(e[0], e[1]) for e in errors] == [("2", "validation")]
    assert "junk: summary holds markup or JSON punctuation" in errors[0][2]


def test_junk_in_the_cache_is_not_served(tmp_path, embedder) -> None:
    """An answer cached before the rules (or under laxer ones) is generated again."""
    items = pl.DataFrame(BABE)
    store = str(tmp_path / "f.duckdb")
    bad = {**GOOD, "summary": "}\n<item>\ntitle: Babe (2017)"}
    lax = EnrichSettings(junk=JunkRules(enabled=False))
    enrich.profile_items(
        items,
        llm=ScriptedChat(script=lambda t, a: bad),
        store=store,
        embedder=embedder,
        settings=lax,
    )
    with Store.borrow(store) as s:
        s.con.execute("DELETE FROM item_profiles")
    fresh = ScriptedChat()
    out = enrich.profile_items(items, llm=fresh, store=store, embedder=embedder)
    assert len(fresh.calls) == 1 and out["summary"].to_list() == [GOOD["summary"]]
    with Store.borrow(store) as s:  # the good answer replaced the junk in the cache
        s.con.execute("DELETE FROM item_profiles")
    again = ScriptedChat()
    enrich.profile_items(items, llm=again, store=store, embedder=embedder)
    assert again.calls == []


def test_controlled_fields_accept_only_their_labels() -> None:
    shop = controlled(
        ItemProfile,
        themes=Vocabulary("themes", ("gifts", "garden", "games", "books")),
        mood=["calm", "busy"],
    )
    ok = {**GOOD, "mood": "busy", "themes": ["garden", "garden", "gifts"]}
    assert shop.model_validate(ok).themes == ["garden", "gifts"]  # repeats count once
    for wrong in (
        {"mood": "calm-ish"},
        {"themes": ["love"]},
        {"themes": []},
        {"themes": ["gifts", "garden", "games", "books"]},  # four: more than the field's three
    ):
        with pytest.raises(ValueError):
            shop.model_validate({**ok, **wrong})
    schema = shop.model_json_schema()["properties"]
    assert schema["themes"]["items"]["enum"] == ["gifts", "garden", "games", "books"]
    assert (schema["themes"]["minItems"], schema["themes"]["maxItems"]) == (1, 3)
    version = PromptTemplate.for_items().version_id
    assert version(shop) != version(ItemProfile)  # the vocabulary is part of the prompt version
    with pytest.raises(enrich.InputError, match="has no field 'genre'"):
        controlled(ItemProfile, genre=["x"])


def test_the_grammar_allows_only_the_labels_and_the_scale() -> None:
    grammar = grammar_for_schema(json.dumps(ItemProfile.model_json_schema()))
    lines = dict(line.split(" ::= ", 1) for line in grammar.splitlines())
    assert lines["family-friendly"] == '"1" | "2" | "3" | "4" | "5"'
    assert lines["mood"] == " | ".join(f'"\\"{m}\\""' for m in enrich.schemas.MOODS)
    assert "minimum" not in grammar and "[0-9]" not in lines["family-friendly"]


def test_unclosed_and_escaped_catalogue_markup_is_cleaned() -> None:
    """The catalogue text seen in the wild: a span cut before its '>', entities, attributes."""
    assert clean_text('Babe <span class="product-title__text"') == "Babe"
    assert clean_text('<span class="t" data-x="1">Heat</span> &lt;b&gt;new&lt;/b&gt;') == "Heat new"
    assert clean_text('Heat class="t" style="color:red" (1995)') == "Heat (1995)"
    assert clean_text("Fish &amp;amp; Chips &#8212; live") == "Fish & Chips \u2014 live"
    assert clean_text("a < b and c > d") == "a < b and c > d"  # not markup


def test_a_field_of_markup_alone_counts_as_empty(embedder) -> None:
    items = pl.DataFrame(
        {
            "item_id": [1, 2],
            "title": ['<span class="title"', "Heat (1995)"],
            "description": ["<div><br/></div>", '<p class="x">A heist.'],
        }
    )
    llm = ScriptedChat()
    out = enrich.profile_items(items, llm=llm, embedder=embedder)
    assert out["status"].to_list() == ["failed", "enriched"]
    assert "no text in columns" in out["error"][0]
    assert len(llm.calls) == 1 and "<span" not in llm.calls[0] and "A heist." in llm.calls[0]


def test_facets_reach_the_ranker_as_codes_multi_hot_numbers_and_affinity() -> None:
    facets = pl.DataFrame(
        {
            "item_id": ["a", "b", "c"],
            "mood": ["dark", "funny", "dark"],
            "themes": [["war"], ["love", "war"], ["love"]],
            "intensity": [5, 1, 4],
        }
    )
    history = pl.DataFrame(  # u saw a twice: one item of u's history all the same
        {"user_id": ["u", "u", "u", "v"], "item_id": ["a", "a", "c", "b"], "rating": [5.0] * 4}
    )
    candidates = pl.DataFrame(
        {
            "user_id": ["u", "u", "w"],
            "item_id": ["b", "c", "a"],
            "score": [0.9, 0.5, 0.1],
            "rank": [1, 2, 1],
        }
    )
    frame, groups, cats = ranker_features(candidates, history, facets=facets)
    assert cats == ["cat_f_mood"] and groups == [2, 1]
    row = {r["item_id"]: r for r in frame.filter(pl.col("user_id") == "u").to_dicts()}
    # u saw a (dark, war, 5) and c (dark, love, 4): half of u's history is about love, half war
    assert row["b"]["aff_mood"] == 0.0 and row["c"]["aff_mood"] == 1.0
    assert row["b"]["aff_themes"] == 0.5 and row["c"]["aff_themes"] == 0.5
    assert (row["b"]["mh_themes_love"], row["b"]["mh_themes_war"]) == (1, 1)
    assert row["b"]["num_intensity"] == 1 and row["b"]["gap_intensity"] == 3.5
    w = frame.filter(pl.col("user_id") == "w").to_dicts()[0]  # no history: affinity unknown
    assert w["aff_mood"] is None and w["aff_themes"] is None and w["gap_intensity"] is None
    alone, _ = facet_features(candidates.select("user_id", "item_id"), history, facets)
    assert alone.height == candidates.height


def test_near_duplicate_keywords_merge_into_the_commonest(embedder) -> None:
    keywords = [["friendship", "war"], ["friendships", "war"], ["friendship"], ["cooking"]]
    labels, counts = merge_keywords(keywords, embedder, Store.open(None), similarity=0.8)
    assert labels == ["friendship", "war", "cooking"] and counts == [3, 2, 1]


def test_vocabularies_are_stored_and_loaded(tmp_path) -> None:
    store = Store.open(tmp_path / "v.duckdb")
    first = Vocabulary("themes", ("war", "love"), (5, 3), "m", "p", 10, 0)
    first.save(store)
    first.save(store)  # idempotent
    second = Vocabulary("themes", ("war", "love", "sea"), (5, 3, 2), "m", "p", 10, 1, k=5)
    second.save(store)
    assert store.scalar("SELECT count(*) FROM vocabularies") == 2
    assert Vocabulary.load(store, "themes", first.version) == first
    assert Vocabulary.load(store, "themes") == second  # the newest
    first.save(store)  # saved again: the newest now
    assert Vocabulary.load(store, "themes") == first
    given = Vocabulary("moods", ("dark", "light"))  # labels given, not induced: no counts
    given.save(store)
    assert Vocabulary.load(store, "moods") == given
    with pytest.raises(enrich.EnrichError, match="no vocabulary 'tones'"):
        Vocabulary.load(store, "tones")
    with pytest.raises(enrich.EnrichError, match="repeats a label"):
        Vocabulary("x", ("a", "a"))


@pytest.mark.slow
def test_enum_fields_produce_only_their_values_under_the_embedded_grammar(
    ml_items, chat, embedder
) -> None:
    vocab = ("upbeat", "gloomy", "neutral")
    schema = controlled(ItemProfile, mood=vocab, themes=("people", "places", "events"))
    prompt = PromptTemplate.for_items()
    runnable = structured(chat, schema)
    rows = ml_items.head(8).select("title", "genres").to_dicts()
    answers = runnable.batch([prompt.render(r, schema) for r in rows])
    # the grammar alone kept every answer inside the vocabulary: none needed validation to
    # refuse it (parsing validates against the schema, so an outside value would be an error)
    assert [a["parsing_error"] for a in answers] == [None] * 8
    assert {a["parsed"].mood for a in answers} <= set(vocab)
    assert {t for a in answers for t in a["parsed"].themes} <= {"people", "places", "events"}
    assert all(1 <= a["parsed"].family_friendly <= 5 for a in answers)
    out = enrich.profile_items(ml_items.head(8), llm=chat, embedder=embedder, schema=schema)
    assert set(out["mood"].drop_nulls()) <= set(vocab)  # and so do the stored profiles


@pytest.mark.slow
def test_enum_fields_produce_only_their_values_through_the_openai_compatible_path(
    ml_items, embedder
) -> None:
    from tests.servers import llama_server

    vocab = ("upbeat", "gloomy", "neutral")
    schema = controlled(ItemProfile, mood=vocab)
    with llama_server(alias="smollm2") as url:
        out, report = enrich.profile_items(
            ml_items.head(6),
            llm=f"{url}#smollm2",
            embedder=embedder,
            schema=schema,
            with_report=True,
            settings=EnrichSettings(max_concurrency=2),
        )
    assert report.rows_generated + report.rows_failed == 6 and report.rows_generated >= 4
    assert set(out["mood"].drop_nulls()) <= set(vocab)
    assert set(out["audience"].drop_nulls()) <= set(enrich.schemas.AUDIENCES)


@pytest.mark.slow
def test_the_induced_vocabulary_is_stable_for_the_same_sample_and_seed(
    ml_items, chat, embedder, tmp_path
) -> None:
    args = {"name": "themes", "k": 10, "sample": 16, "seed": 3, "llm": chat, "embedder": embedder}
    first = induce_vocabulary(ml_items, store=str(tmp_path / "a.duckdb"), **args)
    shuffled = ml_items.sample(fraction=1.0, shuffle=True, seed=9)  # input order does not matter
    second = induce_vocabulary(shuffled, store=str(tmp_path / "b.duckdb"), **args)  # no cache
    assert first.labels == second.labels and first.version == second.version
    assert first.llm_calls >= 16 and first.tokens_in > 0  # the first pass, paid and counted
    with Store.borrow(str(tmp_path / "a.duckdb")) as store:
        assert Vocabulary.load(store, "themes") == first
        ledger = store.con.execute(
            "SELECT rows_in, llm_calls, tokens_in FROM runs WHERE kind = 'vocabulary'"
        ).fetchall()
    assert ledger == [(16, first.llm_calls, first.tokens_in)]  # the pass's spend is on record


@pytest.mark.slow
def test_cli_induces_a_vocabulary_then_profiles_choosing_from_it(ml_items, tmp_path, capsys):
    from enrich.cli import main

    csv, db = tmp_path / "items.csv", tmp_path / "f.duckdb"
    ml_items.head(16).write_csv(csv)
    args = ["--k", "6", "--sample", "16", "--store", str(db)]
    assert (
        main(["vocab", str(csv), "--name", "themes", "--text-cols", "title", "genres", *args]) == 0
    )
    assert "labels from 16 items" in capsys.readouterr().out
    assert main(["items", str(csv), "--vocab", "themes", "--store", str(db)]) == 0
    with Store.borrow(str(db)) as store:
        labels = set(Vocabulary.load(store, "themes").labels)
        stored = store.con.execute(
            "SELECT DISTINCT unnest(CAST(json_extract(attributes, '$.themes') AS VARCHAR[])) "
            "FROM item_profiles"
        ).fetchall()
    assert stored and {t for (t,) in stored} <= labels
    assert main(["items", str(csv), "--vocab", "moods", "--store", str(db)]) == 2  # none stored
