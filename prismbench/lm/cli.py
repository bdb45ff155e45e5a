"""`prismbench train-throughput`: training tokens/s of the language models against T (issue 10).

Wired into the main app by `prismbench/cli.py` (`app.command("train-throughput")(train_throughput)`).

Example::

    prismbench train-throughput --config tiny                       # CPU smoke, every CPU model
    prismbench train-throughput --config 130m --models prism-triton,gla,ttt-loop-simplified
    prismbench train-throughput --config 130m --dry-run             # parameter counts only
"""
from __future__ import annotations

import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.table import Table

err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _ints(text: str, what: str) -> tuple[int, ...]:
    try:
        vals = tuple(int(x) for x in text.split(",") if x.strip())
    except ValueError:
        _fail(f"{what}={text!r}: give comma-separated integers, e.g. 2048,4096")
    if not vals:
        _fail(f"{what}={text!r} is empty")
    return vals


def train_throughput(
    config: str = typer.Option("130m", "--config", "-c", help="LM config: 130m | tiny."),
    models: str = typer.Option("all", "--models", "-m", help="'all' or comma-separated model names."),
    seq_lens: Optional[str] = typer.Option(None, "--T", help="Sequence lengths, e.g. 2048,4096 (default: config's)."),
    tokens_per_step: Optional[int] = typer.Option(None, "--tokens-per-step", help="B*T per step (default: config's)."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed steps per point."),
    steps: int = typer.Option(3, "--steps", help="Timed steps per point."),
    serial_warmup: int = typer.Option(0, "--serial-warmup", help="Untimed steps of the per-token loop models."),
    serial_steps: int = typer.Option(1, "--serial-steps", help="Timed steps of the per-token loop models."),
    point_budget: float = typer.Option(90.0, "--point-budget", help="Seconds per point."),
    serial_budget: float = typer.Option(150.0, "--serial-budget", help="Seconds per point of a per-token loop model."),
    first_extra: float = typer.Option(120.0, "--first-point-extra", help="Extra seconds for a model's first point (compilation)."),
    total_budget: Optional[float] = typer.Option(None, "--total-budget", help="Seconds for the whole run; what is left is skipped."),
    L: int = typer.Option(2, "--L", help="PRISM solver depth."),
    lr: Optional[float] = typer.Option(None, "--lr", help="AdamW learning rate (default: the config preset's, 1e-3)."),
    precision: str = typer.Option("auto", "--precision", help="auto (bf16 autocast on CUDA, fp32 on CPU) | bf16 | fp32."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Directory for results and figures."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write figures after the run."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Build each model, print parameter counts, train nothing."),
    seed: int = typer.Option(0, "--seed", help="Init and data seed."),
):
    """Training steps (fwd, bwd, AdamW) of small LMs, one per mixer: tokens/s, peak memory, loss, vs T."""
    import torch

    from prismbench.env import collect_env
    from prismbench.lm import plots as lmplots
    from prismbench.lm.mixers import build_lm, resolve_models
    from prismbench.lm.model import count_parameters, get_config
    from prismbench.lm.throughput import PRESETS, TrainSettings, fmt_tokens, results_path, run_train_throughput

    if device == "auto":
        dev = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    elif device in ("cpu", "cuda"):
        if device == "cuda" and not torch.cuda.is_available():
            _fail("--device cuda: no CUDA GPU is available here")
        dev = torch.device(device)
    else:
        _fail(f"--device={device!r}: use auto, cpu or cuda")
    try:
        cfg = get_config(config)
        names = resolve_models(models)
    except ValueError as e:
        _fail(str(e))
    preset = PRESETS.get(config, {})
    try:
        settings = TrainSettings(
            config=config, seq_lens=_ints(seq_lens, "--T") if seq_lens else preset["seq_lens"],
            tokens_per_step=tokens_per_step or preset["tokens_per_step"], warmup=warmup, steps=steps,
            serial_warmup=serial_warmup, serial_steps=serial_steps, point_budget_s=point_budget,
            serial_budget_s=serial_budget, first_point_extra_s=first_extra, total_budget_s=total_budget,
            L=L, lr=lr if lr is not None else preset.get("lr", 1e-3), precision=precision, seed=seed)
    except ValueError as e:
        _fail(str(e))

    if dry_run:
        t = Table(title=f"LM config {config}: {cfg.as_dict()}")
        for c in ("model", "backend", "parameters", "non-embedding"):
            t.add_column(c)
        for n in names:
            try:
                m = build_lm(n, cfg, dev, L=settings.L, max_T=max(settings.seq_lens))
            except Exception as e:  # noqa: BLE001 - report and go on
                t.add_row(n, f"{type(e).__name__}: {e}"[:80], "-", "-")
                continue
            t.add_row(n, m.backend[:80], f"{count_parameters(m):,}", f"{count_parameters(m, non_embedding=True):,}")
            del m
        Console(width=None if sys.stdout.isatty() else 160).print(t)
        return

    env = collect_env()
    path = results_path(out, config, env)
    if path.exists():
        prev = path.with_suffix(".prev.json")
        path.replace(prev)
        err.print(f"Previous results moved to {prev}")
    B = {T: settings.tokens_per_step // T for T in settings.seq_lens}
    err.print(f"{len(names)} models x T {list(settings.seq_lens)} (B {list(B.values())}) on "
              f"{env.get('gpu_name') or 'CPU'}, config {config} -> {path}")

    def on_point(p):
        msg = (f"{p['method']:24s} T={p['T']:<6d} B={p['B']:<3d} {p['status']:11s} "
               f"{fmt_tokens(p.get('tokens_per_s')):>10s} tok/s  loss {p.get('loss_first') or float('nan'):.3f}"
               f"->{p.get('loss') or float('nan'):.3f}  params {p['params'] if p.get('params') is None else format(p['params'], ',')}  {p['seconds']:.1f}s")
        if p["status"] != "ok":
            msg += f"  [{str(p.get('error'))[:120]}]"
        err.print(msg, highlight=False, soft_wrap=True)

    doc = run_train_throughput(settings, names, dev, path, on_point=on_point, env=env)
    written = lmplots.plot_train(doc, out / "figures", path.stem) if plot else []
    err.print(lmplots.markdown_table(doc), highlight=False, soft_wrap=True)
    counts = {s: sum(p["status"] == s for p in doc["points"]) for s in ("ok", "error", "unsupported")}
    err.print(f"ok {counts['ok']}, error {counts['error']}, unsupported {counts['unsupported']}. Results: {path}"
              + (f"; {len(written)} figure files in {out / 'figures'}" if written else ""))
