"""The ``enrich`` command line: ``demo``, ``items``, ``users``, ``plan``, ``vocab``,
``evaluate``, ``runs``, ``errors``, ``batch``, ``reembed``, ``neighbours``, ``snapshot``,
``audit``, ``export``.

Example:
    $ enrich demo --limit 20
    $ enrich plan catalogue.parquet --store features.duckdb --llm openai:gpt-4o-mini
    $ enrich vocab catalogue.parquet --name themes --k 30 --store features.duckdb
    $ enrich items catalogue.parquet --id-col item_id --vocab themes --store features.duckdb
    $ enrich items catalogue.parquet --store features.duckdb --llm openai:gpt-4o-mini --batch
    $ enrich users ratings.parquet --items duckdb:shop.duckdb#items --store features.duckdb
    $ enrich neighbours --store features.duckdb --item 1 50 --user 7 --k 20
    $ enrich export --store features.duckdb --feast feature_repo
    $ enrich batch run requests.jsonl --output answers.jsonl
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

import polars as pl

from enrich.errors import EnrichError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="enrich", description="LLM-written item and user profiles as recommender features."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    demo = sub.add_parser("demo", help="profile a MovieLens 100K sample and query the result")
    demo.add_argument("--data", type=Path, help="ml-100k folder (default: ../shared/data/ml-100k)")
    demo.add_argument("--store", type=Path, default=Path("demo.duckdb"), help="DuckDB file")
    size = demo.add_mutually_exclusive_group()
    size.add_argument("--limit", type=int, default=40, help="items to profile (default 40)")
    size.add_argument("--all", action="store_true", help="profile every item")
    demo.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")

    items = sub.add_parser("items", help="profile the items of a file, DuckDB or PostgreSQL table")
    items.add_argument("source", help=SOURCE_HELP)
    items.add_argument("--id-col", default="item_id")
    items.add_argument("--text-cols", nargs="+", help="columns to describe (default: all text)")
    items.add_argument("--store", type=Path, required=True, help="DuckDB file to upsert into")
    items.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")
    items.add_argument(
        "--vocab",
        nargs="+",
        default=[],
        metavar="FIELD[=NAME]",
        help="choose FIELD from the vocabulary NAME stored by `enrich vocab` (default NAME: FIELD)",
    )
    _batch_options(items)

    users = sub.add_parser(
        "users",
        help="profile the users of an interaction log (file, DuckDB or PostgreSQL table)",
    )
    users.add_argument("interactions", help=SOURCE_HELP)
    users.add_argument("--items", required=True, help="the item catalogue: " + SOURCE_HELP)
    users.add_argument("--store", type=Path, required=True, help="DuckDB file to upsert into")
    users.add_argument("--user-col", default="user_id")
    users.add_argument("--item-col", default="item_id")
    users.add_argument("--time-col", default="timestamp")
    users.add_argument("--rating-col", default="rating", help="'' for implicit feedback")
    users.add_argument("--as-of", help="profile from interactions before this (ISO time)")
    users.add_argument("--item-text-cols", nargs="+", default=["title"])
    users.add_argument(
        "--use-item-profiles", action="store_true", help="show the items' stored profiles too"
    )
    users.add_argument("--users", dest="people", help="user attributes: " + SOURCE_HELP)
    users.add_argument("--user-attr-cols", nargs="*", default=[])
    users.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")
    _batch_options(users)

    batch = sub.add_parser("batch", help="OpenAI batch files: run one here, or list a store's")
    batch_sub = batch.add_subparsers(dest="batch_command", required=True)
    brun = batch_sub.add_parser(
        "run",
        help="execute an OpenAI batch JSONL file with a model here (as `vllm run-batch` does)",
    )
    brun.add_argument("file", type=Path, help="the batch input file (.jsonl)")
    brun.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")
    brun.add_argument("--output", type=Path, required=True, help="output file (.jsonl)")
    brun.add_argument("--errors", type=Path, help="error file (default: OUTPUT.errors.jsonl)")
    serve = batch_sub.add_parser(
        "serve",
        help="serve OpenAI's Files and Batches API here, running batches with --llm",
        description="A Batches API for a model that has none (the embedded model, vLLM, "
        "llama.cpp, Ollama): point batch mode at http://HOST:PORT/v1#MODEL.",
    )
    serve.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8090)
    serve.add_argument(
        "--state", type=Path, help="folder keeping files and batches across restarts"
    )
    reembed = sub.add_parser(
        "reembed",
        help="vectors of the stored profile texts under another embedder (no LLM call)",
    )
    reembed.add_argument("--store", type=Path, required=True)
    reembed.add_argument(
        "--embedder", required=True, help="a sentence-transformers model path or shipped name"
    )
    blist = batch_sub.add_parser("list", help="the batches a store submitted, newest first")
    blist.add_argument("--store", type=Path, required=True)
    blist.add_argument("--last", type=int, default=20)

    vocab = sub.add_parser(
        "vocab",
        help="induce a controlled vocabulary from a catalogue sample and store it",
        description="A first LLM pass writes free keywords for a seeded sample; near-duplicates "
        "are merged (embeddings) and the k commonest kept. `enrich items --vocab NAME` then "
        "profiles the catalogue choosing from them.",
    )
    vocab.add_argument("source", type=Path, help="a .csv or .parquet file")
    vocab.add_argument("--name", default="themes", help="vocabulary (and field) name")
    vocab.add_argument("--k", type=int, default=30, help="labels to keep (default 30)")
    vocab.add_argument("--sample", type=int, default=300, help="items to read (default 300)")
    vocab.add_argument("--seed", type=int, default=0)
    vocab.add_argument("--id-col", default="item_id")
    vocab.add_argument("--text-cols", nargs="+", help="columns to describe (default: all text)")
    vocab.add_argument("--store", type=Path, required=True, help="DuckDB file to store it in")
    vocab.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")

    audit = sub.add_parser("audit", help="run the store's audits; exit 1 if any finds bad rows")
    audit.add_argument("--store", type=Path, required=True)

    near = sub.add_parser(
        "neighbours",
        help="items most like an item, or nearest a user's profile (the index beside the store, "
        "brought up to date first)",
    )
    near.add_argument("--store", type=Path, required=True)
    near.add_argument("--item", nargs="*", default=[], help="item ids: their similar items")
    near.add_argument("--user", nargs="*", default=[], help="user ids: items for their profile")
    near.add_argument("--k", type=int, default=10)

    snap = sub.add_parser(
        "snapshot",
        help="publish a read snapshot of a store; from then on every write publishes one, and "
        "readers (enrich runs/errors/export/neighbours, Store.open_reader) use the newest",
    )
    snap.add_argument("--store", type=Path, required=True)

    export = sub.add_parser("export", help="write the feature tables as Parquet")
    export.add_argument("--store", type=Path, required=True)
    export.add_argument("--to", type=Path, help="output folder for the Parquet tables")
    export.add_argument(
        "--feast", type=Path, help="write a Feast feature repository (Parquet + definitions) here"
    )
    export.add_argument("--partition-by", nargs="*", default=[], help="e.g. model prompt_version")

    ev = sub.add_parser(
        "evaluate",
        help="the ablation ladder: does enrichment lift the ranking (your data or a preset)?",
        description="Sources are a file path or glob (.parquet/.csv), duckdb:FILE#table or "
        "postgresql://...#table. Without --interactions, --dataset names a MovieLens preset.",
    )
    ev.add_argument("--store", type=Path, default=Path("eval.duckdb"), help="caches enrichment")
    ev.add_argument("--out", type=Path, default=Path("eval-report"), help="report folder")
    ev.add_argument("--dataset", default="ml-100k", help="preset: ml-100k or ml-latest-small")
    ev.add_argument("--interactions", help="your interaction log (source)")
    ev.add_argument("--items", help="your catalogue (source)")
    ev.add_argument("--item-text-cols", nargs="+", help="catalogue columns to describe")
    ev.add_argument("--user-col", default="user_id")
    ev.add_argument("--item-col", default="item_id")
    ev.add_argument("--item-id-col", help="the catalogue's id column (default: --item-col)")
    ev.add_argument("--time-col", default="timestamp", help="datetimes, ISO strings or unix s")
    ev.add_argument("--rating-col", help="explicit ratings; leave out for implicit feedback")
    ev.add_argument("--users", help="user attributes (source), for users with no history")
    ev.add_argument("--user-attr-cols", nargs="+", default=[], help="e.g. age country")
    ev.add_argument("--name", help="a name for your data in the report and eval_runs")
    ev.add_argument("--protocol", default="global", choices=["global", "rolling", "leave-last"])
    ev.add_argument("--window", type=float, default=0.1, help="share of interactions per window")
    ev.add_argument("--train-windows", type=int, default=3)
    ev.add_argument("--cuts", type=int, default=3, help="rolling: evaluated windows")
    ev.add_argument("--last-n", type=int, default=1, help="leave-last: interactions per user")
    ev.add_argument(
        "--simulate-cold",
        type=float,
        default=0.1,
        help="share of chosen items hidden in the ranker's training windows (0: none)",
    )
    ev.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ev.add_argument("--rungs", nargs="+", help="subset of 0 1 2 3 3b 4 4c 5 (default: all)")
    ev.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")
    ev.add_argument("--dry-run", action="store_true", help="print the LLM plan and stop")

    plan = sub.add_parser(
        "plan",
        help="the bill before the run: rows stored, held, cached and to generate; tokens, "
        "time and cost (no LLM call)",
    )
    plan.add_argument("source", type=Path, help="the item catalogue (.csv or .parquet)")
    plan.add_argument("--store", type=Path, help="DuckDB file the run would use (default: none)")
    plan.add_argument("--id-col", default="item_id")
    plan.add_argument("--text-cols", nargs="+", help="columns to describe (default: all text)")
    plan.add_argument("--llm", help="model spec or base URL (default: embedded SmolLM2)")
    plan.add_argument("--interactions", type=Path, help="also plan the users of this log")
    plan.add_argument("--user-col", default="user_id")
    plan.add_argument("--time-col", default="timestamp")
    plan.add_argument("--rating-col", default="rating")
    plan.add_argument("--item-text-cols", nargs="+", default=["title"])
    plan.add_argument("--price-in", type=float, help="$ per 1M prompt tokens (overrides table)")
    plan.add_argument("--price-out", type=float, help="$ per 1M completion tokens")
    plan.add_argument("--batch", action="store_true", help="at the provider's batch price")

    errors = sub.add_parser(
        "errors",
        help="what keeps failing: each entity still without a profile, why, attempts, next try",
    )
    errors.add_argument("--store", type=Path, required=True)
    errors.add_argument("--kind", choices=["items", "users"], help="only items or only users")
    errors.add_argument("--last", type=int, default=50, help="rows to show (default 50)")

    runs = sub.add_parser("runs", help="show the run ledger of a store")
    runs.add_argument("--store", type=Path, required=True)
    runs.add_argument("--last", type=int, default=10)
    return parser


SOURCE_HELP = "a .csv/.parquet path or glob, duckdb:FILE#table or postgresql://...#table"


def _batch_options(parser: argparse.ArgumentParser) -> None:
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--batch",
        action="store_true",
        help="send the requests through the provider's Batches API (half price) and wait",
    )
    mode.add_argument(
        "--batch-submit-only",
        action="store_true",
        help="batch mode, but submit and return: the next run collects (rows recorded pending)",
    )


def _batch_settings(args: argparse.Namespace) -> Any:
    from enrich.config import EnrichSettings

    batched = args.batch or args.batch_submit_only
    return EnrichSettings(
        **({"batch": True, "batch_wait": not args.batch_submit_only} if batched else {})
    )


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            from enrich.demo import run_demo

            run_demo(args.data, args.store, None if args.all else args.limit, args.llm)
        elif args.command == "items":
            _items(args)
        elif args.command == "users":
            _users(args)
        elif args.command == "vocab":
            _vocab(args)
        elif args.command == "batch":
            _batch(args)
        elif args.command == "reembed":
            from enrich.reembed import reembed

            done = reembed(str(args.store), args.embedder)
            print(
                f"{done.embedder}: {done.embedded} of {done.texts} missing profile texts embedded "
                f"in {done.seconds:.1f}s; query it with item_features_with(embedder := "
                f"'{done.embedder}')"
            )
        elif args.command == "runs":
            _runs(args)
        elif args.command == "errors":
            _errors(args)
        elif args.command == "plan":
            _plan(args)
        elif args.command == "evaluate":
            _evaluate(args)
        elif args.command == "audit":
            return _audit(args)
        elif args.command == "neighbours":
            _neighbours(args)
        elif args.command == "snapshot":
            from enrich import snapshots
            from enrich.store import Store

            with Store.borrow(_existing(args.store)) as store:
                print(f"published {snapshots.publish(store)}")
        elif args.command == "export":
            from enrich.store import Store, export_parquet

            if args.to is None and args.feast is None:
                raise EnrichError("say where: --to FOLDER (Parquet) and/or --feast FOLDER")
            store = Store.open_reader(_existing(args.store))
            try:
                if args.to is not None:
                    counts = export_parquet(store, args.to, partition_by=tuple(args.partition_by))
                    print("\n".join(f"{t}: {n} rows -> {args.to / t}" for t, n in counts.items()))
                if args.feast is not None:
                    from enrich.feast_repo import write_feast_repo

                    counts = write_feast_repo(store, args.feast)
                    print(
                        f"Feast repository in {args.feast}: "
                        + ", ".join(f"{t} {n} rows" for t, n in counts.items())
                        + f"; next: cd {args.feast} && feast apply && feast materialize ..."
                    )
            finally:
                store.close()
    except EnrichError as exc:
        print(f"enrich: error: {exc}", file=sys.stderr)
        return 2
    return 0


def _items(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from enrich.profiles import profile_items
    from enrich.schemas import ItemProfile
    from enrich.store import Store
    from enrich.vocab import Vocabulary, controlled

    frame = _read(args.source)
    settings = _batch_settings(args)
    with Store.borrow(str(args.store)) as store:
        chosen = dict(v.partition("=")[::2] for v in args.vocab)
        vocabularies = {f: Vocabulary.load(store, name or f) for f, name in chosen.items()}
        for field, vocab in vocabularies.items():
            print(f"{field}: {len(vocab.labels)} labels of vocabulary {vocab.name}@{vocab.version}")
        schema = controlled(ItemProfile, **vocabularies) if vocabularies else ItemProfile
        with tqdm(total=frame.height, unit="item") as bar:
            _, report = profile_items(
                frame,
                id_col=args.id_col,
                text_cols=args.text_cols,
                schema=schema,
                store=store,
                llm=args.llm,
                settings=settings,
                progress=bar.update,
                with_report=True,
            )
    print(report.summary())


def _users(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from enrich.user_profiles import profile_users

    log = _read(args.interactions)
    with tqdm(unit="user") as bar:
        _, report = profile_users(
            log,
            _read(args.items),
            user_col=args.user_col,
            item_col=args.item_col,
            time_col=args.time_col,
            rating_col=args.rating_col or None,
            as_of=args.as_of,
            item_text_cols=tuple(args.item_text_cols),
            use_item_profiles=args.use_item_profiles,
            users=_read(args.people) if args.people else None,
            user_attr_cols=tuple(args.user_attr_cols),
            llm=args.llm,
            store=str(args.store),
            settings=_batch_settings(args),
            progress=bar.update,
            with_report=True,
        )
    print(report.summary())


def _batch(args: argparse.Namespace) -> None:
    if args.batch_command == "run":
        from enrich.batch_run import run_file
        from enrich.llm import resolve_llm

        answered, failed = run_file(args.file, resolve_llm(args.llm), args.output, args.errors)
        print(f"{answered} answered -> {args.output}; {failed} failed")
        return
    if args.batch_command == "serve":
        import contextlib
        import signal
        import threading

        from enrich.batch_server import BatchServer
        from enrich.llm import resolve_llm

        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with BatchServer(resolve_llm(args.llm), args.host, args.port, args.state) as server:
            print(f"serving the Files and Batches API at {server.url}", flush=True)
            with contextlib.suppress(KeyboardInterrupt):
                stop.wait()
        return
    store = _reader(args.store)
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=40):
        print(
            store.con.sql(
                "SELECT batch_id, status, n_requests, n_answered, n_failed, model, created_at, "
                "collected_at, error FROM llm_batches ORDER BY created_at DESC LIMIT ?",
                params=[args.last],
            ).pl()
        )
    store.close()


def _vocab(args: argparse.Namespace) -> None:
    from enrich.vocab import induce_vocabulary

    frame = _read(args.source)
    vocab = induce_vocabulary(
        frame,
        name=args.name,
        k=args.k,
        sample=args.sample,
        seed=args.seed,
        id_col=args.id_col,
        text_cols=args.text_cols,
        llm=args.llm,
        store=str(args.store),
    )
    print(
        f"vocabulary {vocab.name}@{vocab.version}: {len(vocab.labels)} labels from "
        f"{vocab.sample_size} items ({vocab.model}, {vocab.llm_calls} LLM calls, "
        f"{vocab.tokens_in} prompt + {vocab.tokens_out} completion tokens)"
    )
    for label, count in zip(vocab.labels, vocab.counts, strict=True):
        print(f"  {label}: {count} items")


def _read(spec: str | Path) -> pl.DataFrame:
    """The frame a source spec names (a file path or glob, a DuckDB or PostgreSQL table)."""
    from connectors import source

    return source(str(spec)).read()


def _evaluate(args: argparse.Namespace) -> None:
    from tqdm import tqdm

    from enrich.downstream.evaluate import EvalConfig, evaluate

    data = _eval_data(args)
    config = EvalConfig(
        dataset=data.name if data is not None else args.dataset,
        protocol=args.protocol,
        window=args.window,
        train_windows=args.train_windows,
        cuts=args.cuts,
        last_n=args.last_n,
        simulate_cold=args.simulate_cold,
        seeds=tuple(args.seeds),
        llm=args.llm,
        **({"rungs": tuple(args.rungs)} if args.rungs else {}),
    )
    if args.dry_run:
        result = evaluate(config, args.store, data=data, dry_run=True, echo=print)
        return
    with tqdm(unit="profile", desc="enrichment (cached in the store)") as bar:
        result = evaluate(
            config,
            args.store,
            data=data,
            out_dir=args.out,
            progress=bar.update,
            echo=lambda text: tqdm.write(text),
        )
    print(result.report_path.read_text() if result.report_path else result.summary)
    print(f"report: {result.report_path}  chart: {result.chart_path}  eval_id: {result.eval_id}")


def _eval_data(args: argparse.Namespace) -> Any:
    """The user's log and catalogue from ``--interactions`` etc. (None: a preset)."""
    from connectors import source
    from enrich.downstream.data import eval_data

    if args.interactions is None:
        if args.items or args.users:
            raise EnrichError("--items and --users need --interactions (your log) too")
        return None
    interactions = source(args.interactions).read()
    items = source(args.items).read() if args.items else None
    users = source(args.users).read() if args.users else None
    return eval_data(
        interactions,
        items,
        user_col=args.user_col,
        item_col=args.item_col,
        time_col=args.time_col,
        rating_col=args.rating_col,
        item_id_col=args.item_id_col,
        text_cols=tuple(args.item_text_cols) if args.item_text_cols else None,
        users=users,
        user_attr_cols=tuple(args.user_attr_cols),
        name=args.name or Path(args.interactions).stem.split("#")[-1],
    )


