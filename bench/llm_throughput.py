"""LLM throughput on the embedded model, measured in one run on the same prompts:

(a0) llama-cpp-python's ``create_chat_completion`` with the same grammar, one request at a time
     (the stock API, and what enrich did before batching);
(a)  the raw batched backend: :class:`enrich.llm.batched.BatchDecoder` driven directly with the
     prompts' tokens, as many sequences at once as ``ChatEmbedded.n_parallel``;
(b)  the naive approach: a per-row ``with_structured_output(...).invoke`` loop, then embed each;
(c)  ``enrich.profile_items`` (LangChain, cache, store, embedding, ledger included),
then the fully cached re-run of (c), and of a 1,000-row store. Every path is warmed up on a few
other items first (model, grammar, decoder, embedder, LangChain's first call); then each runs
twice, in the order a0, b, a, c, c, a, b, a0, and its two runs are averaged, so drift of the
machine favours no path. Ratios are of measured rates only.

    .venv/bin/python bench/llm_throughput.py --items 48
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
from enrich.llm.batched import grammar_for_schema
from enrich.llm.embedded import ROLES, WORKER, chat_tokens
from enrich.movielens import find_data_dir, load_ml100k_items, load_sample_catalogue
from enrich.prompts import PromptTemplate
from enrich.schemas import ItemProfile
from enrich.store import Store


def catalogue(n: int) -> pl.DataFrame:
    data = find_data_dir("ml-100k")
    items = load_ml100k_items(data) if data else load_sample_catalogue()
    return items.select("item_id", "title", "genres").head(n)


def parses(text: str) -> dict | None:
    try:  # parsed as LangChain's parser does (control characters allowed in strings)
        return ItemProfile.model_validate(json.loads(text, strict=False)).model_dump()
    except (ValidationError, ValueError):
        return None


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=48)
    parser.add_argument("--warmup", type=int, default=4, help="items each path runs untimed")
    parser.add_argument("--cached-rows", type=int, default=1000)
    args = parser.parse_args()

    everything = catalogue(args.items + args.warmup)
    items, spare = everything.head(args.items), everything.tail(args.warmup)
    n = items.height
    prompt, schema = PromptTemplate.for_items(), ItemProfile

    def render(frame: pl.DataFrame) -> tuple[list, list]:
        msgs = [prompt.render(v, schema) for v in frame.select("title", "genres").to_dicts()]
        return msgs, [[{"role": ROLES[m.type], "content": m.text} for m in ms] for ms in msgs]

    messages, chats = render(items)
    warm_messages, warm_chats = render(spare)
    chat, embedder = ChatEmbedded(), resolve_embedder(None)
    llama = chat.llama()  # load once, outside every timing
    embedder.embed(["warm up"])
    decoder = chat.decoder()
    grammar = grammar_for_schema(json.dumps(schema.model_json_schema()))

    def one_at_a_time(chats: list = chats) -> tuple[float, int]:
        t0, ok = time.perf_counter(), 0
        for c in chats:
            out = WORKER.submit(
                llama.create_chat_completion,
                messages=c,
                response_format={"type": "json_object", "schema": schema.model_json_schema()},
                temperature=chat.temperature,
                max_tokens=chat.max_tokens,
                repeat_penalty=chat.repeat_penalty,
                seed=chat.seed,
            ).result()
            ok += parses(out["choices"][0]["message"]["content"]) is not None
        return time.perf_counter() - t0, ok

    def raw_batched(chats: list = chats) -> tuple[float, list[dict | None]]:
        t0 = time.perf_counter()
        futures = []
        for c in chats:  # tokenizing is part of driving the backend
            tokens, shared = chat_tokens(llama, c)
            futures.append(
                decoder.submit(
                    tokens, prefix_len=shared, grammar=grammar, max_tokens=chat.max_tokens
                )
            )
        outputs = [parses(f.result().text) for f in futures]
        return time.perf_counter() - t0, outputs

    def naive(messages: list = messages) -> tuple[float, int]:
        runnable = structured(chat, schema)
        t0, ok = time.perf_counter(), 0
        for msgs in messages:
            result = runnable.invoke(msgs)
            if result["parsed"] is not None:
                ok += 1
                embedder.embed([result["parsed"].to_text()])
        return time.perf_counter() - t0, ok

    def ours(items: pl.DataFrame = items) -> tuple[float, pl.DataFrame, object]:
        store = Store.open(None)
        t0 = time.perf_counter()
        out, report = enrich.profile_items(
            items, llm=chat, embedder=embedder, store=store, with_report=True
        )
        seconds = time.perf_counter() - t0
        t0 = time.perf_counter()
        _, cached = enrich.profile_items(
            items, llm=chat, embedder=embedder, store=store, with_report=True
        )
        return seconds, out, (report, cached, time.perf_counter() - t0)

    one_at_a_time(warm_chats)  # warm-up of every path, on other items, untimed
    naive(warm_messages)
    raw_batched(warm_chats)
    ours(spare)

    a0_first, a0_ok = one_at_a_time()
    b_first, b_ok = naive()
    a_first, raw_outputs = raw_batched()
    c_first, out, (report, cached, cached_s) = ours()
    c_second, _, _ = ours()
    a_second, _ = raw_batched()
    b_second, _ = naive()
    a0_second, _ = one_at_a_time()
    a0_s, b_s = (a0_first + a0_second) / 2, (b_first + b_second) / 2
    a_s, c_s = (a_first + a_second) / 2, (c_first + c_second) / 2
    same = sum(r == a for r, a in zip(raw_outputs, _attrs(out), strict=True) if r is not None)

    big_s, big_rows = cached_big(args.cached_rows, embedder)
    rate = n / c_s
    rows = [
        ("(a0) create_chat_completion, one at a time", n / a0_s, a0_ok),
        (
            f"(a) raw BatchDecoder, N={chat.n_parallel}",
            n / a_s,
            sum(o is not None for o in raw_outputs),
        ),
        ("(b) naive per-row invoke + embed", n / b_s, b_ok),
        ("(c) enrich.profile_items", rate, report.rows_generated),
    ]
    print(
        f"\n{n} MovieLens items, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores\n"
    )
    print(f"{'path':45} {'items/s':>8} {'valid':>8}")
    for name, ips, valid in rows:
        print(f"{name:45} {ips:8.3f} {valid:>4}/{n}")
    print(
        f"\n(c)/(a) = {rate / (n / a_s):.3f}   (c)/(a0) = {rate / (n / a0_s):.3f}   "
        f"(c)/(b) = {rate / (n / b_s):.3f}   [runs: (a0) {a0_first:.1f}s, {a0_second:.1f}s; "
        f"(b) {b_first:.1f}s, {b_second:.1f}s; (a) {a_first:.1f}s, {a_second:.1f}s; "
        f"(c) {c_first:.1f}s, {c_second:.1f}s]"
    )
    print(f"(c) answers identical to (a): {same}/{n}")
    print(
        f"cached re-run of the {n} rows: {cached_s:.3f}s, {cached.llm_calls} LLM calls "
        f"({100 * cached_s / c_first:.2f}% of the uncached run)"
    )
    print(
        f"cached re-run of {big_rows} rows: {big_s:.3f}s = {big_rows / big_s:.0f} rows/s, "
        f"{big_rows / big_s / rate:.0f}x (c)'s measured uncached rate"
    )
    result = {
        "items": n,
        "one_at_a_time_items_s": n / a0_s,
        "raw_items_s": n / a_s,
        "naive_items_s": n / b_s,
        "ours_items_s": rate,
        "ratio_vs_raw": rate / (n / a_s),
        "ratio_vs_one_at_a_time": rate / (n / a0_s),
        "ratio_vs_naive": rate / (n / b_s),
        "runs_s": {
            "a0": [a0_first, a0_second],
            "b": [b_first, b_second],
            "a": [a_first, a_second],
            "c": [c_first, c_second],
        },
        "valid": [a0_ok, sum(o is not None for o in raw_outputs), b_ok, report.rows_generated],
        "identical_to_raw": same,
        "cached_rerun_s": cached_s,
        "cached_1000_s": big_s,
        "cached_rows_s_vs_uncached": big_rows / big_s / rate,
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
    from enrich.testing import ScriptedChat

    items = pl.DataFrame({"item_id": range(n), "title": [f"Item {i}" for i in range(n)]})
    store, llm = Store.open(None), ScriptedChat()
    enrich.profile_items(items, llm=llm, embedder=embedder, store=store)
    enrich.profile_items(items, llm=llm, embedder=embedder, store=store)  # warm-up re-run
    t0 = time.perf_counter()
    _, report = enrich.profile_items(
        items, llm=llm, embedder=embedder, store=store, with_report=True
    )
    assert report.llm_calls == 0 and report.rows_skipped == n
    return time.perf_counter() - t0, n


if __name__ == "__main__":
    main()
