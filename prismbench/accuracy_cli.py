"""`prismbench accuracy`: train the tiny probing models on the synthetic tasks and report accuracy.

Registered by the main CLI as `app.command("accuracy")(accuracy)`.

Writes, under `--out`:
    accuracy-<preset>.json            results (env block + one record per task, method, width, seed),
                                      saved after every run, so `--resume` continues an interrupted sweep
    accuracy-<preset>.md              the task x method table beside the paper's Table 4
    accuracy-heatmap-<preset>.png     task x method heatmap
    accuracy-width-<preset>.png       accuracy against width (when more than one width was run)

Exit codes: 0 done; 1 a run errored or a preset expectation (`Preset.expect`) failed;
2 unusable input (unknown preset, task or method; CUDA asked for but absent).

Example::

    prismbench accuracy --preset ci
    prismbench accuracy --preset paper-caption --tasks mqar,parity --methods prism,transformer --seeds 0,1,2
    prismbench accuracy --preset paper-caption --width 16,32,64 --resume --time-budget 540
    prismbench accuracy --preset paper-caption --device cuda --lockstep 27 --jobs 12   # GPU: graphs + streams
"""
from __future__ import annotations

import sys
import time
from itertools import product
from pathlib import Path
from typing import Optional

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

err = Console(stderr=True, width=None if sys.stderr.isatty() else 160)