def _audit(args: argparse.Namespace) -> int:
    from enrich.store import audit

    store = _reader(args.store)
    failed = 0
    for name, rows in audit(store).items():
        print(f"{'FAIL' if rows.height else 'ok  '} {name}: {rows.height} row(s)")
        if rows.height:
            failed += 1
            print(rows.head(20))
    store.close()
    return 1 if failed else 0


def _plan(args: argparse.Namespace) -> None:
    from enrich.config import EnrichSettings
    from enrich.plan import plan_items, plan_table, plan_users
    from enrich.store import Store

    settings = EnrichSettings(
        price_in_per_mtok=args.price_in, price_out_per_mtok=args.price_out, batch=args.batch
    )
    frame = _read(args.source)
    with Store.borrow(str(args.store) if args.store else None) as store:
        plans = [
            plan_items(
                frame,
                id_col=args.id_col,
                text_cols=args.text_cols,
                llm=args.llm,
                store=store,
                settings=settings,
            )
        ]
        if args.interactions is not None:
            plans.append(
                plan_users(
                    _read(args.interactions),
                    frame,
                    user_col=args.user_col,
                    item_col=args.id_col,
                    time_col=args.time_col,
                    rating_col=args.rating_col or None,
                    item_text_cols=tuple(args.item_text_cols),
                    llm=args.llm,
                    store=store,
                    settings=settings,
                )
            )
    print(plan_table(plans, f"LLM plan for {args.source} (no call made):"))


