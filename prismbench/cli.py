"""`prismbench` command line: run, plot, env, methods (and the commands other modules add).

Exit codes: 0 success; 1 a gate or check failed; 2 unusable input (bad bench.toml, unknown method,
unreadable results file, a GPU preset on a machine without a GPU).
"""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="prismbench: PRISM kernels vs TTT, GLA and peers: throughput, memory, error.")
# wide tables when the output is a file or a CI log (rich falls back to 80 columns there)
err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _out_console() -> Console:
    return Console(width=None if sys.stdout.isatty() else 160)


def _fail(msg: str, code: int = 2) -> None:
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _pick_device(device: str):
    import torch

    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cuda" and not torch.cuda.is_available():
        _fail("--device cuda: no CUDA GPU is available here")
    if device not in ("cpu", "cuda"):
        _fail(f"--device={device!r}: use auto, cpu or cuda")
    return torch.device(device)


def _scalar(text: str):
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def _parse_sets(sets: list[str]) -> dict:
    """`--set KEY=V[,V...]` options as sweep-field overrides (ints, floats, else strings; a list if a comma)."""
    out = {}
    for item in sets:
        key, eq, val = item.partition("=")
        if not eq or not key.strip() or not val.strip():
            _fail(f"--set {item!r}: expected KEY=VALUE or KEY=V1,V2 (e.g. --set T=2048,4096)")
        vals = [_scalar(v.strip()) for v in val.split(",") if v.strip()]
        out[key.strip()] = vals if "," in val else vals[0]
    return out


