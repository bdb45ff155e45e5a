"""Figures from a results file (PNG and SVG, named by content).

- `<stem>-throughput-vs-T`: tokens/s against T per method (and L), fwd and fwd+bwd panels, log scale;
- `<stem>-prism-ratio`: bars of PRISM's tokens/s over each baseline's, per T and mode;
- `<stem>-peak-memory-vs-T`: peak memory against T per method;
- `<stem>-throughput-vs-state`: tokens/s against state size K=V (at the largest T measured at >1 K);
- `<stem>-errors`: a table of the worst relative error per method, dtype and mode (also `.md`);
- `<stem>-times.md`: median ms per method, mode and L against T (the T plots' slice), with each row's worst
  relative error: the numbers to cite, regenerated with the figures;
- `<stem>-ratios.md`: PRISM's tokens/s over each baseline's against T (the ratio figure's numbers).
"""
from __future__ import annotations

import math
from collections import Counter, defaultdict
from pathlib import Path
from typing import Optional

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402

from prismbench import results  # noqa: E402

MODES = ("fwd", "fwdbwd")
MODE_TITLE = {"fwd": "forward", "fwdbwd": "forward + backward"}
# the PRISM implementation a ratio figure is about, best first
PRISM_PREFERENCE = ("prism-triton", "prism-torch", "prism-fla-dplr", "prism-reference")
# PRISM implementations that are competitors of the fused kernel (SPEC section 1: "the peer a
# fused PRISM kernel must beat"); the other PRISM methods are references, not baselines
PRISM_PEERS = ("prism-fla-dplr",)


def _series_name(p: dict, with_B: bool = False) -> str:
    return p["method"] + (f" L={p['L']}" if p.get("L") is not None else "") + (f" B={p['B']}" if with_B else "")


def _varies_B(points: list[dict]) -> bool:
    """True when one method measured several B at one T (then each B is its own series)."""
    seen: dict = defaultdict(set)
    for p in points:
        seen[(p["method"], p.get("L"), p["mode"], p["T"])].add(p["B"])
    return any(len(b) > 1 for b in seen.values())


def _main_slice(points: list[dict]) -> tuple[list[dict], str]:
    """Points at the most common (dtype, H, K, V): the slice the T plots show."""
    c = Counter((p["dtype"], p["H"], p["K"], p["V"]) for p in points)
    if not c:
        return [], ""
    (dt, H, K, V), _ = c.most_common(1)[0]
    sl = [p for p in points if (p["dtype"], p["H"], p["K"], p["V"]) == (dt, H, K, V)]
    return sl, f"{dt}, H={H}, K={K}, V={V}"


def _subtitle(doc: dict, shape: str) -> str:
    env = doc.get("env") or {}
    dev = env.get("gpu_name") or f"CPU ({env.get('cpu', '?')})"
    runs = env.get("merged_from")
    if runs:   # `prismbench merge`: name every run's commit
        commits = ", ".join(dict.fromkeys(str(r.get("git_commit") or "?")[:8] for r in runs))
        return f"{dev} | {shape} | {len(runs)} runs merged, commits {commits}"
    return f"{dev} | {shape} | commit {str(env.get('git_commit') or '?')[:8]}"


def _save(fig, out: Path, name: str) -> list[Path]:
    paths = []
    for ext in ("png", "svg"):
        p = out / f"{name}.{ext}"
        fig.savefig(p, dpi=130 if ext == "png" else None, bbox_inches="tight")
        paths.append(p)
    plt.close(fig)
    return paths


def _lines_vs(ax, points: list[dict], x: str, y: str, scale: float = 1.0) -> bool:
    series: dict[str, list[tuple[float, float]]] = defaultdict(list)
    with_B = _varies_B(points)
    for p in points:
        v = results.as_float(p.get(y))
        if math.isfinite(v):
            series[_series_name(p, with_B)].append((p[x], v * scale))
    # more than ten series: tab20 and two markers, so no two lines look alike
    colors = plt.get_cmap("tab10" if len(series) <= 10 else "tab20").colors
    for i, name in enumerate(sorted(series)):
        xs, ys = zip(*sorted(series[name]))
        ax.plot(xs, ys, marker="os"[i // len(colors) % 2] if len(series) <= 10 else "os"[i % 2],
                color=colors[i % len(colors)], label=name)
    return bool(series)


def throughput_vs_T(doc: dict, out: Path, stem: str) -> list[Path]:
    pts, shape = _main_slice(results.ok_points(doc["points"]))
    if not pts:
        return []
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=False)
    for ax, mode in zip(axes, MODES):
        sel = [p for p in pts if p["mode"] == mode]
        _lines_vs(ax, sel, "T", "tokens_per_s", 1e-3)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("sequence length T")
        ax.set_ylabel("thousand tokens / s")
        ax.set_title(MODE_TITLE[mode])
        ax.grid(True, which="both", alpha=0.3)
        if sel:
            ax.legend(fontsize=7)
    fig.suptitle(f"Throughput vs T ({_subtitle(doc, shape)})", fontsize=9)
    return _save(fig, out, f"{stem}-throughput-vs-T")


