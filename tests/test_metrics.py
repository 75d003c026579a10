"""The ranking metrics against a well-kept implementation (ir-measures, i.e. trec_eval's
definitions) on random rankings: every user, every metric, several cut-offs."""

from __future__ import annotations

import ir_measures
import numpy as np
import polars as pl
import pytest
from ir_measures import RR, R, nDCG

from enrich.downstream.metrics import ranking_metrics


def random_rankings(
    seed: int, users: int = 60, items: int = 40
) -> tuple[pl.DataFrame, pl.DataFrame]:
    rng = np.random.default_rng(seed)
    ranked, relevant = [], []
    for u in range(users):
        shown = rng.permutation(items)[: rng.integers(5, items)]
        ranked += [(f"u{u}", f"i{i}", r + 1) for r, i in enumerate(shown)]
        chosen = rng.choice(items, size=rng.integers(1, 12), replace=False)  # some never shown
        relevant += [(f"u{u}", f"i{i}") for i in chosen]
    return (
        pl.DataFrame(ranked, schema=["user_id", "item_id", "rank"], orient="row"),
        pl.DataFrame(relevant, schema=["user_id", "item_id"], orient="row"),
    )


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("ndcg_k", [5, 10])
def test_metrics_match_ir_measures_on_random_rankings(seed: int, ndcg_k: int) -> None:
    ranked, relevant = random_rankings(seed)
    ours = ranking_metrics(ranked, relevant, ks=(3, 10, 20), ndcg_k=ndcg_k)
    qrels = [ir_measures.Qrel(u, i, 1) for u, i in relevant.iter_rows()]
    run = [ir_measures.ScoredDoc(u, i, -float(r)) for u, i, r in ranked.iter_rows()]
    measures = {
        f"ndcg@{ndcg_k}": nDCG @ ndcg_k,
        "recall@3": R @ 3,
        "recall@10": R @ 10,
        "recall@20": R @ 20,
        "mrr": RR,
    }
    theirs: dict[tuple[str, str], float] = {}
    for m in ir_measures.iter_calc(list(measures.values()), qrels, run):
        theirs[(m.query_id, str(m.measure))] = m.value
    assert ours.height == 60
    for row in ours.to_dicts():
        for name, measure in measures.items():
            assert row[name] == pytest.approx(theirs[(row["user_id"], str(measure))], abs=1e-9), (
                row["user_id"],
                name,
            )
