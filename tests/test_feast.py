"""``enrich export --feast``: the real Feast SDK applies the written repository, materializes it
into its SQLite online store, and serves what the store's views give — online per id as
``item_features`` / ``user_features``, offline per (user, time) as ``user_features_as_of``."""

from __future__ import annotations

import subprocess
import sys
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from enrich.cli import main
from enrich.store import Store

DIM = 8
pytestmark = pytest.mark.slow  # the Feast SDK: ~35 s
T = datetime


def vectors(n: int, seed: int) -> list[np.ndarray]:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return list(v / np.linalg.norm(v, axis=1, keepdims=True))


def items(ids: list[str], at: datetime, prompt: str = "p") -> pa.Table:
    n = len(ids)
    return pa.table(
        {
            "item_id": ids,
            "model": ["m"] * n,
            "prompt_version": [prompt] * n,
            "input_hash": [f"h{i}{prompt}" for i in ids],
            "profile_text": [f"item {i} {prompt}" for i in ids],
            "attributes": [f'{{"summary": "item {i}"}}' for i in ids],
            "embedding": vectors(n, len(prompt)),
            "embedding_model": ["e"] * n,
            "run_id": ["r"] * n,
            "created_at": [at] * n,
        }
    )


def users(rows: list[tuple[str, datetime, datetime, str]]) -> pa.Table:
    """(user, as_of, created_at, text) rows."""
    n = len(rows)
    return pa.table(
        {
            "user_id": [r[0] for r in rows],
            "model": ["m"] * n,
            "prompt_version": [r[3] for r in rows],  # one key per row
            "as_of": [r[1] for r in rows],
            "input_hash": [f"u{r[3]}" for r in rows],
            "n_interactions": list(range(1, n + 1)),
            "is_cold": [False] * n,
            "profile_text": [r[3] for r in rows],
            "attributes": ['{"liked": ["drama"]}'] * n,
            "embedding": vectors(n, 7),
            "embedding_model": ["e"] * n,
            "run_id": ["r"] * n,
            "created_at": [r[2] for r in rows],
        }
    )


@pytest.fixture(scope="module")
def repo(tmp_path_factory) -> tuple[Path, Path]:
    """A store, exported with ``enrich export --feast`` and applied with ``feast apply``."""
    tmp_path = tmp_path_factory.mktemp("feast")
    path = tmp_path / "f.duckdb"
    store = Store.open(path)
    store.ensure_profile_tables(DIM)
    store.upsert_profiles("items", items(["1", "2", "3"], T(2026, 1, 1)))
    store.upsert_profiles("items", items(["2"], T(2026, 2, 1), prompt="p2"))  # re-profiled
    store.upsert_profiles(
        "users",
        users(
            [
                ("a", T(2026, 1, 1), T(2026, 1, 2), "a in January"),
                ("a", T(2026, 2, 1), T(2026, 2, 2), "a in February"),
                ("b", T(2026, 1, 15), T(2026, 1, 16), "b mid-January"),
                ("c", T(2026, 1, 5), T(2026, 1, 6), "c older run"),
                ("c", T(2026, 1, 5), T(2026, 1, 7), "c newer run"),  # same as_of: newest wins
            ]
        ),
    )
    store.close()
    assert main(["export", "--store", str(path), "--feast", str(tmp_path / "repo")]) == 0
    feast_cli = Path(sys.executable).parent / "feast"
    applied = subprocess.run(
        [str(feast_cli), "apply"], cwd=tmp_path / "repo", capture_output=True, text=True
    )
    assert applied.returncode == 0, applied.stderr[-3000:]
    return path, tmp_path / "repo"


def test_feast_serves_online_what_the_views_give(repo) -> None:
    from feast import FeatureStore

    path, folder = repo
    fs = FeatureStore(repo_path=str(folder))
    fs.materialize(T(2025, 1, 1), T(2026, 12, 1))
    online = fs.get_online_features(
        features=["item_profile:profile_text", "item_profile:embedding"],
        entity_rows=[{"item_id": i} for i in ("1", "2", "3")],
    ).to_dict()
    served = fs.get_online_features(
        features=["user_profile:profile_text", "user_profile:n_interactions"],
        entity_rows=[{"user_id": u} for u in ("a", "b", "c")],
    ).to_dict()
    with Store.open_reader(path) as store:
        want = store.con.sql(
            "SELECT item_id, profile_text, embedding FROM item_features ORDER BY item_id"
        ).fetchall()
        people = store.con.sql(
            "SELECT profile_text, n_interactions FROM user_features ORDER BY user_id"
        ).fetchall()
    assert online["profile_text"] == [w[1] for w in want] == ["item 1 p", "item 2 p2", "item 3 p"]
    for got, (_, _, vector) in zip(online["embedding"], want, strict=True):
        np.testing.assert_allclose(got, vector, rtol=1e-6)
    assert served["profile_text"] == [p[0] for p in people]
    assert served["profile_text"] == ["a in February", "b mid-January", "c newer run"]
    assert served["n_interactions"] == [p[1] for p in people]


def test_feast_point_in_time_join_is_user_features_as_of(repo) -> None:
    from feast import FeatureStore

    path, folder = repo
    fs = FeatureStore(repo_path=str(folder))
    asked = [
        ("a", T(2025, 12, 1)),  # before any profile
        ("a", T(2026, 1, 10)),
        ("a", T(2026, 3, 1)),
        ("b", T(2026, 1, 14)),
        ("b", T(2026, 1, 15)),  # at as_of: included, as in user_features_as_of
        ("c", T(2026, 1, 20)),
    ]
    entity_df = pd.DataFrame(
        {"user_id": [u for u, _ in asked], "event_timestamp": [t for _, t in asked]}
    )
    joined = (
        fs.get_historical_features(entity_df=entity_df, features=["user_profile:profile_text"])
        .to_df()
        .sort_values(["user_id", "event_timestamp"])
    )
    # Feast's file store returns the (user, time) rows that have a profile by then, as
    # user_features_as_of gives a row only for users with a profile by then
    got = {
        (u, t.replace(tzinfo=None)): text
        for u, t, text in joined[["user_id", "event_timestamp", "profile_text"]].itertuples(
            index=False
        )
    }
    with Store.open_reader(path) as store:
        want = [
            next(
                iter(
                    r[0]
                    for r in store.con.execute(
                        "SELECT profile_text FROM user_features_as_of(?::TIMESTAMP) "
                        "WHERE user_id = ?",
                        [t, u],
                    ).fetchall()
                ),
                None,
            )
            for u, t in asked
        ]
    assert got == {key: text for key, text in zip(asked, want, strict=True) if text is not None}
    assert want == [None, "a in January", "a in February", None, "b mid-January", "c newer run"]
