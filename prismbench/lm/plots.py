"""Figures and a table of a training-throughput results file (mode "train" points).

    train_tokens_vs_T   training tokens/s against T, one line per model (the paper's Figure 2 layout),
                        log scale; a timed-out point is drawn as an open down-triangle at its upper bound
    train_prism_ttt     PRISM / TTT training-throughput ratio for each TTT backend, bars per T
                        (a ratio against a timed-out TTT point is a lower bound, hatched and marked ">=")
    train_memory_vs_T   peak memory against T per model
    train_table.md      tokens/s (thousands) per model and T, with the status of missing points

Every figure is written as PNG and SVG; the subtitle names the device, model config and precision.

Usage::

    python -m prismbench.lm.plots results/train-130m-nvidia-h100-80gb-hbm3.json [more.json] -o results/figures

Several files (e.g. one run split in two calls on the same GPU) are merged; files measured on
different devices are refused (absolute times do not mix).
"""
from __future__ import annotations

import argparse
from pathlib import Path
from typing import Optional

from prismbench import results as resmod

__all__ = ["train_points", "ratio_rows", "plot_train", "plot_train_files", "markdown_table", "merge_docs",
           "PRISM_MODELS", "TTT_MODELS"]

#: PRISM model used as the numerator of the ratio figure, in order of preference
PRISM_MODELS = ("prism-triton", "prism-torch")
TTT_MODELS = ("ttt-loop-simplified", "ttt-loop", "ttt-triton", "ttt-fla-chunk")
_TTT_NOTE = {
    "ttt-loop-simplified": "PyTorch loop, authors' variant (as the paper timed)",
    "ttt-loop": "PyTorch loop, exact",
    "ttt-triton": "fused Triton, exact (mini-batch 1)",
    "ttt-fla-chunk": "fla chunk, mini-batch 16",
}


def train_points(doc: dict) -> list[dict]:
    return [p for p in doc["points"] if p.get("mode") == "train"]


def _tps(p: dict) -> float:
    return resmod.as_float(p.get("tokens_per_s"))


def _by_model(points: list[dict]) -> dict[str, list[dict]]:
    out: dict[str, list[dict]] = {}
    for p in points:
        out.setdefault(p.get("mixer") or p["method"].removeprefix("lm-"), []).append(p)
    for v in out.values():
        v.sort(key=lambda p: p["T"])
    return out


def ratio_rows(points: list[dict]) -> list[dict]:
    """PRISM / TTT throughput ratios: one row per (TTT model, T) where the PRISM point is ok.

    Row: {"ttt": name, "T": T, "prism": prism model, "ratio": x, "bound": "=" | ">="}; a TTT point that
    timed out with an upper bound on its throughput gives a lower bound on the ratio.
    """
    by = _by_model(points)
    rows = []
    for T in sorted({p["T"] for p in points}):
        prism = next((by[m] for m in PRISM_MODELS if any(q["T"] == T and q["status"] == "ok" for q in by.get(m, []))),
                     None)
        if prism is None:
            continue
        pp = next(q for q in prism if q["T"] == T and q["status"] == "ok")
        for t in TTT_MODELS:
            tp = next((q for q in by.get(t, []) if q["T"] == T), None)
            if tp is None:
                continue
            if tp["status"] == "ok" and _tps(tp) > 0:
                rows.append({"ttt": t, "T": T, "prism": pp["mixer"], "ratio": _tps(pp) / _tps(tp), "bound": "="})
            elif resmod.as_float(tp.get("tokens_per_s_upper_bound")) > 0:
                rows.append({"ttt": t, "T": T, "prism": pp["mixer"],
                             "ratio": _tps(pp) / float(tp["tokens_per_s_upper_bound"]), "bound": ">="})
    return rows


def _subtitle(doc: dict, points: list[dict]) -> str:
    env = doc.get("env", {})
    dev = env.get("gpu_name") or f"CPU ({env.get('cpu', '?')})"
    model = sorted({str(p.get("model")) for p in points})
    prec = sorted({str(p.get("precision")) for p in points})
    tok = sorted({p.get("tokens_per_step") for p in points if p.get("tokens_per_step")})
    return (f"{dev}; model {'/'.join(model)}; {'/'.join(prec)}; {'/'.join(map(str, tok))} tokens per step; "
            f"torch {env.get('torch')}, triton {env.get('triton')}, fla {env.get('fla_core')}")


