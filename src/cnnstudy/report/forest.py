"""The forest plot under the answer: every confirmatory comparison as its difference with its interval
at the family's level, grouped by phase, coloured by its words, on one zero line, the number of test
images beside each (as meta-analyses and A/B-test tools draw them)."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from .compare import CONFIRMATORY
from . import plots
from .plots import FIGURE_WIDTH, plt

COLOURS = {"better": "#1a7f37", "worse": "#cf222e", "no clear": "#6e7781", "cannot": "#9a6700"}


def colour(words: str) -> str:
    return next(value for key, value in COLOURS.items() if words.startswith(key))


def forest_rows(found: list[dict], phases: list[str]) -> list[dict]:
    """Per phase in study order, its comparisons (by the phase of their first run) as rows to draw."""
    rows = []
    stated = [c for c in found if c["family"] == CONFIRMATORY]
    for phase in phases:
        mine = [c for c in stated if c["a"].split("/")[0] == phase]
        if mine:
            rows.append({"phase": phase})
        for c in mine:
            other = c["b"].split("/", 1)[1] if c["b"].split("/")[0] == phase else c["b"]
            rows.append({"label": f"{c['a'].split('/', 1)[1]} vs {other}", "diff": c["diff"] * 100,
                         "ci": None if c["ci"] is None else [v * 100 for v in c["ci"]], "words": c["words"],
                         "n": f"{c['test_images']} {c['dataset']}"})
    return rows


def plot_forest(rows: list[dict], level: float, path: Path) -> Path:
    """`rows` from forest_rows; `level`: the family's interval level (a fraction)."""
    height = 0.42 * len(rows) + 1.3
    fig, ax = plt.subplots(figsize=(FIGURE_WIDTH, height))
    y = np.arange(len(rows))[::-1]
    for row, at in zip(rows, y):
        if "phase" in row:
            ax.text(0.0, at, row["phase"], transform=ax.get_yaxis_transform(), ha="right", va="center",
                    fontweight="bold")
            continue
        tint = colour(row["words"])
        if row["ci"] is not None:
            ax.plot(row["ci"], [at, at], color=tint, linewidth=2.5, solid_capstyle="butt")
        ax.plot(row["diff"], at, "o", color=tint, markersize=8, markerfacecolor=tint if row["ci"] else "none")
        ax.text(1.01, at, row["n"], transform=ax.get_yaxis_transform(), va="center")
    ax.axvline(0, color="black", linewidth=1)
    ax.set_yticks([at for row, at in zip(rows, y) if "phase" not in row],
                  [row["label"] for row in rows if "phase" not in row])
    ax.set_ylim(-0.7, len(rows) - 0.3)
    ax.set_xlabel(f"difference in test accuracy (points), {level * 100:.3g}% intervals")
    ax.grid(axis="x", alpha=0.3)
    handles = [plt.Line2D([], [], color=tint, marker="o", linewidth=2.5, label=name)
               for name, tint in COLOURS.items() if any(r.get("words", "").startswith(name) for r in rows)]
    ax.legend(handles=handles, labels=[h.get_label().replace("no clear", "no clear difference") for h in handles],
              loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=len(handles), frameon=False)
    return plots.save_figure(fig, path)
