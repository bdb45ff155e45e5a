"""Results document, per-cell summaries and the README table (measured beside the paper's Table 4).

A results document is JSON::

    {"schema": "prismbench.accuracy/1", "env": {...}, "preset": {...}, "run": {...},
     "records": [{"task", "method", "width", "seed", "steps", "accuracy", "preset", "status", ...}, ...]}

Example::

    >>> cells = summarize([{"task": "mux", "method": "transformer", "width": 16, "seed": 0,
    ...                     "accuracy": 1.0, "status": "ok"}])
    >>> cells[("mux", "transformer", 16)]["mean"]
    1.0
"""
from __future__ import annotations

import json
import statistics
from pathlib import Path
from typing import Iterable, Optional

from prismbench.accuracy.presets import PAPER_TABLE4

SCHEMA = "prismbench.accuracy/1"
RECORD_KEYS = ("task", "method", "width", "seed", "steps", "accuracy", "preset", "status")


def new_document(env: dict, preset: dict, run: dict) -> dict:
    return {"schema": SCHEMA, "env": env, "preset": preset, "run": run, "records": []}


def validate(doc: dict, where: str = "results") -> None:
    """Raise ValueError naming the first missing or malformed field."""
    if not isinstance(doc, dict) or doc.get("schema") != SCHEMA:
        raise ValueError(f"{where}: schema={doc.get('schema') if isinstance(doc, dict) else type(doc).__name__!r} is not {SCHEMA!r}")
    for k in ("env", "preset", "records"):
        if k not in doc:
            raise ValueError(f"{where}: missing key {k!r}")
    for i, r in enumerate(doc["records"]):
        missing = [k for k in RECORD_KEYS if k not in r]
        if missing:
            raise ValueError(f"{where}: records[{i}] lacks {missing}")
        if r["status"] == "ok":
            a = r["accuracy"]
            if not isinstance(a, (int, float)) or not (0.0 <= a <= 1.0):
                raise ValueError(f"{where}: records[{i}].accuracy={a!r} is not in [0, 1]")


def write(doc: dict, path: Path) -> None:
    validate(doc, str(path))
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(doc, indent=1, default=str))
    tmp.replace(path)


def read(path: Path) -> dict:
    doc = json.loads(Path(path).read_text())
    validate(doc, str(path))
    return doc


def summarize(records: Iterable[dict]) -> dict[tuple, dict]:
    """(task, method, width) -> {"mean", "std", "min", "max", "n", "accs", "status", "reason", "backend"}.

    mean/std are over the seeds whose run is "ok"; status is "ok" if any run is, else the first
    run's status (e.g. "unavailable") with its reason.
    """
    cells: dict[tuple, dict] = {}
    for r in records:
        c = cells.setdefault((r["task"], r["method"], r["width"]),
                             {"accs": [], "status": r["status"], "reason": r.get("reason"), "backend": r.get("backend")})
        if r["status"] == "ok":
            c["accs"].append(float(r["accuracy"]))
            c["status"], c["backend"] = "ok", r.get("backend")
    for c in cells.values():
        a = c["accs"]
        c["n"] = len(a)
        c["mean"] = statistics.fmean(a) if a else None
        c["std"] = statistics.stdev(a) if len(a) > 1 else (0.0 if a else None)
        c["min"], c["max"] = (min(a), max(a)) if a else (None, None)
    return cells


def _order(items, preferred):
    items = list(dict.fromkeys(items))
    return [x for x in preferred if x in items] + [x for x in items if x not in preferred]


def default_widths(records: Iterable[dict], task_widths: Optional[dict] = None) -> dict[str, int]:
    """The width shown per task in tables and the heatmap: the preset's width for the task if it
    was run, else the smallest width run."""
    by_task: dict[str, set] = {}
    for r in records:
        by_task.setdefault(r["task"], set()).add(r["width"])
    out = {}
    for t, ws in by_task.items():
        w = (task_widths or {}).get(t)
        out[t] = w if w in ws else min(ws)
    return out


def markdown_table(doc: dict) -> str:
    """Task x method table of mean accuracy (± std over seeds, n seeds), beside the paper's numbers."""
    from prismbench.accuracy.presets import ALL_METHODS
    from prismbench.accuracy.tasks import TASKS

    recs = doc["records"]
    if not recs:
        return "(no records)\n"
    task_widths = {t: s["width"] for t, s in doc.get("preset", {}).get("tasks", {}).items()}
    widths = default_widths(recs, task_widths)
    cells = summarize(recs)
    tasks = _order((r["task"] for r in recs), list(TASKS))
    methods = _order((r["method"] for r in recs), list(ALL_METHODS))
    paper_cols = ["transformer", "linear-attn", "prism"]
    steps = sorted({r["steps"] for r in recs})
    seeds = sorted({r["seed"] for r in recs})
    lines = [
        f"Preset `{doc.get('preset', {}).get('name', '?')}`, steps {', '.join(map(str, steps))}, "
        f"seeds {', '.join(map(str, seeds))}, device {recs[0].get('device', '?')}. "
        "Cells: mean accuracy at the query positions ± std over seeds; `n/a`: the method could not run "
        "(see the JSON's `reason`). Paper: Table 4 of arXiv 2602.10796 (Transformer / linear attention / PRISM L=2).",
        "",
        "| task (width) | " + " | ".join(methods) + " | paper T / LA / PRISM |",
        "|---|" + "---|" * len(methods) + "---|",
    ]
    for t in tasks:
        row = [f"{t} ({widths[t]})"]
        for m in methods:
            c = cells.get((t, m, widths[t]))
            if c is None:
                row.append("")
            elif c["mean"] is None:
                row.append("n/a")
            else:
                row.append(f"{c['mean']:.2f} ± {c['std']:.2f}" + (f" (n={c['n']})" if c["n"] != len(seeds) else ""))
        paper = PAPER_TABLE4.get(t)
        row.append(" / ".join(f"{paper[m]:.2f}" for m in paper_cols) if paper else "")
        lines.append("| " + " | ".join(row) + " |")
    backends = {}
    for r in recs:
        if r.get("backend"):
            backends.setdefault(r["method"], set()).add(r["backend"])
    if backends:
        lines += ["", "Mixer backends: " + "; ".join(f"`{m}`: {', '.join(sorted(b))}" for m, b in sorted(backends.items()))]
    bad = {(r["method"], r["status"], r.get("reason")) for r in recs if r["status"] != "ok"}
    for m, s, why in sorted(bad, key=str):
        lines.append(f"- `{m}` {s}: {why}")
    return "\n".join(lines) + "\n"