def prism_ratios(points: list[dict]) -> list[dict]:
    """PRISM tokens/s over each baseline's at the same (mode, dtype, B, T, H, K, V).

    The PRISM side is the first of PRISM_PREFERENCE present, at each L measured; the baselines are
    every other family plus PRISM_PEERS. Baselines that have L (e.g. gdp-fla-chunk, n = L) are
    matched at the same L.
    """
    ok = results.ok_points(points)
    prism = next((m for m in PRISM_PREFERENCE if any(p["method"] == m for p in ok)), None)
    if prism is None:
        return []
    base = {}
    for p in ok:
        if p["method"] != prism and (p["family"] != "prism" or p["method"] in PRISM_PEERS):
            base[(p["method"], p["mode"], p["dtype"], p["B"], p["T"], p["H"], p["K"], p["V"], p["L"])] = p
    rows = []
    for p in ok:
        if p["method"] != prism:
            continue
        for (bm, mode, dt, B, T, H, K, V, L), b in base.items():
            if (mode, dt, B, T, H, K, V) != (p["mode"], p["dtype"], p["B"], p["T"], p["H"], p["K"], p["V"]):
                continue
            if L is not None and L != p["L"]:
                continue
            rows.append({"prism": prism, "L": p["L"], "baseline": _series_name(b, _varies_B(ok)), "mode": mode,
                         "dtype": dt, "T": T, "B": B, "H": H, "K": K,
                         "ratio": p["tokens_per_s"] / b["tokens_per_s"], "runs": (p.get("run"), b.get("run"))})
    return rows


def ratio_bars(doc: dict, out: Path, stem: str) -> list[Path]:
    pts, shape = _main_slice(results.ok_points(doc["points"]))
    rows = prism_ratios(pts)
    if not rows:
        return []
    Ls = sorted({r["L"] for r in rows})
    fig, axes = plt.subplots(len(Ls), 2, figsize=(12, 3.8 * len(Ls)), squeeze=False)
    for i, L in enumerate(Ls):
        for j, mode in enumerate(MODES):
            ax = axes[i][j]
            sel = [r for r in rows if r["L"] == L and r["mode"] == mode]
            Ts = sorted({r["T"] for r in sel})
            bases = sorted({r["baseline"] for r in sel})
            width = 0.8 / max(1, len(bases))
            for k, b in enumerate(bases):
                vals = {r["T"]: r["ratio"] for r in sel if r["baseline"] == b}
                xs = [t + 0 for t in range(len(Ts))]
                ax.bar([x + k * width for x in xs], [vals.get(T, 0) for T in Ts], width, label=b)
            ax.axhline(1.0, color="k", lw=0.8)
            ax.set_yscale("log")
            ax.set_xticks([x + width * (len(bases) - 1) / 2 for x in range(len(Ts))], [str(T) for T in Ts])
            ax.set_xlabel("T")
            ax.set_ylabel(f"{rows[0]['prism']} / baseline (tokens/s)")
            ax.set_title(f"L={L}, {MODE_TITLE[mode]}")
            if bases:
                ax.legend(fontsize=7)
    fig.suptitle(f"PRISM throughput ratio ({_subtitle(doc, shape)})", fontsize=9)
    fig.tight_layout()
    return _save(fig, out, f"{stem}-prism-ratio")


