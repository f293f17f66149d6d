"""Quality reports: a Markdown table, a JSON file and a bar chart of nDCG@k per system and language pair."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict
from pathlib import Path

from engine.eval.evaluate import SystemReport


def markdown_table(reports: Sequence[SystemReport], k: int = 10) -> str:
    """One row per system: overall metrics, cross-lingual nDCG, bias, diversity, coverage."""
    header = (
        f"| system | nDCG@{k} | MRR@{k} | recall@{k} | MAP@{k} | P@1 | cross-lingual nDCG@{k} "
        "| same-language share | intra-list sim. | coverage |"
    )
    lines = [header, "|" + "---|" * 10]
    for r in reports:
        o = r.overall
        lines.append(
            f"| {r.system} | {o[f'ndcg@{k}']:.3f} | {o[f'mrr@{k}']:.3f} | {o[f'recall@{k}']:.3f} | "
            f"{o[f'map@{k}']:.3f} | {o['p@1']:.3f} | {r.cross_lingual[f'ndcg@{k}']:.3f} | "
            f"{r.language_bias:.3f} | {r.intra_list_similarity:.3f} | {r.coverage:.3f} |"
        )
    return "\n".join(lines)


def pair_table(reports: Sequence[SystemReport], k: int = 10) -> str:
    """nDCG@k per query language -> result language, one column per system."""
    pairs = sorted({pair for r in reports for pair in r.pairs})
    if not pairs:
        return ""
    lines = ["| query -> result | " + " | ".join(r.system for r in reports) + " |", "|" + "---|" * (len(reports) + 1)]
    for pair in pairs:
        cells = [f"{r.pairs[pair][f'ndcg@{k}']:.3f}" if pair in r.pairs else "-" for r in reports]
        lines.append(f"| {pair} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def write_report(folder: Path, title: str, reports: Sequence[SystemReport], k: int = 10) -> list[Path]:
    """Write ``report.md``, ``report.json`` and ``ndcg_by_pair.png`` into ``folder``; return their paths."""
    folder.mkdir(parents=True, exist_ok=True)
    markdown = folder / "report.md"
    markdown.write_text(
        f"# {title}\n\n{markdown_table(reports, k)}\n\n## nDCG@{k} per language pair\n\n{pair_table(reports, k)}\n",
        encoding="utf-8",
    )
    data = folder / "report.json"
    data.write_text(json.dumps({"title": title, "k": k, "systems": [asdict(r) for r in reports]}, indent=2))
    chart = folder / "ndcg_by_pair.png"
    _bar_chart(chart, title, reports, k)
    return [markdown, data, chart]


def _bar_chart(path: Path, title: str, reports: Sequence[SystemReport], k: int) -> None:
    import matplotlib

    matplotlib.use("Agg")  # no display on servers and CI
    import matplotlib.pyplot as plt
    import numpy as np

    groups = ["all", "cross-lingual", *sorted({pair for r in reports for pair in r.pairs})]
    width = 0.8 / max(1, len(reports))
    fig, ax = plt.subplots(figsize=(max(8, len(groups) * 0.9), 4.5))
    x = np.arange(len(groups))
    for i, r in enumerate(reports):
        values = [r.overall[f"ndcg@{k}"], r.cross_lingual[f"ndcg@{k}"]]
        values += [r.pairs.get(g, {}).get(f"ndcg@{k}", 0.0) for g in groups[2:]]
        ax.bar(x + i * width - 0.4 + width / 2, values, width, label=r.system)
    ax.set_xticks(x, groups, rotation=45, ha="right")
    ax.set_ylabel(f"nDCG@{k}")
    ax.set_ylim(0, 1)
    ax.set_title(title)
    ax.legend(fontsize=8, ncols=min(4, len(reports)))
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
