"""End to end with the real embedded LLM and embedder on real MovieLens rows."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import duckdb
import numpy as np
import polars as pl
import pytest

import enrich
from enrich.schemas import ItemProfile

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def enriched(tmp_path_factory, ml_items, chat, embedder):
    store = tmp_path_factory.mktemp("e2e") / "features.duckdb"
    items = ml_items.filter(pl.col("item_id").is_in([1, 50, 181]))
    out, report = enrich.profile_items(
        items, store=str(store), llm=chat, embedder=embedder, with_report=True
    )
    return items, out, report, store


def test_every_output_validates(enriched) -> None:
    items, out, report, _ = enriched
    assert report.rows_generated == 3 and report.rows_failed == 0 and report.balanced()
    assert out["item_id"].to_list() == items["item_id"].to_list()
    assert out["item_id"].dtype == items["item_id"].dtype
    for row in out.iter_rows(named=True):
        ItemProfile.model_validate({k: row[k] for k in ItemProfile.model_fields})
        assert row["profile_text"].startswith(row["summary"].rstrip("."))
        assert row["model"] == "smollm2-135m-instruct-q4_1"
        assert row["embedding_model"] == "all-MiniLM-L6-v2"
        assert row["prompt_version"].startswith("item-profile-v1-")


def test_embeddings_have_the_right_shape_and_unit_norm(enriched) -> None:
    _, out, _, _ = enriched
    assert out.schema["embedding"] == pl.Array(pl.Float32, 384)
    vectors = out["embedding"].to_numpy()
    assert vectors.shape == (3, 384) and vectors.dtype == np.float32
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)


def test_rows_land_in_duckdb_and_read_back_equal(enriched) -> None:
    _, out, report, store = enriched
    con = duckdb.connect(str(store), read_only=True)
    stored = pl.from_arrow(
        con.sql("SELECT * FROM item_profiles ORDER BY item_id::INT").to_arrow_table()
    )
    runs = con.execute("SELECT rows_in, rows_generated, llm_calls, status FROM runs").fetchall()
    con.close()
    assert stored["item_id"].to_list() == [str(i) for i in out["item_id"].to_list()]
    assert stored["profile_text"].to_list() == out["profile_text"].to_list()
    assert stored["input_hash"].to_list() == out["input_hash"].to_list()
    np.testing.assert_array_equal(stored["embedding"].to_numpy(), out["embedding"].to_numpy())
    assert [json.loads(a)["summary"] for a in stored["attributes"]] == out["summary"].to_list()
    assert runs == [(3, 3, report.llm_calls, "ok")]


def test_rerun_is_free_and_a_change_costs_one_call(enriched, chat, embedder) -> None:
    items, _, _, store = enriched
    _, again = enrich.profile_items(
        items, store=str(store), llm=chat, embedder=embedder, with_report=True
    )
    assert again.llm_calls == 0 and again.rows_skipped == 3
    changed = items.with_columns(
        pl.when(pl.col("item_id") == 50)
        .then(pl.lit("Sci-Fi|Space"))
        .otherwise("genres")
        .alias("genres")
    )
    _, once = enrich.profile_items(
        changed, store=str(store), llm=chat, embedder=embedder, with_report=True
    )
    assert once.llm_calls == 1 and once.rows_generated == 1 and once.rows_skipped == 2


@pytest.fixture(scope="module")
def demo(tmp_path_factory, ml100k) -> tuple[str, Path]:
    """``enrich demo --limit 3`` (the embedded LLM and embedder): its output and its store."""
    store = tmp_path_factory.mktemp("demo") / "demo.duckdb"
    result = subprocess.run(
        [
            *(sys.executable, "-m", "enrich.cli", "demo", "--limit", "3"),
            *("--data", str(ml100k), "--store", str(store)),
        ],
        capture_output=True,
        text=True,
        timeout=600,
        check=True,
    )
    return result.stdout, store


def test_demo_command_prints_profiles_and_sql(demo) -> None:
    stdout, _ = demo
    assert "3 generated, 0 failed" in stdout
    assert "Toy Story (1995)" in stdout
    assert "nearest profiles to item 1" in stdout
    assert len([line for line in stdout.splitlines() if line.startswith("  0.")]) == 2
    audience = next(line for line in stdout.splitlines() if line.startswith("  audience"))
    assert any(label in audience for label in enrich.schemas.AUDIENCES), audience


def test_reembed_a_demo_store_with_another_embedder_makes_no_llm_call(demo, tmp_path) -> None:
    """``enrich reembed`` on the store the embedded model filled: 0 LLM calls; both embedders
    queryable; the copy of the same model gives the same vectors."""
    import shutil

    from enrich.embedding import shipped_model_path

    _, store = demo
    other = tmp_path / "minilm-copy"
    shutil.copytree(shipped_model_path(), other)

    def counts() -> tuple:
        with duckdb.connect(str(store), read_only=True) as con:
            return con.execute(
                "SELECT (SELECT count(*) FROM runs), (SELECT sum(llm_calls) FROM runs), "
                "(SELECT count(*) FROM llm_cache)"
            ).fetchall()[0]

    before = counts()
    for expected in ("3 of 3", "0 of 0"):  # then incremental: nothing left
        result = subprocess.run(
            [
                *(sys.executable, "-m", "enrich.cli", "reembed"),
                *("--store", str(store), "--embedder", str(other)),
            ],
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        assert expected in result.stdout, result.stdout
    assert counts() == before
    with duckdb.connect(str(store), read_only=True) as con:
        dims = dict(con.execute("SELECT embedding_model, dims FROM embedders").fetchall())
        pairs = con.execute(
            "SELECT list_cosine_similarity(a.embedding, b.embedding) FROM "
            "item_features_with(embedder := 'minilm-copy') AS a JOIN "
            "item_features_with(embedder := 'all-MiniLM-L6-v2') AS b USING (item_id)"
        ).fetchall()
    assert dims == {"all-MiniLM-L6-v2": [384], "minilm-copy": [384]}
    assert len(pairs) == 3 and all(c > 0.9999 for (c,) in pairs)


def test_demo_without_movielens_uses_the_shipped_catalogue(tmp_path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "enrich.cli",
            "demo",
            "--limit",
            "2",
            "--data",
            str(tmp_path),
            "--store",
            str(tmp_path / "demo.duckdb"),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    # an explicit --data that holds no MovieLens is an error naming the file and where to get it
    assert result.returncode == 2 and "u.item not found" in result.stderr


def test_cli_help() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "enrich.cli", "--help"], capture_output=True, text=True, check=True
    )
    assert "demo" in result.stdout and "items" in result.stdout