def _errors(args: argparse.Namespace) -> None:
    from enrich.config import EnrichSettings

    s = EnrichSettings()  # the backoff of the failure memory (ENRICH_RETRY_FAILED_AFTER_H, ...)
    store = _reader(args.store)
    try:
        rows = store.failing_rows(s.retry_failed_after_h * 3600, s.retry_failed_max_days * 86400)
    finally:
        store.close()
    if args.kind:
        rows = rows.filter(pl.col("kind") == args.kind)
    if rows.is_empty():
        print("nothing is failing: every entity's newest record is a profile")
        return
    print(
        f"{rows.height} entities still failing ({rows['attempts'].gt(0).sum()} failed "
        "validation; the others are retried by the next run):"
    )
    with pl.Config(tbl_cols=-1, tbl_width_chars=200, fmt_str_lengths=80, tbl_rows=args.last):
        print(
            rows.head(args.last).with_columns(
                pl.col("error").str.slice(0, 80),
                pl.col("first_failed_at", "last_failed_at", "retry_at").dt.strftime(
                    "%Y-%m-%d %H:%M"
                ),
            )
        )


def _neighbours(args: argparse.Namespace) -> None:
    from enrich.neighbours import items_for_users, similar_items, update_index

    store = _reader(args.store)
    try:
        done = update_index(store, beside=args.store)
        print(
            f"{done.size} items indexed ({done.added} added, {done.removed} removed"
            f"{', rebuilt' if done.rebuilt else ''}) in {done.seconds:.2f}s"
        )
        found = [
            similar_items(store, args.item, args.k, beside=args.store) if args.item else None,
            items_for_users(store, args.user, args.k, beside=args.store) if args.user else None,
        ]
    finally:
        store.close()
    for frame in found:
        if frame is not None:
            print("query_id item_id score")
            for query, item, score, _ in frame.iter_rows():
                print(f"{query} {item} {score:.4f}")


