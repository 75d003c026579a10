"""The embedded model at the hardware's limit, measured in one run on the same MovieLens items:

- one at a time: llama-cpp-python's ``create_chat_completion`` with the schema grammar (what
  ``ChatEmbedded`` did before batching, and what most wrappers do);
- batched: :class:`enrich.llm.batched.BatchDecoder` with N = 1, 4, 8, 16 sequences at once,
  shared system prefix, per-sequence grammar. Every N is warmed up first, then the sweep is
  repeated ``--repeats`` times, forwards and backwards in turn (1, 4, 8, 16, 16, 8, 4, 1, ...),
  so drift of the machine favours no N; each N's mean, min and max are reported, and whether the
  best N is ahead of the next one by more than their spread;
- rates: prompt tok/s (prompts only, 16 at once) and generation tok/s (16 sequences), and the
  ceiling they imply for these prompts and answers.

    .venv/bin/python bench/embedded_throughput.py --items 64 --repeats 3

With ``--pipeline N``, the whole product path instead: ``enrich.profile_items`` on N MovieLens
items (chunks of 64, embedding, store, ledger) into a fresh store per run, the next chunk's
requests started while the current one is stored (``overlap_chunks``, the default) against one
chunk at a time, in the order on, off, off, on, ...; each run's items/s against the ceiling the
phase rates measured just before and just after it give for the tokens it decoded (the mean of
the two: this host's speed drifts by ~20% within minutes), and a breakdown of its batched steps
(the model, sampling and grammar, Python around them; the mean batch occupancy):

    .venv/bin/python bench/embedded_throughput.py --pipeline 192 --repeats 2
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from pydantic import ValidationError

import enrich
from enrich.llm import ChatEmbedded
from enrich.llm.batched import BatchDecoder, Completion, DecodeStats, grammar_for_schema
from enrich.llm.embedded import ROLES, WORKER, chat_tokens
from enrich.movielens import find_data_dir, load_ml100k_items, load_sample_catalogue
from enrich.prompts import PromptTemplate
from enrich.schemas import ItemProfile


def valid(text: str) -> bool:
    try:  # parsed as LangChain's parser does (control characters allowed in strings)
        ItemProfile.model_validate(json.loads(text, strict=False))
        return True
    except (ValidationError, ValueError):
        return False


def run_batched(
    llama: object,
    prompts: list[tuple[list[int], int]],
    grammar: str | None,
    n_seq: int,
    max_tokens: int,
    flash: bool,
) -> tuple[float, list[Completion], BatchDecoder]:
    decoder = WORKER.submit(
        BatchDecoder, llama, n_seq=n_seq, n_ctx_seq=1024, flash_attn=flash, run_on=WORKER.submit
    ).result()
    t0 = time.perf_counter()
    futures = [
        decoder.submit(t, prefix_len=k, grammar=grammar, max_tokens=max_tokens) for t, k in prompts
    ]
    done = [f.result() for f in futures]
    seconds = time.perf_counter() - t0
    WORKER.submit(decoder.close).result()
    return seconds, done, decoder


def phase_rates(
    llama: object,
    prompts: list[tuple[list[int], int]],
    grammar: str,
    n_seq: int,
    max_tokens: int,
    flash: bool = False,
) -> tuple[float, float]:
    """Prompt tok/s (prompts alone: max_tokens=1, ``n_seq`` at once) and generation tok/s
    (``n_seq`` copies of one prompt: its prefix is shared, so nearly all the time is
    generation)."""
    s, _, dec = run_batched(llama, prompts, grammar, n_seq, 1, flash)
    prompt_rate = dec.stats.prompt_tokens / s
    tokens, _ = prompts[0]
    s, _, dec = run_batched(
        llama, [(tokens, len(tokens) - 1)] * n_seq, grammar, n_seq, max_tokens, flash
    )
    return prompt_rate, dec.stats.completion_tokens / (s - dec.stats.prompt_tokens / prompt_rate)


def delta(after: DecodeStats, before: DecodeStats) -> DecodeStats:
    return DecodeStats(
        **{
            f.name: getattr(after, f.name) - getattr(before, f.name)
            for f in dataclasses.fields(DecodeStats)
        }
    )


def main_pipeline(args: argparse.Namespace) -> None:
    """``profile_items`` end to end, chunks overlapped or one at a time (see the docstring)."""
    data = find_data_dir("ml-100k")
    items = (load_ml100k_items(data) if data else load_sample_catalogue()).select(
        "item_id", "title", "genres"
    )
    chat = ChatEmbedded()
    decoder = chat.decoder()
    llama = chat.llama()
    prompt, schema = PromptTemplate.for_items(), ItemProfile
    work = items.head(args.pipeline)
    tmp = Path(tempfile.mkdtemp(prefix="enrich-pipeline-"))

    def profile(frame: object, overlap: bool, name: str) -> dict[str, object]:
        before = dataclasses.replace(decoder.stats)
        settings = enrich.EnrichSettings(overlap_chunks=overlap, retry_failed_after_h=0)
        t0 = time.perf_counter()
        out, report = enrich.profile_items(
            frame, llm=chat, store=str(tmp / f"{name}.duckdb"), settings=settings, with_report=True
        )
        seconds = time.perf_counter() - t0
        st = delta(decoder.stats, before)
        return {
            "overlap": overlap,
            "seconds": seconds,
            "items_s": out.height / seconds,
            "stored": int(out["profile_text"].is_not_null().sum()),
            "embed_seconds": report.embed_seconds,
            "stats": dataclasses.asdict(st),
        }

    profile(items.slice(1000, 16), True, "warm-on")  # model, decoder, embedder, LangChain
    profile(items.slice(1100, 16), False, "warm-off")
    chats = [
        [{"role": ROLES[m.type], "content": m.text} for m in prompt.render(v, schema)]
        for v in work.select("title", "genres").to_dicts()
    ]
    grammar = grammar_for_schema(json.dumps(schema.model_json_schema()))
    sample = [chat_tokens(llama, c) for c in chats[:32]]
    runs: list[dict[str, object]] = []
    rates = phase_rates(llama, sample, grammar, chat.n_parallel, 200)
    for repeat in range(args.repeats):
        for overlap in (True, False) if repeat % 2 == 0 else (False, True):
            # the machine's speed drifts by minutes: each run's ceiling is the mean of those the
            # rates measured just before and just after it give (the after is the next's before)
            run = profile(work, overlap, f"run{repeat}-{overlap}")
            before, rates = rates, phase_rates(llama, sample, grammar, chat.n_parallel, 200)
            st = run["stats"]
            ceiling_s = (
                sum(
                    st["prompt_tokens"] / p + st["completion_tokens"] / g  # type: ignore[index]
                    for p, g in (before, rates)
                )
                / 2
            )
            run["prompt_tok_s"] = [before[0], rates[0]]
            run["gen_tok_s"] = [before[1], rates[1]]
            run["ceiling_items_s"] = work.height / ceiling_s
            run["fraction"] = float(run["items_s"]) / run["ceiling_items_s"]  # type: ignore[arg-type]
            runs.append(run)
            print(
                f"overlap={overlap!s:5} {run['items_s']:.3f} items/s, "
                f"{100 * run['fraction']:.0f}% of {run['ceiling_items_s']:.3f}",
                flush=True,
            )
    print(
        f"\n{work.height} MovieLens items, profile_items, chunks of 64, {os.cpu_count()} cores; "
        "phase rates before/after each run: prompts "
        + ", ".join("/".join(f"{x:.0f}" for x in r["prompt_tok_s"]) for r in runs)  # type: ignore[attr-defined]
        + " tok/s; generation "
        + ", ".join("/".join(f"{x:.0f}" for x in r["gen_tok_s"]) for r in runs)  # type: ignore[attr-defined]
        + " tok/s"
    )
    print(f"{'chunks':12} {'items/s':>8} {'ceiling':>8} {'reached':>8}  runs")
    for overlap in (True, False):
        mine = [r for r in runs if r["overlap"] is overlap]
        rate = sum(float(r["items_s"]) for r in mine) / len(mine)  # type: ignore[arg-type]
        frac = sum(float(r["fraction"]) for r in mine) / len(mine)  # type: ignore[arg-type]
        ceil = sum(float(r["ceiling_items_s"]) for r in mine) / len(mine)  # type: ignore[arg-type]
        each = ", ".join(f"{float(r['items_s']):.3f}" for r in mine)  # type: ignore[arg-type]
        name = "overlapped" if overlap else "one by one"
        print(f"{name:12} {rate:8.3f} {ceil:8.3f} {100 * frac:7.0f}%  {each}")
    print("\none batched step, mean over the overlapped runs:")
    mine = [r["stats"] for r in runs if r["overlap"]]
    steps = sum(m["steps"] for m in mine)  # type: ignore[index]
    parts = {
        "model (llama_decode)": sum(m["decode_seconds"] for m in mine),  # type: ignore[index]
        "sampling + grammar": sum(m["sample_seconds"] for m in mine),  # type: ignore[index]
        "python around them": sum(
            m["step_seconds"] - m["decode_seconds"] - m["sample_seconds"]  # type: ignore[index]
            for m in mine
        ),
    }
    for name, seconds in parts.items():
        print(f"  {name:22} {1000 * seconds / steps:6.1f} ms")
    occupancy = sum(m["sequence_steps"] for m in mine) / steps  # type: ignore[index]
    fallbacks = sum(m["grammar_fallbacks"] for m in mine)  # type: ignore[index]
    wide = sum(m["grammar_wide_scans"] for m in mine)  # type: ignore[index]
    scans = sum(m["grammar_full_scans"] for m in mine)  # type: ignore[index]
    tokens = sum(m["completion_tokens"] for m in mine)  # type: ignore[index]
    print(
        f"  {steps / len(mine):.0f} steps a run, {occupancy:.1f} sequences a step on average; "
        f"greedy token refused by the grammar {100 * fallbacks / tokens:.1f}% of tokens, "
        f"the 2,048 best checked {100 * wide / tokens:.2f}%, "
        f"whole-vocabulary scans {100 * scans / tokens:.2f}%"
    )
    shutil.rmtree(tmp)
    out = Path(__file__).with_name("results") / "embedded_pipeline.json"
    out.write_text(
        json.dumps(
            {
                "items": work.height,
                "runs": runs,
                "step_ms": {k: 1000 * v / steps for k, v in parts.items()},
                "occupancy": occupancy,
            },
            indent=2,
        )
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=64)
    parser.add_argument(
        "--pipeline", type=int, default=0, help="profile_items on this many items instead"
    )
    parser.add_argument("--sizes", type=int, nargs="+", default=[1, 4, 8, 16])
    parser.add_argument("--repeats", type=int, default=3, help="sweeps, alternating direction")
    parser.add_argument("--no-baseline", action="store_true", help="skip the one-at-a-time run")
    parser.add_argument("--flash", action="store_true", help="flash attention (N > 1 only)")
    args = parser.parse_args()
    if args.pipeline:
        main_pipeline(args)
        return

    data = find_data_dir("ml-100k")
    items = (load_ml100k_items(data) if data else load_sample_catalogue()).head(args.items)
    prompt, schema = PromptTemplate.for_items(), ItemProfile
    chats = [
        [{"role": ROLES[m.type], "content": m.text} for m in prompt.render(v, schema)]
        for v in items.select("title", "genres").to_dicts()
    ]
    chat = ChatEmbedded()
    llama = chat.llama()
    prompts = [chat_tokens(llama, c) for c in chats]
    grammar = grammar_for_schema(json.dumps(schema.model_json_schema()))
    n = len(prompts)
    rows: list[dict[str, object]] = []

    baseline: list[str] = []
    if not args.no_baseline:

        def complete(c: list[dict[str, str]]) -> dict:
            return WORKER.submit(
                llama.create_chat_completion,
                messages=c,
                response_format={"type": "json_object", "schema": schema.model_json_schema()},
                temperature=0.0,
                max_tokens=chat.max_tokens,
                repeat_penalty=chat.repeat_penalty,
                seed=chat.seed,
            ).result()

        complete(chats[0])  # warm-up, untimed
        t0 = time.perf_counter()
        gen = 0
        for c in chats:
            out = complete(c)
            baseline.append(out["choices"][0]["message"]["content"])
            gen += out["usage"]["completion_tokens"]
        s = time.perf_counter() - t0
        rows.append(
            {
                "path": "one at a time (create_chat_completion)",
                "n_seq": 1,
                "seconds": s,
                "items_s": n / s,
                "gen_tok_s": gen / s,
                "prompt_tok_s": sum(len(t) for t, _ in prompts) / s,
                "valid": sum(map(valid, baseline)),
                "cut": None,
                "prompt_tokens": sum(len(t) for t, _ in prompts),
                "completion_tokens": gen,
                "identical": n,
            }
        )

    for n_seq in args.sizes:  # warm-up: a decoder of each size on a few prompts, untimed
        run_batched(
            llama, prompts[:n_seq], grammar, n_seq, chat.max_tokens, args.flash and n_seq > 1
        )
    runs: dict[int, list[float]] = {n_seq: [] for n_seq in args.sizes}
    for repeat in range(args.repeats):
        for n_seq in args.sizes if repeat % 2 == 0 else args.sizes[::-1]:
            flash = args.flash and n_seq > 1
            s, done, decoder = run_batched(llama, prompts, grammar, n_seq, chat.max_tokens, flash)
            runs[n_seq].append(n / s)
            print(f"repeat {repeat}, N={n_seq}: {n / s:.3f} items/s", flush=True)
            if repeat:
                continue
            rows.append(
                {
                    "path": f"batched N={n_seq}" + (" (flash attn)" if flash else ""),
                    "n_seq": n_seq,
                    "seconds": s,
                    "gen_tok_s": decoder.stats.completion_tokens / s,
                    "prompt_tok_s": decoder.stats.prompt_tokens / s,
                    "valid": sum(valid(d.text) for d in done),
                    "cut": sum(d.finish_reason == "length" for d in done),
                    "prompt_tokens": decoder.stats.prompt_tokens,
                    "completion_tokens": decoder.stats.completion_tokens,
                    "identical": sum(d.text == b for d, b in zip(done, baseline, strict=False))
                    if baseline
                    else None,
                }
            )
    for row in rows:
        if row["n_seq"] in runs and "batched" in str(row["path"]):
            rates = runs[int(row["n_seq"])]  # type: ignore[call-overload]
            row |= {"items_s": sum(rates) / len(rates), "min": min(rates), "max": max(rates)}
    ranked = sorted(args.sizes, key=lambda k: -sum(runs[k]) / len(runs[k]))
    first, second = ranked[0], ranked[1] if len(ranked) > 1 else ranked[0]
    separated = min(runs[first]) > max(runs[second])

    top = max(args.sizes)
    prompt_rate, gen_rate = phase_rates(llama, prompts, grammar, top, chat.max_tokens, args.flash)
    best = next(r for r in rows if r["n_seq"] == first and "batched" in str(r["path"]))
    per_item = (
        float(best["prompt_tokens"]) / prompt_rate + float(best["completion_tokens"]) / gen_rate  # type: ignore[arg-type]
    ) / n
    ceiling = 1 / per_item

    base = rows[0]["items_s"] if baseline else None
    print(
        f"\n{n} MovieLens items, {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cores; prompt {sum(len(t) for t, _ in prompts) / n:.0f} tokens "
        f"({sum(k for _, k in prompts) / n:.0f} shared), answer "
        f"{float(best['completion_tokens']) / n:.0f} tokens on average\n"
    )
    print(
        f"{'path':42} {'items/s':>8} {'x base':>7} {'gen t/s':>8} {'prompt t/s':>10} "
        f"{'valid':>8} {'same':>5}"
    )
    for r in rows:
        ratio = f"{float(r['items_s']) / float(base):7.2f}" if base else f"{'-':>7}"  # type: ignore[arg-type]
        same = "-" if r["identical"] is None else str(r["identical"])
        print(
            f"{r['path']:42} {float(r['items_s']):8.3f} {ratio} "  # type: ignore[arg-type]
            f"{float(r['gen_tok_s']):8.1f} {float(r['prompt_tok_s']):10.1f} "  # type: ignore[arg-type]
            f"{r['valid']:>4}/{n:<3} {same:>5}"
        )
    for k in ranked:
        rates = runs[k]
        print(
            f"N={k:<3} mean {sum(rates) / len(rates):.3f} items/s over {len(rates)} runs "
            f"(min {min(rates):.3f}, max {max(rates):.3f})"
        )
    print(
        f"best N={first}: "
        + (
            f"ahead of N={second} in every run (its slowest run beats N={second}'s fastest)"
            if separated
            else f"not separable from N={second} (their runs overlap): either is a fair default"
        )
    )
    print(
        f"\nprompt processing {prompt_rate:.0f} tok/s ({top} prompts at once, shared prefix once); "
        f"generation {gen_rate:.0f} tok/s ({top} sequences)"
    )
    print(
        f"estimated ceiling for these prompts: {ceiling:.2f} items/s "
        f"(best measured {float(best['items_s']):.2f} = "  # type: ignore[arg-type]
        f"{100 * float(best['items_s']) / ceiling:.0f}%)"
    )
    out = Path(__file__).with_name("results") / "embedded_throughput.json"
    out.parent.mkdir(exist_ok=True)
    out.write_text(
        json.dumps(
            {
                "items": n,
                "rows": rows,
                "prompt_tok_s": prompt_rate,
                "gen_tok_s": gen_rate,
                "ceiling_items_s": ceiling,
                "runs_items_s": {str(k): v for k, v in runs.items()},
                "best_n": first,
                "best_separated_from_next": separated,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
