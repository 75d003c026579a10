"""The demo: profile a sample of MovieLens 100K items into a DuckDB file and query it.

Run it with ``make demo`` or ``enrich demo --limit 40``. Without MovieLens at hand it profiles the
small catalogue shipped with enrich.
"""

from __future__ import annotations

import time
from pathlib import Path

import duckdb
import polars as pl
from tqdm import tqdm

from enrich.config import EnrichSettings
from enrich.movielens import find_data_dir, load_ml100k_items, load_sample_catalogue
from enrich.profiles import profile_items
from enrich.sqlfiles import read_sql


def run_demo(data: Path | None, store: Path, limit: int | None, llm: str | None = None) -> None:
    data = data or find_data_dir("ml-100k")
    if data is not None:
        items, source = load_ml100k_items(data).select("item_id", "title", "genres"), str(data)
    else:
        items, source = load_sample_catalogue(), "the sample catalogue shipped with enrich"
        print("MovieLens 100K not found (pass --data PATH; get it from grouplens.org).")
    if limit is not None:
        items = items.head(limit)
    print(f"Profiling {items.height} items from {source} into {store} ...")
    settings = EnrichSettings(chunk_size=48)  # 3 waves of the embedded model's 16 sequences
    started = time.perf_counter()
    with tqdm(total=items.height, unit="item", desc="enrich") as bar:
        out, report = profile_items(
            items,
            store=str(store),
            llm=llm,
            settings=settings,
            progress=bar.update,
            with_report=True,
        )
    elapsed = time.perf_counter() - started
    print(f"\n{report.summary()}")
    made = report.rows_enriched
    rate = f"{made / report.llm_seconds:.2f} items/s of LLM time" if report.llm_seconds else "—"
    print(f"Wall time {elapsed:.1f}s for {items.height} rows; {rate}\n")
    with pl.Config(fmt_str_lengths=120, tbl_rows=5, tbl_width_chars=160):
        shown = items.join(out, on="item_id", how="left", maintain_order="left")
        print(shown.select("item_id", "title", "status", "profile_text").head(5))
    first = str(items["item_id"][0])
    con = duckdb.connect(str(store), read_only=True)
    try:
        rows = con.execute(
            read_sql("queries/similar_items.sql"), {"item_id": first, "k": 5}
        ).fetchall()
        values = con.sql(read_sql("queries/attribute_values.sql")).pl()
    finally:
        con.close()
    print(
        f"\nSQL (sql/queries/similar_items.sql): nearest profiles to item {first} "
        f"({items['title'][0]}):"
    )
    titles = dict(
        zip(items["item_id"].cast(pl.Utf8).to_list(), items["title"].to_list(), strict=True)
    )
    for item_id, similarity, _ in rows:
        print(f"  {similarity:.3f}  {item_id:>5}  {titles.get(item_id, '?')}")
    print("\nAttributes a ranker can group (sql/queries/attribute_values.sql), items per value:")
    for (field,), group in values.group_by("field", maintain_order=True):
        top = ", ".join(f"{v} {n}" for v, n in group.select("value", "items").head(4).iter_rows())
        print(f"  {field} ({group.height} values): {top}")
    print(f'\nQuery it yourself: duckdb {store} "SELECT item_id, profile_text FROM item_profiles"')