def memory_vs_T(doc: dict, out: Path, stem: str) -> list[Path]:
    pts, shape = _main_slice(results.ok_points(doc["points"]))
    pts = [p for p in pts if p["mode"] == "fwdbwd" and p.get("peak_mem_bytes") is not None] or \
          [p for p in pts if p.get("peak_mem_bytes") is not None]
    if not pts:
        return []
    kind = pts[0].get("peak_mem_kind")
    fig, ax = plt.subplots(figsize=(7, 4.5))
    _lines_vs(ax, pts, "T", "peak_mem_bytes", 1 / 2**20)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("sequence length T")
    ax.set_ylabel(f"peak memory, MiB ({kind})")
    ax.set_title(f"Peak memory, {MODE_TITLE[pts[0]['mode']]} ({_subtitle(doc, shape)})", fontsize=8)
    ax.grid(True, alpha=0.3)
    ax.legend(fontsize=7)
    return _save(fig, out, f"{stem}-peak-memory-vs-T")


def throughput_vs_state(doc: dict, out: Path, stem: str) -> list[Path]:
    ok = results.ok_points(doc["points"])
    c = Counter((p["dtype"], p["H"]) for p in ok)
    if not c:
        return []
    (dt, H), _ = c.most_common(1)[0]
    ok = [p for p in ok if (p["dtype"], p["H"]) == (dt, H)]
    Ks_by_T = defaultdict(set)
    for p in ok:
        Ks_by_T[p["T"]].add(p["K"])
    Ts = [T for T, ks in Ks_by_T.items() if len(ks) > 1]
    if not Ts:
        return []
    T = max(Ts)
    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5))
    for ax, mode in zip(axes, MODES):
        sel = [p for p in ok if p["T"] == T and p["mode"] == mode]
        _lines_vs(ax, sel, "K", "tokens_per_s", 1e-3)
        ax.set_xscale("log", base=2)
        ax.set_yscale("log")
        ax.set_xlabel("state size K = V")
        ax.set_ylabel("thousand tokens / s")
        ax.set_title(f"{MODE_TITLE[mode]}, T={T}")
        ax.grid(True, which="both", alpha=0.3)
        if sel:
            ax.legend(fontsize=7)
    fig.suptitle(f"Throughput vs state size ({_subtitle(doc, f'{dt}, H={H}')})", fontsize=9)
    return _save(fig, out, f"{stem}-throughput-vs-state")


def error_rows(points: list[dict]) -> list[dict]:
    """Worst rel_err per (method, L, dtype, mode) and the tensor it came from."""
    worst: dict[tuple, dict] = {}
    for p in points:
        if p.get("status") not in ("ok", "error"):
            continue
        errs = p.get("rel_err")
        if not errs:
            continue
        key = (p["method"], p.get("L"), p["dtype"], p["mode"])
        for name, e in errs.items():
            if e is None:  # no gradient on either side: nothing to compare
                continue
            v = results.as_float(e)
            cur = worst.get(key)
            if cur is None or (not math.isfinite(v)) or (math.isfinite(cur["err"]) and v > cur["err"]):
                worst[key] = {"method": p["method"], "L": p.get("L"), "dtype": p["dtype"],
                              "mode": p["mode"], "tensor": name, "err": v}
    return [worst[k] for k in sorted(worst, key=lambda k: tuple(str(x) for x in k))]


def error_table(doc: dict, out: Path, stem: str) -> list[Path]:
    rows = error_rows(doc["points"])
    if not rows:
        return []
    md = ["| method | L | dtype | mode | worst tensor | max rel. error |", "|---|---|---|---|---|---|"]
    cells = []
    for r in rows:
        L = "" if r["L"] is None else str(r["L"])
        md.append(f"| {r['method']} | {L} | {r['dtype']} | {r['mode']} | {r['tensor']} | {r['err']:.2e} |")
        cells.append([r["method"], L, r["dtype"], r["mode"], r["tensor"], f"{r['err']:.2e}"])
    p_md = out / f"{stem}-errors.md"
    p_md.write_text("\n".join(md) + "\n")
    fig, ax = plt.subplots(figsize=(9, 0.35 * len(rows) + 1))
    ax.axis("off")
    t = ax.table(cellText=cells, colLabels=["method", "L", "dtype", "mode", "worst tensor", "max rel. err"],
                 loc="center")
    t.auto_set_font_size(False)
    t.set_fontsize(8)
    ax.set_title(f"Relative error vs float64 reference ({_subtitle(doc, 'all shapes')})", fontsize=8)
    return _save(fig, out, f"{stem}-errors") + [p_md]


def _mode_order(mode: str) -> int:
    """fwd before fwdbwd in the tables (any other mode last)."""
    return MODES.index(mode) if mode in MODES else len(MODES)