def _fail(msg: str, code: int = 2):
    err.print(f"[bold red]error:[/] {msg}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def _split(opt: Optional[str], what: str, cast=str) -> Optional[list]:
    if opt is None:
        return None
    items = [s.strip() for s in opt.split(",") if s.strip()]
    try:
        return [cast(s) for s in items]
    except ValueError:
        _fail(f"--{what}={opt!r}: expected a comma-separated list of {cast.__name__}")


def _collect_env() -> dict:
    try:
        from prismbench.env import collect_env
    except ImportError as e:  # the env module belongs to the harness; never lose a run over it
        return {"error": f"prismbench.env unavailable: {e}"}
    return collect_env()


def accuracy(
    preset: str = typer.Option("paper-caption", "--preset", "-p",
                               help="paper-caption | authors-code | ci (SPEC section 7)."),
    tasks: Optional[str] = typer.Option(None, "--tasks", "-t", help="Comma-separated subset of the preset's tasks."),
    methods: Optional[str] = typer.Option(None, "--methods", "-m", help="Comma-separated subset of the preset's methods."),
    steps: Optional[int] = typer.Option(None, "--steps", help="Training steps (default: the preset's)."),
    seeds: Optional[str] = typer.Option(None, "--seeds", help="Comma-separated seeds (default: the preset's)."),
    width: Optional[str] = typer.Option(None, "--width", "-w",
                                        help="Comma-separated model widths for every task (default: each task's preset width)."),
    device: str = typer.Option("auto", "--device", help="auto | cpu | cuda"),
    out: Path = typer.Option(Path("results/accuracy"), "--out", "-o", help="Directory for results and figures."),
    resume: bool = typer.Option(False, "--resume", help="Keep the ok records of an existing results file and skip them."),
    time_budget: Optional[float] = typer.Option(None, "--time-budget",
                                                help="Start no new run after this many seconds (then --resume later); "
                                                     "with --lockstep, no group that would end past it, judging "
                                                     "by the longest group so far."),
    plot: bool = typer.Option(True, "--plot/--no-plot", help="Write the figures."),
    backend: Optional[str] = typer.Option(None, "--backend",
                                          help="Mixer backends, e.g. prism=triton,ttt-linear=loop,gdn=naive "
                                               "(recorded in the results' preset block)."),
    jobs: int = typer.Option(1, "--jobs", "-j",
                             help="Runs trained at once in worker processes (on the CPU, up to one per core); with "
                                  "--lockstep, the processes that generate training data. On a GPU prefer "
                                  "--lockstep: separate processes time-share the GPU instead of overlapping."),
    threads: Optional[int] = typer.Option(None, "--threads",
                                          help="CPU intra-op threads (default 1 on the CPU: the models are tiny)."),
    lockstep: int = typer.Option(0, "--lockstep",
                                 help="Train up to N runs at once in this process (grouped by method): on CUDA each "
                                      "run gets its own stream and replays a captured CUDA graph of its training "
                                      "step; --jobs then sets the processes that generate training data ahead. "
                                      "0: one run at a time per process."),
    graphs: bool = typer.Option(True, "--graphs/--no-graphs",
                                help="With --lockstep on CUDA: capture each run's training step as a CUDA graph."),
):
    """Train each method's tiny model on each synthetic task and report test accuracy (paper Table 4)."""
    import torch

    from prismbench.accuracy import plots, report
    from prismbench.accuracy.presets import get_preset
    from prismbench.accuracy.train import resolve_device, run_one

    try:
        p = get_preset(preset)
    except ValueError as e:
        _fail(str(e))
    task_list = _split(tasks, "tasks") or list(p.tasks)
    bad = [t for t in task_list if t not in p.tasks]
    if bad:
        _fail(f"--tasks: {bad} not in preset {p.name!r} (tasks: {', '.join(p.tasks)})")
    method_list = _split(methods, "methods") or list(p.methods)
    from prismbench.accuracy.presets import ALL_METHODS

    bad = [m for m in method_list if m not in ALL_METHODS]
    if bad:
        _fail(f"--methods: unknown {bad} (known: {', '.join(ALL_METHODS)})")
    if backend:
        kw = {m: dict(v) for m, v in p.mixer_kwargs.items()}
        for item in _split(backend, "backend"):
            m, _, b = item.partition("=")
            if m not in ALL_METHODS or not b:
                _fail(f"--backend: {item!r} must be METHOD=BACKEND with METHOD in {', '.join(ALL_METHODS)}")
            if m in ("transformer", "linear-attn"):
                _fail(f"--backend: {m} has a single backend")
            kw.setdefault(m, {})["backend"] = b
        p = p.model_copy(update={"mixer_kwargs": kw})
    seed_list = _split(seeds, "seeds", int) or list(p.seeds)
    width_list = _split(width, "width", int) or [None]
    if any(w is not None and w < 1 for w in width_list):
        _fail(f"--width={width!r}: widths must be >= 1")
    if steps is not None and steps < 1:
        _fail(f"--steps={steps}: must be >= 1")
    try:
        dev = resolve_device(device)
    except (ValueError, RuntimeError) as e:
        _fail(f"--device: {e}")
    n_steps = steps or p.steps
    if jobs < 1:
        _fail(f"--jobs={jobs}: must be >= 1")
    if threads is not None and threads < 1:
        _fail(f"--threads={threads}: must be >= 1")
    if lockstep < 0:
        _fail(f"--lockstep={lockstep}: must be >= 0")
    if threads is not None or dev.type == "cpu":
        torch.set_num_threads(threads or 1)

    path = out / f"accuracy-{p.name}.json"
    doc = report.new_document(_collect_env(), p.model_dump(), {
        "tasks": task_list, "methods": method_list, "seeds": seed_list, "widths": width_list,
        "steps": n_steps, "device": str(dev), "argv": sys.argv[1:],
    })
    if resume and path.exists():
        try:
            old = report.read(path)
        except (ValueError, OSError) as e:
            _fail(f"--resume: cannot read {path}: {e}")
        if old["preset"] != doc["preset"]:
            _fail(f"--resume: {path} was written with a different preset definition; use another --out")
        doc["records"] = [r for r in old["records"] if r["status"] == "ok"]
        # provenance of resumed files: every earlier invocation's commit, time and arguments
        prev = old.get("previous_invocations", []) + [
            {"git_commit": old["env"].get("git_commit"), "timestamp": old["env"].get("timestamp"),
             "gpu_name": old["env"].get("gpu_name"), "argv": (old.get("run") or {}).get("argv")}]
        doc["previous_invocations"] = prev
    done = {(r["task"], r["method"], r["width"], r["seed"], r["steps"]) for r in doc["records"]}

    runs = []
    if lockstep:  # method-major, so a lockstep group holds one method
        order = ((t, m, w, s) for m, t, w, s in product(method_list, task_list, width_list, seed_list))
    else:
        order = product(task_list, method_list, width_list, seed_list)
    for t, m, w, s in order:
        wid = p.tasks[t].width if w is None else w
        if (t, m, wid, s, n_steps) not in done:
            runs.append((t, m, wid, s))
    err.print(f"[bold]prismbench accuracy[/]: preset {p.name}, {len(runs)} run(s) of {n_steps} steps on {dev}"
              + (f" ({len(done)} already done)" if done else ""), highlight=False)

    t_start = time.perf_counter()
    def over_budget(ahead: float = 0.0) -> bool:
        return time_budget is not None and time.perf_counter() - t_start + ahead > time_budget

    stopped = 0
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=err, transient=False) as prog:
        overall = prog.add_task("runs", total=len(runs))

        def record(rec):
            rec.setdefault("git_commit", doc["env"].get("git_commit"))  # a resumed file mixes invocations
            doc["records"].append(rec)
            report.write(doc, path)
            acc = f"{rec['accuracy']:.3f}" if rec["accuracy"] is not None else rec["status"]
            prog.console.print(f"  {rec['task']:<18} {rec['method']:<12} D={rec['width']:<4} seed={rec['seed']}: {acc}"
                               + (f"  [yellow]{rec['reason']}[/]" if rec["reason"] else ""), highlight=False)
            prog.advance(overall)

        if lockstep:
            _run_lockstep(p, runs, n_steps, dev, lockstep, jobs, graphs, over_budget, prog, record)
        elif jobs == 1:
            for t, m, w, s in runs:
                if over_budget():
                    break
                bar = prog.add_task(f"{t} {m} D={w} seed={s}", total=n_steps)
                rec = run_one(p, t, m, w, s, steps=n_steps, device=str(dev),
                              on_step=lambda k, b=bar: prog.update(b, completed=k))
                prog.remove_task(bar)
                record(rec)
                if dev.type == "cuda":
                    torch.cuda.empty_cache()
        else:
            import multiprocessing as mp
            from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait

            todo = list(runs)
            with ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init,
                                     initargs=(threads or 1,)) as pool:
                live = set()
                while todo or live:
                    while todo and len(live) < jobs and not over_budget():
                        t, m, w, s = todo.pop(0)
                        live.add(pool.submit(run_one, p, t, m, w, s, steps=n_steps, device=str(dev)))
                    if not live:
                        break
                    fin, live = wait(live, return_when=FIRST_COMPLETED)
                    for f in fin:
                        record(f.result())
        stopped = len(runs) - int(prog.tasks[overall].completed)
    report.write(doc, path)

    table = report.markdown_table(doc)
    (out / f"accuracy-{p.name}.md").write_text(table)
    if plot and any(r["status"] == "ok" for r in doc["records"]):
        plots.heatmap(doc, out / f"accuracy-heatmap-{p.name}.png")
        if len({r["width"] for r in doc["records"]}) > 1:
            plots.accuracy_vs_width(doc, out / f"accuracy-width-{p.name}.png")
    _print_summary(doc)
    err.print(f"wrote {path}", highlight=False)

    code = 0
    if stopped:
        err.print(f"[yellow]--time-budget reached: {stopped} run(s) not started; rerun with --resume.[/]")
    errors = [r for r in doc["records"] if r["status"] == "error"]
    if errors:
        err.print(f"[red]{len(errors)} run(s) failed[/] (see `reason` in {path})")
        code = 1
    # expectations hold for the preset's own budget only (a --steps override is exploratory)
    cells = report.summarize(r for r in doc["records"] if r["steps"] == p.steps)
    for t, per in p.expect.items():
        for m, need in per.items():
            got = [c for (tt, mm, _), c in cells.items() if tt == t and mm == m]
            if not got:
                continue  # not run in this invocation
            for c in got:
                if c["mean"] is None or c["mean"] < need:
                    err.print(f"[red]expectation failed[/]: {m} on {t} reached {c['mean']} < {need}")
                    code = 1
    if code:
        raise typer.Exit(code)


