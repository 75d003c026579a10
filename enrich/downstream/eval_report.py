"""The evaluation report: a Markdown table per metric (rung x segment, with the paired
difference to rung 2 and its user-level 95% interval), each rung against rung 0, the power per
segment (distinct users, minimum detectable effect), the cold-item and new-user tables, costs,
the LLM plan, what was done to the data, and a PNG chart.

Example:
    >>> md, png = write_report(result, config, Path("eval-report"))    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from enrich.downstream.ladder import RUNG_NAMES, SEGMENTS
from enrich.plan import plan_table

SHOWN = ("ndcg@10", "recall@20")


def _cell(row: dict[str, Any]) -> str:
    text = f"{row['value']:.4f}"
    if row["rung"] != "2" and row["delta_vs_2"] == row["delta_vs_2"]:  # not NaN
        text += f" ({row['delta_vs_2']:+.4f} [{row['delta_low']:+.4f}, {row['delta_high']:+.4f}])"
    return text


def markdown(result: Any, config: Any) -> str:
    """The report's text."""
    s = result.summary
    protocol = {
        "global": f"global: one cut-off; the last {config.window:.0%} of interactions evaluated, "
        f"the ranker trained on the {config.train_windows} windows of the same size before it",
        "rolling": f"rolling: {config.cuts} consecutive cut-offs, each evaluating the next "
        f"{config.window:.0%} of interactions with a ranker trained on the "
        f"{config.train_windows} windows before it; users pooled across cut-offs",
        "leave-last": f"leave-last: each user's last {config.last_n} interaction(s) evaluated, "
        f"the ranker trained on the {config.train_windows} sets of {config.last_n} before them",
    }[config.protocol]
    lines = [
        f"# enrich evaluate — {config.dataset}, {config.protocol}, seeds {list(config.seeds)}",
        "",
        f"eval_id `{result.eval_id}`. Protocol {protocol}. Candidates: ALS top-"
        f"{config.candidates}; {config.cold_items:.0%} of items held out of every history "
        "(cold). Cells: mean over (seed, window, user) rows; in brackets the paired difference "
        "to rung 2 (raw text, no LLM) with its 95% interval from resampling *users* (all of a "
        "user's seeds and windows move together).",
    ]
    if result.leaks_global_time:
        lines += [
            "",
            "**Leave-last leaks global time:** a user's history may hold interactions made after "
            "another user's test interaction (item popularity and ALS see them). Its numbers "
            "compare with papers that use it, not with what a nightly job would see.",
        ]
    for metric in SHOWN:
        lines += ["", f"## {metric}", "", "| rung | " + " | ".join(SEGMENTS) + " |"]
        lines.append("|---" * (len(SEGMENTS) + 1) + "|")
        for rung in dict.fromkeys(s["rung"].to_list()):
            cells = []
            for segment in SEGMENTS:
                row = s.filter(
                    (pl.col("rung") == rung)
                    & (pl.col("segment") == segment)
                    & (pl.col("metric") == metric)
                )
                cells.append(_cell(row.row(0, named=True)) if row.height else "-")
            lines.append(f"| {rung} {RUNG_NAMES.get(rung, '')} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "## Does the re-ranker beat its own candidates?",
        "",
        "Each rung against rung 0 (ALS alone, whose top-K every rung re-ranks), all users: "
        "the difference and its 95% interval (users resampled).",
        "",
        "| rung | NDCG@10 vs rung 0 | Recall@20 vs rung 0 |",
        "|---|---|---|",
    ]
    for rung in dict.fromkeys(s["rung"].to_list()):
        if rung == "0":
            continue
        cells = []
        for metric in SHOWN:
            row = s.filter(
                (pl.col("rung") == rung)
                & (pl.col("segment") == "all")
                & (pl.col("metric") == metric)
            )
            r = row.row(0, named=True) if row.height else None
            cells.append(
                f"{r['delta_vs_0']:+.4f} [{r['delta_vs_0_low']:+.4f}, {r['delta_vs_0_high']:+.4f}]"
                if r and r["delta_vs_0"] == r["delta_vs_0"]
                else "-"
            )
        lines.append(f"| {rung} {RUNG_NAMES.get(rung, '')} | " + " | ".join(cells) + " |")
    lines += ["", _verdict(s)]
    lines += ["", "## Power: how large a difference this data can see", ""]
    lines += [
        "Minimum detectable effect (MDE) of an NDCG@10 difference against rung 2 at 80% power "
        "(two-sided 5% test): 2.80 x the difference's standard error with users as clusters. "
        "A difference smaller than the MDE may well be real and still show up as 'no "
        "difference'.",
        "",
        "| segment | distinct users | rows | rung 2 NDCG@10 | MDE (range over rungs) "
        "| MDE / rung 2 |",
        "|---|---|---|---|---|---|",
    ]
    ndcg = s.filter(pl.col("metric") == "ndcg@10")
    for segment in SEGMENTS:
        rows = ndcg.filter((pl.col("segment") == segment) & (pl.col("rung") != "2"))
        base = ndcg.filter((pl.col("segment") == segment) & (pl.col("rung") == "2"))
        if not base.height:
            continue
        b = base.row(0, named=True)
        mdes = rows["mde"].drop_nans().drop_nulls()
        span = f"{mdes.min():.4f}–{mdes.max():.4f}" if mdes.len() else "-"
        rel = f"{mdes.median() / b['value']:.0%}" if mdes.len() and b["value"] else "-"
        lines.append(
            f"| {segment} | {b['n_users']} | {b['n_rows']} | {b['value']:.4f} | {span} | {rel} |"
        )
    lines += ["", "## Cold items: how they are placed", ""]
    lines += ["| system | recall@20 | ndcg@10 | users |", "|---|---|---|---|"]
    lines += _systems_table(result.cold)
    lines += ["", "## New users (no interaction before their cut-off)", ""]
    if result.new_users is None:
        lines.append("Not evaluated: no user attributes to start from.")
    else:
        n = int(result.new_users["n_users"].max())
        lines += [
            f"{n} evaluated users have no history: ALS and the ladder cannot rank for them "
            "(the tables above leave them out). Who serves them best:",
            "",
            "| system | recall@20 | ndcg@10 | users |",
            "|---|---|---|---|",
        ]
        lines += _systems_table(result.new_users)
    lines += [
        "",
        "## Cost per 1,000 entities",
        "",
        "| rung | LLM calls | tokens | LLM seconds |",
        "|---|---|---|---|",
    ]
    for r in result.costs.to_dicts():
        lines.append(
            f"| {r['rung']} | {r['llm_calls_per_1k']:.0f} | {r['tokens_per_1k']:.0f} | "
            f"{r['llm_seconds_per_1k']:.0f} |"
        )
    if result.plan:
        lines += ["", "## LLM plan of this run (before any call)", "", "```"]
        lines += [*plan_table(result.plan, "").splitlines()[1:], "```"]
    if result.coverage:
        lines += [
            "",
            "## LLM profiles: what each job returned",
            "",
            "| job | rows | profiled | of them this run | failed |",
            "|---|---|---|---|---|",
        ]
        for c in result.coverage:
            share = f" ({c['failed'] / c['rows']:.1%})" if c["rows"] else ""
            lines.append(
                f"| {c['job']} | {c['rows']:,} | {c['profiled']:,} | {c['this_run']:,} | "
                f"{c['failed']:,}{share} |"
            )
        lines += [
            "",
            "A failed row has no LLM feature: the re-ranker reads its LLM columns as missing and "
            "the LLM-profile map cannot place it. Why each failed: `enrich errors` on the "
            "evaluation's store (rows that failed validation are asked again after a backoff).",
        ]
    if result.counts:
        lines += ["", "## Data: what was read and what was done to it", ""]
        lines += [f"- {k.replace('_', ' ')}: {v:,}" for k, v in result.counts.items()]
    return "\n".join(lines) + "\n"