def _cell(p: Optional[dict]) -> str:
    """A time table's cell: median ms ("*" when p20-p80 spread over NOISY_SPREAD), or why there is none."""
    if p is None:
        return "not run"
    if p["status"] != "ok":
        return p["status"]
    spread = results.spread(p)
    return f"{p['median_ms']:.3f}" + ("*" if spread is not None and spread > results.NOISY_SPREAD else "")


def time_table(doc: dict, out: Path, stem: str) -> list[Path]:
    """`<stem>-times.md`: median ms per (method, mode, L) against T at the main slice (every status, so an
    unsupported or failed point says so), one table per B when a method measured several B at one T."""
    pts, shape = _main_slice(doc["points"])
    if not any(p["status"] == "ok" for p in pts):
        return []
    Ts = sorted({p["T"] for p in pts})
    worst = {(r["method"], r["L"], r["mode"]): r for r in error_rows(pts)}      # the slice has one dtype
    with_B = _varies_B(pts)
    cells: dict[tuple, dict] = {}
    for p in pts:
        cells[(p["mode"], p["method"], p.get("L"), p["B"] if with_B else None, p["T"])] = p
    rows = sorted({k[:4] for k in cells}, key=lambda k: (_mode_order(k[0]), k[1], -1 if k[2] is None else k[2],
                                                         k[3] or 0))
    md = [f"Median ms per call ({_subtitle(doc, shape)}; B*T as run). * = p20-p80 spread over "
          f"{results.NOISY_SPREAD:.0%} of the median (likely disturbed).", "",
          "| method | mode | L |" + (" B |" if with_B else "") + "".join(f" T={T} |" for T in Ts)
          + " worst rel. err |",
          "|---|---|---|" + ("---|" if with_B else "") + "---|" * len(Ts) + "---|"]
    for mode, method, L, B in rows:
        w = worst.get((method, L, mode))
        md.append(f"| {method} | {mode} | {'' if L is None else L} |" + (f" {B} |" if with_B else "")
                  + "".join(f" {_cell(cells.get((mode, method, L, B, T)))} |" for T in Ts)
                  + f" {'-' if w is None else format(w['err'], '.1e')} |")
    path = out / f"{stem}-times.md"
    path.write_text("\n".join(md) + "\n")
    return [path]


def ratio_table(doc: dict, out: Path, stem: str) -> list[Path]:
    """`<stem>-ratios.md`: `prism_ratios` of the main slice, one row per (L, mode, baseline), columns T."""
    pts, shape = _main_slice(results.ok_points(doc["points"]))
    rows = prism_ratios(pts)
    if not rows:
        return []
    Ts = sorted({r["T"] for r in rows})
    val = {(r["L"], r["mode"], r["baseline"], r["T"]): r["ratio"] for r in rows}
    # merged files: a ratio whose two points came from different runs (machines, sessions) is marked
    cross = {(r["L"], r["mode"], r["baseline"], r["T"]) for r in rows if r["runs"][0] != r["runs"][1]}
    keys = sorted({k[:3] for k in val}, key=lambda k: (-1 if k[0] is None else k[0], _mode_order(k[1]), k[2]))
    md = [f"{rows[0]['prism']} tokens/s over each baseline's at the same shape ({_subtitle(doc, shape)}); "
          "above 1 = PRISM faster." + (" + = the two points were measured in different runs of the merged file "
                                       "(`run`), so the ratio spans two processes." if cross else ""), "",
          "| L | mode | baseline |" + "".join(f" T={T} |" for T in Ts), "|---|---|---|" + "---|" * len(Ts)]
    for L, mode, b in keys:
        md.append(f"| {'' if L is None else L} | {mode} | {b} |"
                  + "".join(f" {val[(L, mode, b, T)]:.3f}x{'+' if (L, mode, b, T) in cross else ''} |"
                            if (L, mode, b, T) in val else " - |" for T in Ts))
    path = out / f"{stem}-ratios.md"
    path.write_text("\n".join(md) + "\n")
    return [path]


def plot_all(doc: dict, out: Path, stem: str) -> list[Path]:
    """Every figure the data supports; returns the files written."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    for f in (throughput_vs_T, ratio_bars, memory_vs_T, throughput_vs_state, error_table, time_table, ratio_table):
        paths += f(doc, out, stem)
    return paths


def stem_of(path: Path) -> str:
    return Path(path).name.removesuffix(".json")


def plot_file(path: Path, out: Optional[Path] = None) -> list[Path]:
    doc = results.read(path)
    out = Path(out) if out is not None else Path(path).parent / "figures"
    return plot_all(doc, out, stem_of(path))
