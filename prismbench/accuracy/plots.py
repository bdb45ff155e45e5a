"""Figures of a results document: the task x method heatmap and accuracy against model width.

Example::

    >>> doc = read(Path("results/accuracy/accuracy-paper-caption.json"))
    >>> heatmap(doc, Path("heatmap.png")); accuracy_vs_width(doc, Path("width.png"))
"""
from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from prismbench.accuracy.presets import ALL_METHODS, PAPER_TABLE4  # noqa: E402
from prismbench.accuracy.report import _order, default_widths, summarize  # noqa: E402
from prismbench.accuracy.tasks import TASKS  # noqa: E402


def _title(doc: dict) -> str:
    recs = doc["records"]
    steps = sorted({r["steps"] for r in recs})
    seeds: dict = {}
    for r in recs:
        seeds.setdefault(r["width"], set()).add(r["seed"])
    counts = {w: len(s) for w, s in sorted(seeds.items())}
    if len(set(counts.values())) <= 1:
        seed_txt = f"{next(iter(counts.values()), 0)} seed(s)"
    else:   # e.g. a width sweep on one seed beside the main width's three
        seed_txt = "seeds per width " + ", ".join(f"D={w}: {n}" for w, n in counts.items())
    dev = recs[0].get("device", "?") if recs else "?"
    return f"preset {doc.get('preset', {}).get('name', '?')}, {'/'.join(map(str, steps))} steps, {seed_txt}, {dev}"


def heatmap(doc: dict, path: Path) -> Path:
    """Mean accuracy per (task, method) at each task's preset width; grey `n/a` where a method could not run.
    The paper's number, where it has one, is printed under the measured one."""
    recs = doc["records"]
    task_widths = {t: s["width"] for t, s in doc.get("preset", {}).get("tasks", {}).items()}
    widths = default_widths(recs, task_widths)
    cells = summarize(recs)
    tasks = _order((r["task"] for r in recs), list(TASKS))
    methods = _order((r["method"] for r in recs), list(ALL_METHODS))
    A = np.full((len(tasks), len(methods)), np.nan)
    for i, t in enumerate(tasks):
        for j, m in enumerate(methods):
            c = cells.get((t, m, widths[t]))
            if c is not None and c["mean"] is not None:
                A[i, j] = c["mean"]
    fig, ax = plt.subplots(figsize=(1.3 * len(methods) + 2.5, 0.6 * len(tasks) + 1.8))
    cmap = plt.get_cmap("viridis").with_extremes(bad="#cccccc")
    ax.imshow(np.ma.masked_invalid(A), cmap=cmap, vmin=0, vmax=1, aspect="auto")
    for i, t in enumerate(tasks):
        for j, m in enumerate(methods):
            paper = PAPER_TABLE4.get(t, {}).get(m)
            txt = "n/a" if np.isnan(A[i, j]) else f"{A[i, j]:.2f}"
            if paper is not None:
                txt += f"\n(paper {paper:.2f})"
            ax.text(j, i, txt, ha="center", va="center", fontsize=7,
                    color="black" if np.isnan(A[i, j]) or A[i, j] > 0.6 else "white")
    ax.set_xticks(range(len(methods)), methods, rotation=30, ha="right")
    ax.set_yticks(range(len(tasks)), [f"{t} (D={widths[t]})" for t in tasks])
    ax.set_title("accuracy at query positions\n" + _title(doc), fontsize=9)
    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path


def accuracy_vs_width(doc: dict, path: Path) -> Path:
    """One panel per task: mean accuracy (min..max over seeds as error bars) against width, one line per method."""
    recs = [r for r in doc["records"] if r["status"] == "ok"]
    cells = summarize(recs)
    tasks = _order((r["task"] for r in doc["records"]), list(TASKS))
    methods = _order((r["method"] for r in doc["records"]), list(ALL_METHODS))
    ncol = min(3, max(1, len(tasks)))
    nrow = -(-len(tasks) // ncol)
    fig, axes = plt.subplots(nrow, ncol, figsize=(4 * ncol, 3 * nrow), squeeze=False)
    for ax, t in zip(axes.flat, tasks):
        for m in methods:
            pts = sorted((w, c) for (tt, mm, w), c in cells.items() if tt == t and mm == m and c["mean"] is not None)
            if not pts:
                continue
            w = [p[0] for p in pts]
            mean = np.array([p[1]["mean"] for p in pts])
            lo = mean - np.array([p[1]["min"] for p in pts])
            hi = np.array([p[1]["max"] for p in pts]) - mean
            ax.errorbar(w, mean, yerr=[lo, hi], marker="o", ms=3, capsize=2, label=m)
        ax.set_xscale("log", base=2)
        ax.set_ylim(-0.02, 1.02)
        ax.set_title(t, fontsize=9)
        ax.set_xlabel("width D")
        ax.set_ylabel("accuracy")
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(tasks):]:
        ax.axis("off")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    if handles:
        fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle("accuracy vs width: " + _title(doc), fontsize=9)
    fig.tight_layout(rect=(0, 0.06, 1, 0.96))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=130)
    plt.close(fig)
    return path
