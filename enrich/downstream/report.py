"""The evaluation report: a Markdown table per metric (rung x segment, with the paired
difference to rung 2 and its 95% interval), the cold-item table, the cost line, and a PNG chart.

Example:
    >>> md, png = write_report(result, config, Path("eval-report"))    # doctest: +SKIP
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import polars as pl

from enrich.downstream.ladder import RUNG_NAMES, SEGMENTS

SHOWN = ("ndcg@10", "recall@20")


def _cell(row: dict[str, Any]) -> str:
    text = f"{row['value']:.4f}"
    if row["rung"] != "2" and row["delta_vs_2"] == row["delta_vs_2"]:  # not NaN
        text += f" ({row['delta_vs_2']:+.4f} [{row['delta_low']:+.4f}, {row['delta_high']:+.4f}])"
    return text


def markdown(result: Any, config: Any) -> str:
    """The report's text."""
    s = result.summary
    lines = [
        f"# enrich evaluate — {config.dataset}, seeds {list(config.seeds)}",
        "",
        f"eval_id `{result.eval_id}`; candidates: ALS top-{config.candidates}; cells: mean over "
        "(seed, user) and, in brackets, the paired difference to rung 2 (raw text, no LLM) "
        "with its 95% bootstrap interval.",
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
            lines.append(f"| {rung} {RUNG_NAMES[rung]} | " + " | ".join(cells) + " |")
    users = s.filter(pl.col("metric") == SHOWN[0]).group_by("segment").agg(pl.col("n_users").max())
    lines += [
        "",
        "Users per segment (seed x user pairs): "
        + ", ".join(f"{r['segment']} {r['n_users']}" for r in users.sort("segment").to_dicts()),
    ]
    lines += [
        "",
        "## Cold items: how they are placed",
        "",
        "| system | recall@20 | ndcg@10 |",
        "|---|---|---|",
    ]
    lines += _systems_table(result.cold)
    lines += ["", "## New users (no interaction before the test period)", ""]
    if result.new_users is None:
        lines.append("Not evaluated: the dataset has no user attributes to start from.")
    else:
        n = int(result.new_users["n_users"].max())
        lines += [
            f"{n} test-period users have no history: ALS and the ladder cannot rank for them "
            "(the tables above leave them out). Who serves them best:",
            "",
            "| system | recall@20 | ndcg@10 |",
            "|---|---|---|",
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
    return "\n".join(lines) + "\n"


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
            + " |"
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
        ax.bar(x, values, width, yerr=[low, high], capsize=2, label=f"{rung} {RUNG_NAMES[rung]}")
    pairs = dict(s.group_by("segment").agg(pl.col("n_users").max()).iter_rows())
    ax.set_xticks(  # the (seed, user) pairs behind each group: a tiny segment's bars mean little
        [i + 0.4 - width / 2 for i in range(len(SEGMENTS))],
        [f"{g}\n({pairs.get(g, 0)} seed-user pairs)" for g in SEGMENTS],
    )
    ax.set_ylabel("NDCG@10 (95% interval)")
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