def _reader(path: Path) -> Any:
    """The store file at ``path`` for reading: its newest read snapshot when it publishes them
    (a running flow is never waited for), else the file itself, read-only."""
    from enrich.store import Store

    return Store.open_reader(_existing(path))


def _existing(path: Path) -> str:
    if not path.exists():
        raise EnrichError(f"store {path} does not exist; pass the --store a run wrote")
    return str(path)


def _runs(args: argparse.Namespace) -> None:
    from enrich import snapshots

    store = _reader(args.store)
    # read from the file itself, no writer can hold it meanwhile: a 'running' row was killed
    # (its counters cover its committed chunks); read from a snapshot, it may be running now
    live = snapshots.enabled(args.store)
    with pl.Config(tbl_cols=-1, tbl_width_chars=200):
        print(
            pl.from_arrow(
                store.con.execute(
                    "SELECT run_id[:8] AS run, kind, started_at, "
                    "CASE WHEN status = 'running' AND NOT ? THEN 'interrupted' ELSE status END "
                    "AS status, "
                    "rows_in, rows_skipped, "
                    "cache_hits, rows_generated, rows_failed, llm_calls, tokens_in, tokens_out, "
                    "round(cost, 4) AS cost, round(total_seconds, 1) AS seconds "
                    "FROM runs ORDER BY started_at DESC LIMIT ?",
                    [live, args.last],
                ).to_arrow_table()
            )
        )
    store.close()


if __name__ == "__main__":
    sys.exit(main())