@app.command()
def run(
    config: Path = typer.Option(Path("bench.toml"), "--config", "-c", help="bench.toml to read."),
    preset: Optional[str] = typer.Option(None, "--preset", "-p", help="Named preset (presets.NAME)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    out: Path = typer.Option(Path("results"), "--out", "-o", help="Directory for results and figures."),
    methods: Optional[str] = typer.Option(
        None, "--methods", "-m",
        help="Comma-separated methods to run at the preset's shapes (default: the preset's methods)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results document to stdout."),
    resume: bool = typer.Option(False, "--resume", help="Skip points already measured in the results file."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write figures after the sweep."),
    sets: Optional[list[str]] = typer.Option(
        None, "--set", help="Override a sweep field of the preset, e.g. --set T=16384 --set L=1,3 (repeatable)."),
    check: Optional[bool] = typer.Option(None, "--check/--no-check",
                                         help="Measure errors against the float64 reference "
                                              "(default: the check.rel_err setting)."),
):
    """Sweep the methods over the shapes of bench.toml (or a preset); write results JSON and figures."""
    from prismbench import config as cfgmod
    from prismbench import env as envmod
    from prismbench import plots, results, runner

    dev = _pick_device(device)
    overrides = _parse_sets(sets or [])
    try:
        bench = cfgmod.load(config)
        if preset is None and dev.type == "cpu" and cfgmod.resolve(bench, None, str(config)).device == "cuda":
            if "smoke" not in bench.get("presets", {}):
                _fail(f"{config}: [sweep] is for a GPU, there is none here, and there is no "
                      f"`presets.smoke` to fall back to")
            preset = "smoke"
            err.print("[yellow]No GPU: running the `smoke` preset on the CPU "
                      "(pass --preset to choose another).[/]")
        cfg = cfgmod.resolve(bench, preset, str(config), overrides)
    except cfgmod.ConfigError as e:
        _fail(str(e))
    if check is not None:
        cfg = cfg.model_copy(update={"check": cfg.check.model_copy(update={"rel_err": check})})
    if cfg.device == "cuda" and dev.type != "cuda":
        _fail(f"preset {preset or '[sweep]'} is for a GPU (device = \"cuda\") and this run is on the CPU; "
              f"use --preset smoke")
    if cfg.device == "cpu" and dev.type != "cpu":
        err.print(f"[yellow]preset {preset} is sized for the CPU; running it on {dev} anyway.[/]")
    only = None
    if methods is not None:
        only = [m.strip() for m in methods.split(",") if m.strip()]
        if not only:
            _fail(f"--methods={methods!r} names no method")
    try:
        meths = runner.resolve_methods(cfg, only)
    except KeyError as e:
        _fail(str(e.args[0]))
    if only and cfg.methods != "all":
        extra = [m for m in only if m not in cfg.methods]
        if extra:
            err.print(f"[yellow]--methods: {', '.join(extra)} not in preset {preset or '[sweep]'}'s methods; "
                      f"running at its shapes anyway.[/]")
    specs = runner.expand(cfg, meths, dev)
    env = envmod.collect_env()
    path = out / f"{preset or 'sweep'}-{envmod.device_slug(env, dev.type)}.json"
    resolved = {"preset": preset, "source": str(config), **cfg.model_dump()}
    resolved["methods"] = [m.name for m in meths]
    keys: frozenset = frozenset()
    if resume and path.exists():
        try:
            doc = results.read(path)
        except results.ResultsError as e:
            _fail(f"--resume: {e}")
        changed = [k for k in envmod.RESUME_KEYS if doc["env"].get(k) != env.get(k)]
        if changed:
            _fail("--resume: " + "; ".join(f"{k} was {doc['env'].get(k)!r}, now {env.get(k)!r}" for k in changed)
                  + f". Points measured under other conditions do not mix: run without --resume "
                    f"(the old file is kept as {path.with_suffix('.prev.json').name}).")
        keys = runner.resumable_keys(doc)
        env["resumed_from"] = doc["env"].get("timestamp")
        doc["env"] = {**env, "first_timestamp": doc["env"].get("first_timestamp", doc["env"].get("timestamp"))}
        old_methods = (doc.get("config") or {}).get("methods") or []
        resolved["methods"] = list(dict.fromkeys(list(old_methods) + resolved["methods"]))
        doc["config"] = resolved
        err.print(f"Resuming {path}: {len(keys)} point(s) already measured.")
    else:
        if path.exists():
            prev = path.with_suffix(".prev.json")
            path.replace(prev)
            err.print(f"Previous results moved to {prev}")
        doc = results.new_document(env, resolved)
    err.print(f"{len(specs)} points, {len(meths)} methods on {env.get('gpu_name') or 'CPU'} -> {path}")
    counts = {"ok": 0, "error": 0, "unsupported": 0, "skipped": 0}
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=err, transient=False) as bar:
        task = bar.add_task("sweep", total=len(specs))

        def on_point(spec, rec):
            if rec is None:
                counts["skipped"] += 1
            else:
                counts[rec["status"]] += 1
                if rec["status"] == "error":
                    bar.console.print(f"[red]error[/] {spec.label()}: {rec['error']}", highlight=False)
            bar.update(task, advance=1, description=spec.label()[:60])

        try:
            doc = runner.run_sweep(cfg, specs, doc, path, keys, on_point)
        except KeyboardInterrupt:
            bar.stop()
            err.print(f"[yellow]Interrupted. The points measured so far are in {path}; "
                      f"rerun with --resume to continue.[/]")
            raise typer.Exit(130)
    written = plots.plot_all(doc, out / "figures", plots.stem_of(path)) if plot else []
    _summary(doc, specs)
    err.print(f"ok {counts['ok']}, error {counts['error']}, unsupported {counts['unsupported']}, "
              f"skipped (resume) {counts['skipped']}. Results: {path}"
              + (f"; {len(written)} figure files in {out / 'figures'}" if written else ""))
    if as_json:
        sys.stdout.write(results.dumps(doc) + "\n")


def _fmt(x, spec: str) -> str:
    return "-" if x is None else format(x, spec)


def _summary(doc: dict, specs) -> None:
    from prismbench import results

    keys = {s.key() for s in specs}
    t = Table(title="prismbench results", show_lines=False)
    for c in ("method", "mode", "dtype", "B", "T", "H", "K", "L", "median ms", "p20-p80 %", "ktok/s", "peak MiB",
              "max rel err", "status"):
        t.add_column(c, justify="right" if c not in ("method", "mode", "dtype", "status") else "left")
    noisy = []
    for p in doc["points"]:
        if results.point_key(p) not in keys:
            continue
        spread = results.spread(p)
        if spread is not None and spread > results.NOISY_SPREAD:
            noisy.append(f"{p['method']} {p['mode']} T={p['T']}" + ("" if p["L"] is None else f" L={p['L']}")
                         + f" ({spread:.0%})")
        errs = [results.as_float(v) for v in (p.get("rel_err") or {}).values() if v is not None]
        worst = max(errs, key=lambda v: (v != v, v)) if errs else None
        status = p["status"] if p["status"] == "ok" else f"{p['status']}: {str(p.get('error'))[:40]}"
        t.add_row(p["method"], p["mode"], p["dtype"], str(p["B"]), str(p["T"]), str(p["H"]), str(p["K"]),
                  "" if p["L"] is None else str(p["L"]), _fmt(p.get("median_ms"), ".3f"),
                  _fmt(None if spread is None else 100 * spread, ".1f"),
                  _fmt(None if p.get("tokens_per_s") is None else p["tokens_per_s"] / 1e3, ",.1f"),
                  _fmt(None if p.get("peak_mem_bytes") is None else p["peak_mem_bytes"] / 2**20, ",.1f"),
                  _fmt(worst, ".1e"), status)
    err.print(t)
    if noisy:
        err.print(f"[yellow]{len(noisy)} point(s) spread over {results.NOISY_SPREAD:.0%} of their median between "
                  f"p20 and p80, i.e. were likely disturbed while timed: {'; '.join(noisy[:8])}"
                  + (f"; and {len(noisy) - 8} more" if len(noisy) > 8 else "")
                  + ". Their medians are less reliable; measure them again (-m and --set pick them).[/]",
                  highlight=False)


@app.command()
def plot(
    results_file: Path = typer.Argument(..., help="A results JSON written by `prismbench run`."),
    out: Optional[Path] = typer.Option(None, "--out", "-o", help="Directory (default: <results dir>/figures)."),
):
    """Regenerate the figures of a results file."""
    from prismbench import plots, results

    try:
        written = plots.plot_file(results_file, out)
    except results.ResultsError as e:
        _fail(str(e))
    if not written:
        err.print("[yellow]no successful points to plot[/]")
    for p in written:
        typer.echo(str(p))


@app.command()
def merge(
    files: list[Path] = typer.Argument(..., help="Two or more results JSON files of the same machine type."),
    out: Path = typer.Option(..., "--out", "-o", help="The merged results file to write."),
    max_spread: Optional[float] = typer.Option(
        None, "--max-spread", min=0.0,
        help="A point whose p20-p80 spread is above this fraction of its median does not replace one within it."),
):
    """Merge results files of one machine type and software into one (later files win on shared points)."""
    from prismbench import results

    try:
        doc = results.merge([results.read(f) for f in files], [str(f) for f in files], max_spread)
    except results.ResultsError as e:
        _fail(str(e))
    results.write(doc, out)
    n = {s: sum(p["status"] == s for p in doc["points"]) for s in results.STATUSES}
    err.print(f"{len(doc['points'])} points ({', '.join(f'{v} {k}' for k, v in n.items())}) "
              f"from {len(files)} files -> {out}")


@app.command()
def env(as_json: bool = typer.Option(False, "--json", help="Print as JSON.")):
    """Print the environment block recorded with every result."""
    from prismbench.env import collect_env

    e = collect_env()
    if as_json:
        typer.echo(json.dumps(e, indent=1))
        return
    t = Table(show_header=False)
    for k, v in e.items():
        t.add_row(k, str(v))
    _out_console().print(t)


@app.command("methods")
def list_methods():
    """List the registered methods."""
    from prismbench import registry

    t = Table(title="registered methods")
    for c in ("name", "family", "backend", "devices", "dtypes", "uses L", "reference"):
        t.add_column(c)
    for name, m in sorted(registry.all_methods().items()):
        t.add_row(name, m.family, m.backend, ",".join(m.devices), ",".join(m.dtypes),
                  "yes" if m.uses_L else "", m.reference or "")
    _out_console().print(t)


from prismbench.gate import gate as _gate_cmd  # noqa: E402
from prismbench.accuracy_cli import accuracy as _accuracy_cmd  # noqa: E402

app.command("gate")(_gate_cmd)
app.command("accuracy")(_accuracy_cmd)

from prismbench.lm.cli import train_throughput as _tt
app.command("train-throughput")(_tt)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