def _verdict(s: pl.DataFrame) -> str:
    """One sentence on rung 1 vs rung 0 (NDCG@10, all users): keep the re-ranker or not."""
    row = s.filter(
        (pl.col("rung") == "1") & (pl.col("segment") == "all") & (pl.col("metric") == "ndcg@10")
    )
    if not row.height or "0" not in set(s["rung"]):
        return "(Rungs 0 and 1 were not both run: no verdict on the re-ranker.)"
    r = row.row(0, named=True)
    if r["delta_vs_0_low"] > 0:
        return (
            "**Verdict:** the re-ranker (rung 1) beats ALS alone on this data: its interval "
            "lies above zero. Keep it, and judge the enriched rungs against rung 2."
        )
    if r["delta_vs_0_high"] < 0:
        return (
            "**Verdict:** on this data the re-ranker (rung 1) *loses* to ALS alone (its interval "
            "lies below zero). Serve ALS's order (rung 0); use enriched features through ALS "
            "(the cold-item map) or a blend of ALS's score with them, not through this ranker."
        )
    return (
        "**Verdict:** the re-ranker (rung 1) is level with ALS alone (the interval contains "
        "zero): it does not hurt, and it did not earn its place either."
    )


def _systems_table(frame: pl.DataFrame) -> list[str]:
    lines = []
    for system in dict.fromkeys(frame["system"].to_list()):
        rows = {r["metric"]: r for r in frame.filter(pl.col("system") == system).to_dicts()}
        lines.append(
            f"| {system} | "
            + " | ".join(
                f"{rows[m]['value']:.4f} [{rows[m]['ci_low']:.4f}, {rows[m]['ci_high']:.4f}]"
                for m in ("recall@20", "ndcg@10")
            )
            + f" | {rows['ndcg@10']['n_users']} |"
        )
    return lines


