"""LLM throughput on the embedded model, measured in one run on the same prompts:

(a) the raw backend: llama-cpp-python's ``create_chat_completion`` with the same grammar,
(b) the naive approach: a per-row ``with_structured_output(...).invoke`` loop, then embed each,
(c) ``enrich.profile_items`` (cache, store, embedding, ledger included),
then the fully cached re-run of (c), and of a 1,000-row store.

    .venv/bin/python bench/llm_throughput.py --items 20
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

import polars as pl
from pydantic import ValidationError

import enrich
from enrich.embedding import resolve_embedder
from enrich.llm import ChatEmbedded, structured
from enrich.llm.embedded import _WORKER
from enrich.movielens import find_data_dir, load_ml100k_items, load_sample_catalogue
from enrich.prompts import PromptTemplate
from enrich.schemas import ItemProfile
from enrich.store import Store

ROLES = {"system": "system", "human": "user"}


def catalogue(n: int) -> pl.DataFrame:
    data = find_data_dir("ml-100k")
    items = load_ml100k_items(data) if data else load_sample_catalogue()
    return items.select("item_id", "title", "genres").head(n)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=20)
    parser.add_argument("--cached-rows", type=int, default=1000)
    args = parser.parse_args()

    items = catalogue(args.items)
    prompt, schema = PromptTemplate.for_items(), ItemProfile
    messages = [prompt.render(v, schema) for v in items.select("title", "genres").to_dicts()]
    chat, embedder = ChatEmbedded(), resolve_embedder(None)
    llama = chat._llama()  # load once, outside every timing
    embedder.embed(["warm up"])

    # (a) raw backend, on the decoding thread ChatEmbedded uses (llama.cpp's OpenMP team belongs
    # to the calling thread; calls from two threads make two teams compete for the cores)
    t0 = time.perf_counter()
    raw_valid, raw_outputs = 0, []
    for msgs in messages:
        out = _WORKER.submit(
            llama.create_chat_completion,
            messages=[{"role": ROLES[m.type], "content": m.text} for m in msgs],
            response_format={"type": "json_object", "schema": schema.model_json_schema()},
            temperature=chat.temperature,
            max_tokens=chat.max_tokens,
            repeat_penalty=chat.repeat_penalty,
            seed=chat.seed,
        ).result()
        text = out["choices"][0]["message"]["content"]
        raw_outputs.append(text)
        try:  # parsed as LangChain's parser does (control characters allowed in strings)
            schema.model_validate(json.loads(text, strict=False))
            raw_valid += 1
        except (ValidationError, ValueError):
            pass
    raw_s = time.perf_counter() - t0

    # (b) naive per-row loop
    runnable = structured(chat, schema)
    t0 = time.perf_counter()
    naive_valid = 0
    for msgs in messages:
        result = runnable.invoke(msgs)
        if result["parsed"] is not None:
            naive_valid += 1
            embedder.embed([result["parsed"].to_text()])
    naive_s = time.perf_counter() - t0

    # (c) profile_items, fresh in-memory store
    store = Store.open(None)
    t0 = time.perf_counter()
    out, report = enrich.profile_items(
        items, llm=chat, embedder=embedder, store=store, with_report=True
    )
    ours_s = time.perf_counter() - t0
    same = sum(
        json.loads(r, strict=False) == a for r, a in zip(raw_outputs, _attrs(out), strict=True)
    )
    t0 = time.perf_counter()
    _, cached = enrich.profile_items(
        items, llm=chat, embedder=embedder, store=store, with_report=True
    )
    cached_s = time.perf_counter() - t0

    big_s, big_rows = cached_big(args.cached_rows, embedder)
    rate = report.rows_enriched / ours_s
    extrapolated = big_rows / rate
    rows = [
        ("(a) raw llama-cpp create_chat_completion", args.items / raw_s, raw_valid),
        ("(b) naive per-row invoke + embed", args.items / naive_s, naive_valid),
        ("(c) enrich.profile_items", rate, report.rows_generated),
    ]
    print(
        f"\n{args.items} MovieLens items, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores\n"
    )
    print(f"{'path':45} {'items/s':>8} {'valid':>6}")
    for name, ips, valid in rows:
        print(f"{name:45} {ips:8.3f} {valid:>3}/{args.items}")
    print(
        f"\n(c)/(a) = {rate / (args.items / raw_s):.3f}   "
        f"(c)/(b) = {rate / (args.items / naive_s):.3f}"
    )
    print(f"(c) answers identical to (a): {same}/{args.items}")
    print(
        f"cached re-run of the {args.items} rows: {cached_s:.3f}s, {cached.llm_calls} LLM calls "
        f"({100 * cached_s / ours_s:.2f}% of the uncached run)"
    )
    print(
        f"cached re-run of {big_rows} rows: {big_s:.3f}s vs {extrapolated:.0f}s uncached at "
        f"(c)'s rate = {100 * big_s / extrapolated:.3f}%"
    )
    result = {
        "items": args.items,
        "raw_items_s": args.items / raw_s,
        "naive_items_s": args.items / naive_s,
        "ours_items_s": rate,
        "ratio_vs_raw": rate / (args.items / raw_s),
        "ratio_vs_naive": rate / (args.items / naive_s),
        "valid": [raw_valid, naive_valid, report.rows_generated],
        "identical_to_raw": same,
        "cached_rerun_s": cached_s,
        "cached_1000_s": big_s,
        "cached_1000_share": big_s / extrapolated,
    }
    Path(__file__).with_name("results").mkdir(exist_ok=True)
    Path(__file__).with_name("results").joinpath("llm_throughput.json").write_text(
        json.dumps(result, indent=2)
    )


def _attrs(out: pl.DataFrame) -> list[dict]:
    return out.select(list(ItemProfile.model_fields)).to_dicts()


def cached_big(n: int, embedder) -> tuple[float, int]:
    """Time of a fully cached re-run over ``n`` rows. The store is filled by a scripted model:
    the re-run reads only the store, so which model wrote it does not change the timing."""
    from tests.fakes import ScriptedChat

    items = pl.DataFrame({"item_id": range(n), "title": [f"Item {i}" for i in range(n)]})
    store, llm = Store.open(None), ScriptedChat()
    enrich.profile_items(items, llm=llm, embedder=embedder, store=store)
    t0 = time.perf_counter()
    _, report = enrich.profile_items(
        items, llm=llm, embedder=embedder, store=store, with_report=True
    )
    assert report.llm_calls == 0 and report.rows_skipped == n
    return time.perf_counter() - t0, n


if __name__ == "__main__":
    main()