def _save(fig, out: Path, name: str) -> list[Path]:
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=130, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def _label(model: str, pts: list[dict]) -> str:
    backend = next((p.get("backend") for p in pts if p.get("backend")), "") or ""
    if "stand-in" in backend:
        return f"{model} [{backend.split(' as ')[0]}]"
    L = next((p.get("L") for p in pts if p.get("L")), None)
    return f"{model} (L={L})" if L else model


def plot_train(doc: dict, out: Path, stem: str) -> list[Path]:
    """Write the figures and the table of `doc` under `out`, file names starting with `stem`."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    points = train_points(doc)
    if not points:
        return []
    out = Path(out)
    written: list[Path] = []
    by = _by_model(points)
    sub = _subtitle(doc, points)
    Ts = sorted({p["T"] for p in points})

    fig, ax = plt.subplots(figsize=(8, 5))
    drawn = False
    for i, (m, pts) in enumerate(by.items()):
        color = f"C{i % 10}"
        ok = [p for p in pts if p["status"] == "ok"]
        if ok:
            ax.plot([p["T"] for p in ok], [_tps(p) for p in ok], marker="o", color=color, label=_label(m, pts))
            drawn = True
        ub = [p for p in pts if resmod.as_float(p.get("tokens_per_s_upper_bound")) > 0]
        if ub:
            ax.plot([p["T"] for p in ub], [float(p["tokens_per_s_upper_bound"]) for p in ub], linestyle="none",
                    marker="v", markerfacecolor="none", color=color,
                    label=None if ok else f"{_label(m, pts)} (timed out: upper bound)")
            drawn = True
    if drawn:
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xticks(Ts, [str(t) for t in Ts])
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("training tokens / s (fwd + bwd + AdamW)")
        ax.set_title(f"Training throughput\n{sub}", fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="best")
        written += _save(fig, out, f"{stem}-train_tokens_vs_T")
    else:
        plt.close(fig)

    rows = ratio_rows(points)
    if rows:
        tts = [t for t in TTT_MODELS if any(r["ttt"] == t for r in rows)]
        rT = sorted({r["T"] for r in rows})
        fig, ax = plt.subplots(figsize=(8, 5))
        w = 0.8 / max(len(tts), 1)
        for k, t in enumerate(tts):
            for r in (r for r in rows if r["ttt"] == t):
                x = rT.index(r["T"]) + (k - (len(tts) - 1) / 2) * w
                lower = r["bound"] == ">="
                ax.bar(x, r["ratio"], width=w, color=f"C{k}", hatch="//" if lower else None,
                       label=f"{t}: {_TTT_NOTE[t]}" if r is next(q for q in rows if q["ttt"] == t) else None)
                ax.annotate(f"{'>=' if lower else ''}{r['ratio']:.3g}x", (x, r["ratio"]), ha="center",
                            va="bottom", fontsize=7)
        ax.axhline(1.0, color="k", lw=0.8)
        ax.set_yscale("log")
        ax.set_xticks(range(len(rT)), [str(t) for t in rT])
        ax.set_xlabel("sequence length T")
        prism_names = sorted({r["prism"] for r in rows})
        ax.set_ylabel(f"{'/'.join(prism_names)} tokens/s  /  TTT tokens/s")
        ax.set_title(f"PRISM / TTT training throughput, by TTT implementation (paper: 174x on H20)\n{sub}",
                     fontsize=8)
        ax.grid(True, axis="y", which="both", alpha=0.3)
        ax.legend(fontsize=7)
        written += _save(fig, out, f"{stem}-train_prism_ttt_ratio")

    mem = {m: [p for p in pts if p["status"] == "ok" and p.get("peak_mem_bytes")] for m, pts in by.items()}
    if any(mem.values()):
        fig, ax = plt.subplots(figsize=(8, 5))
        for i, (m, pts) in enumerate(mem.items()):
            if pts:
                ax.plot([p["T"] for p in pts], [p["peak_mem_bytes"] / 2**30 for p in pts], marker="o",
                        color=f"C{i % 10}", label=_label(m, by[m]))
        ax.set_xscale("log", base=2)
        ax.set_xticks(Ts, [str(t) for t in Ts])
        ax.set_xlabel("sequence length T")
        kinds = sorted({p.get("peak_mem_kind") for pts in mem.values() for p in pts})
        ax.set_ylabel(f"peak memory, GiB ({', '.join(kinds)})")
        ax.set_title(f"Training peak memory (weights, grads, AdamW state, activations)\n{sub}", fontsize=8)
        ax.grid(True, alpha=0.3)
        ax.legend(fontsize=7)
        written += _save(fig, out, f"{stem}-train_memory_vs_T")

    out.mkdir(parents=True, exist_ok=True)
    table = out / f"{stem}-train_table.md"
    table.write_text(markdown_table(doc) + "\n")
    written.append(table)
    return written


def markdown_table(doc: dict) -> str:
    """Tokens/s (thousands) per model and T, parameter counts, and the PRISM/TTT ratios, as Markdown."""
    points = train_points(doc)
    by = _by_model(points)
    Ts = sorted({p["T"] for p in points})
    lines = [f"Training throughput, thousand tokens/s ({_subtitle(doc, points)})", "",
             "| model | backend | params | " + " | ".join(f"T={t}" for t in Ts) + " |",
             "|---|---|---|" + "---|" * len(Ts)]
    for m, pts in by.items():
        cells = []
        for t in Ts:
            p = next((q for q in pts if q["T"] == t), None)
            if p is None:
                cells.append("")
            elif p["status"] == "ok":
                cells.append(f"{_tps(p) / 1e3:,.2f}")
            elif resmod.as_float(p.get("tokens_per_s_upper_bound")) > 0:
                cells.append(f"<{float(p['tokens_per_s_upper_bound']) / 1e3:,.2f} (timeout)")
            else:
                err = str(p.get("error") or p["status"])
                cells.append("OOM" if err.startswith("out of memory") else err.split(":")[0])
        params = next((p.get("params") for p in pts if p.get("params")), None)
        backend = next((p.get("backend") for p in pts if p.get("backend")), "") or ""
        lines.append(f"| {m} | {backend[:70]} | {'' if params is None else f'{params:,}'} | " + " | ".join(cells) + " |")
    rows = ratio_rows(points)
    if rows:
        lines += ["", "PRISM / TTT ratio (training tokens/s):", "",
                  "| TTT model | " + " | ".join(f"T={t}" for t in Ts) + " |", "|---|" + "---|" * len(Ts)]
        for t in TTT_MODELS:
            rr = {r["T"]: r for r in rows if r["ttt"] == t}
            if rr:
                lines.append(f"| {t} | " + " | ".join(
                    (f"{'>=' if rr[T]['bound'] == '>=' else ''}{rr[T]['ratio']:,.3g}x" if T in rr else "")
                    for T in Ts) + " |")
    return "\n".join(lines)


def merge_docs(docs: list[dict]) -> dict:
    """One document with the points of all `docs` (later files win for the same point key).

    Raises ResultsError when the documents were measured on different devices."""
    if not docs:
        raise resmod.ResultsError("no results documents to merge")
    names = {d["env"].get("gpu_name") or "CPU" for d in docs}
    if len(names) > 1:
        raise resmod.ResultsError(f"results measured on different devices ({', '.join(sorted(names))}) do not mix")
    merged: dict = {}
    for d in docs:
        for p in train_points(d):
            merged[resmod.point_key(p)] = p
    return {**docs[0], "points": list(merged.values())}


def plot_train_files(paths: list[Path], out: Optional[Path] = None) -> list[Path]:
    """Read (and merge) results files and write their figures; returns the written paths."""
    paths = [Path(p) for p in paths]
    doc = merge_docs([resmod.read(p) for p in paths])
    out = Path(out) if out is not None else paths[0].parent / "figures"
    return plot_train(doc, out, paths[0].stem)


def main(argv: Optional[list[str]] = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m prismbench.lm.plots", description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="+", type=Path, help="train-throughput results JSON file(s)")
    ap.add_argument("-o", "--out", type=Path, default=None, help="output directory (default: <dir>/figures)")
    a = ap.parse_args(argv)
    try:
        written = plot_train_files(a.results, a.out)
    except resmod.ResultsError as e:
        print(f"error: {e}")
        return 2
    for p in written:
        print(p)
    if any(p.suffix == ".md" for p in written):
        print(next(p for p in written if p.suffix == ".md").read_text())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