def chart(result: Any, path: Path) -> None:
    """NDCG@10 by rung for each segment, with 95% intervals."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    s = result.summary.filter(pl.col("metric") == "ndcg@10")
    rungs = list(dict.fromkeys(s["rung"].to_list()))
    fig, ax = plt.subplots(figsize=(10, 4.5))
    width = 0.8 / len(rungs)
    for j, rung in enumerate(rungs):
        rows = [s.filter((pl.col("rung") == rung) & (pl.col("segment") == g)) for g in SEGMENTS]
        values = [r["value"][0] if r.height else 0.0 for r in rows]
        low = [v - r["ci_low"][0] if r.height else 0.0 for v, r in zip(values, rows, strict=True)]
        high = [r["ci_high"][0] - v if r.height else 0.0 for v, r in zip(values, rows, strict=True)]
        x = [i + j * width for i in range(len(SEGMENTS))]
        ax.bar(
            x,
            values,
            width,
            yerr=[low, high],
            capsize=2,
            label=f"{rung} {RUNG_NAMES.get(rung, '')}",
        )
    users = dict(s.group_by("segment").agg(pl.col("n_users").max()).iter_rows())
    ax.set_xticks(  # the users behind each group: a tiny segment's bars mean little
        [i + 0.4 - width / 2 for i in range(len(SEGMENTS))],
        [f"{g}\n({users.get(g, 0)} users)" for g in SEGMENTS],
    )
    ax.set_ylabel("NDCG@10 (95% interval, users resampled)")
    ax.legend(fontsize=7, ncols=2)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def write_report(result: Any, config: Any, out_dir: Path) -> tuple[Path, Path]:
    """``report.md`` and ``ndcg.png`` in ``out_dir``."""
    out_dir.mkdir(parents=True, exist_ok=True)
    png = out_dir / "ndcg.png"
    chart(result, png)
    md = out_dir / "report.md"
    md.write_text(markdown(result, config) + f"\n![NDCG@10 by rung and segment]({png.name})\n")
    return md, png