def _run_lockstep(p, runs, n_steps, dev, lockstep, jobs, graphs, over_budget, prog, record) -> None:
    """Groups of up to `lockstep` runs of one method, trained together (`train.run_group`); the training data
    of each (task, seed) is generated once, by `jobs` worker processes ahead of the groups that need it."""
    import functools
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor

    from prismbench.accuracy.train import run_group, train_data

    groups, cur = [], []
    for r in runs:
        if cur and (len(cur) == lockstep or cur[-1][1] != r[1]):
            groups.append(cur)
            cur = []
        cur.append(r)
    if cur:
        groups.append(cur)
    pool = None
    if jobs > 1:  # every (task, seed)'s data submitted at once, in the order the groups need it
        pool = ProcessPoolExecutor(jobs, mp_context=mp.get_context("spawn"), initializer=_worker_init, initargs=(1,))
        futures = {key: pool.submit(train_data, p, key[0], key[1], n_steps)
                   for key in dict.fromkeys((t, s) for t, _, _, s in runs)}
        data = lambda t, s, n: futures[(t, s)].result()  # noqa: E731
    else:  # generated here, once per (task, seed): every method trains on the same batches
        data = functools.lru_cache(maxsize=None)(lambda t, s, n: train_data(p, t, s, n))

    try:
        longest = 0.0
        for g in groups:
            if over_budget(longest):  # a group would not finish in the budget, judging by the longest so far
                break
            t0 = time.perf_counter()
            bar = prog.add_task(f"{len(g)} x {g[0][1]} (lockstep)", total=n_steps)
            recs = run_group(p, g, steps=n_steps, device=str(dev), graphs=graphs, data=data,
                             on_step=lambda k, b=bar: prog.update(b, completed=k))
            prog.remove_task(bar)
            longest = max(longest, time.perf_counter() - t0)
            for rec in recs:
                record(rec)
            if dev.type == "cuda":
                import torch

                torch.cuda.empty_cache()
    finally:
        if pool is not None:
            pool.shutdown(cancel_futures=True)


def _worker_init(threads: int) -> None:
    import torch

    torch.set_num_threads(threads)


def _print_summary(doc: dict) -> None:
    from prismbench.accuracy import report
    from prismbench.accuracy.presets import ALL_METHODS, PAPER_TABLE4

    cells = report.summarize(doc["records"])
    methods = report._order((r["method"] for r in doc["records"]), list(ALL_METHODS))
    tab = Table(title=f"accuracy ({doc['preset']['name']})")
    tab.add_column("task (D)")
    for m in methods:
        tab.add_column(m, justify="right")
    tab.add_column("paper T/LA/PRISM", justify="right")
    for (t, w) in dict.fromkeys((k[0], k[2]) for k in cells):
        row = [f"{t} ({w})"]
        for m in methods:
            c = cells.get((t, m, w))
            row.append("" if c is None else ("n/a" if c["mean"] is None else f"{c['mean']:.3f}"))
        paper = PAPER_TABLE4.get(t)
        row.append("/".join(f"{paper[k]:.2f}" for k in ("transformer", "linear-attn", "prism")) if paper else "")
        tab.add_row(*row)
    Console(width=None if sys.stdout.isatty() else 160).print(tab)
