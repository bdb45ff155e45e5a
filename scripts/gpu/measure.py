"""Timing and error helpers shared by the GPU scripts (run as `python3 scripts/gpu/<script>.py`, so this
directory is on sys.path)."""
from __future__ import annotations

import argparse
import json
import os
import time

import torch
import triton
from torch.profiler import ProfilerActivity, profile

# PRISM_CHECK_DRYRUN=1: a CPU dry run under the Triton interpreter (tiny shapes, wall-clock times; tests the script)
DRY = os.environ.get("PRISM_CHECK_DRYRUN") == "1"
DEV = torch.device("cpu" if DRY else "cuda")
DTYPE = torch.float32 if DRY else torch.bfloat16
# T, H, K, chunk, tokens of the one-shape PRISM sweeps (T=2048 at the perf shape; tiny for a dry run)
SWEEP_SHAPE = (37, 2, 16, 16, 74) if DRY else (2048, 16, 64, 64, 32768)


def sweep_start():
    """The one-shape sweeps' start: (out, res, B, T, H, K, BT) with out = `out_dir()`, SWEEP_SHAPE (B from its token
    budget) and res = `result_header` naming that shape."""
    T, H, K, BT, tokens = SWEEP_SHAPE
    B = tokens // T
    return out_dir(), result_header(shape=dict(B=B, T=T, H=H, K=K, BT=BT)), B, T, H, K, BT


def forward_states(k, v, u, p, beta, g, BT):
    """chunk_prism's forward prep and state pass at the module's current settings: (gc, W, Ub, Sw, Tr, hs, V1)."""
    from prismbench.kernels.prism import chunk as pc

    gc, w, ub, sw, tr, _ = pc.prism_fwd_prep(k, v, u, p, beta, g, BT)
    hs, vnew, _ = pc.prism_fwd_h(k, w, ub, sw, gc, BT)
    return gc, w, ub, sw, tr, hs, vnew


def prism_fwd_bwd(x, do, BT):
    """The output and every input gradient of one chunk_prism forward + backward (autograd, as the harness times it)
    of the inputs x (q, k, v, u, p, beta, g), output gradient do, chunk BT."""
    from prismbench.kernels.prism.chunk import chunk_prism

    leaves = [t.detach().requires_grad_(True) for t in x]
    o = chunk_prism(*leaves, chunk_size=BT)[0]
    return (o, *torch.autograd.grad(o, leaves, do))


def each_in_child(script: str, settings: list, out: str, name: str, env_for=lambda spec: {}, timeout: int = 100):
    """Runs `python3 script --one SPEC` for each spec in a child process of its own (a fault poisons only that child's
    CUDA context), with os.environ updated by env_for(spec); each child's last JSON line on stdout is its row (else a
    row with its return code and stderr's tail, or the timeout). Prints each row and rewrites $out/name.json with the
    rows so far after each child. Returns the rows."""
    import subprocess
    import sys

    os.makedirs(out, exist_ok=True)
    rows = []
    for spec in settings:
        try:
            r = subprocess.run([sys.executable, script, "--one", spec], capture_output=True, text=True,
                               env=dict(os.environ, **env_for(spec)), timeout=timeout,
                               cwd=os.path.dirname(os.path.abspath(script)))
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            row = json.loads(lines[-1]) if lines else dict(setting=spec, ok=False, rc=r.returncode,
                                                           error=r.stderr[-1500:])
        except subprocess.TimeoutExpired:
            row = dict(setting=spec, ok=False, error=f"timeout {timeout} s")
        rows.append(row)
        print(json.dumps(row)[:700], flush=True)
        with open(os.path.join(out, name), "w") as f:
            json.dump(rows, f, indent=1)
    return rows


def as_json(settings: dict) -> dict:
    """Module settings as JSON values (tuples as lists)."""
    return {n: list(v) if isinstance(v, tuple) else v for n, v in settings.items()}


def settings_variant(module, base: dict, settings: dict, call, ref, names, diff_key: str, extra=None):
    """One variant of a sweep over a module's settings: sets the module's attributes to base updated by settings,
    runs call() once (its outputs and gradients: `got`), records each one's max_rel_diff against ref's (against got
    itself when ref is None) under diff_key and the median ms of call under "ms_fwd_bwd", then extra(fields) if
    given, all under those settings; base is put back afterwards. A variant that fails is a result: its fields get
    "error". Returns (fields, got, or None after an error)."""
    fields, got = {}, None
    for n, val in {**base, **settings}.items():
        setattr(module, n, val)
    try:
        got = call()
        fields[diff_key] = {n: max_rel_diff([a], [b]) for n, a, b in zip(names, got, got if ref is None else ref)}
        fields["ms_fwd_bwd"] = median_ms(call, DRY)
        if extra is not None:
            extra(fields)
    except Exception as e:  # noqa: BLE001  (a variant that fails is a result)
        fields["error"] = repr(e)[:400]
    finally:
        for n, val in base.items():
            setattr(module, n, val)
    return fields, got


def out_dir() -> str:
    """The script's --out folder (default $OUT, else ./out)."""
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    return ap.parse_args().out


def result_header(**extra) -> dict:
    """A results dict: the device, the commit that ran (PRISMBENCH_GIT_COMMIT), `extra`, and an empty `rows`."""
    return dict(device="cpu (interpreter)" if DRY else torch.cuda.get_device_name(),
                git_commit=os.environ.get("PRISMBENCH_GIT_COMMIT"), **extra, rows=[])


def write_json(res, out: str, name: str) -> None:
    """Write res to out/name (indented JSON), creating out."""
    os.makedirs(out, exist_ok=True)
    with open(os.path.join(out, name), "w") as f:
        json.dump(res, f, indent=1)


def row_writer(res: dict, out: str, name: str, show=lambda row: row):
    """add(row): appends row to res["rows"], prints show(row) as one JSON line and rewrites out/name, so a call cut
    off by its time limit keeps every row measured before."""
    def add(row):
        res["rows"].append(row)
        print(json.dumps(show(row)), flush=True)
        write_json(res, out, name)
    return add


def median_ms(fn, dry: bool = False) -> float:
    """do_bench's median in ms (quantiles 0.5 / 0.2 / 0.8, warmup 25, rep 100); dry (CPU dry run under the
    interpreter): one warm call, then the wall clock of one more (tests the code path only)."""
    if dry:
        fn()
        t0 = time.perf_counter()
        fn()
        return (time.perf_counter() - t0) * 1e3
    return triton.testing.do_bench(fn, warmup=25, rep=100, quantiles=[0.5, 0.2, 0.8])[0]


def rel(x: torch.Tensor, ref: torch.Tensor) -> float:
    """||x - ref|| / ||ref|| in float64; NaN if x is not finite."""
    x, ref = x.detach().double(), ref.detach().double()
    if not torch.isfinite(x).all():
        return float("nan")
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def max_rel_diff(xs, refs) -> float:
    """Largest over pairs of max|x - ref| / max|ref| in float64 (how far a variant's outputs are from the defaults';
    a None in xs is skipped)."""
    out = 0.0
    for x, ref in zip(xs, refs):
        if x is None:
            continue
        x, ref = x.detach().double(), ref.detach().double()
        out = max(out, ((x - ref).abs().max() / ref.abs().max().clamp_min(1e-30)).item())
    return out


PRISM_GRAD_NAMES = ("o", "q", "k", "v", "u", "p", "beta", "g")


def rel_diffs(got, ref, names=PRISM_GRAD_NAMES) -> dict:
    """max_rel_diff per named pair: {name: max|got - ref| / max|ref|} (prism_fwd_bwd's output and gradients by
    default)."""
    return {n: max_rel_diff([a], [b]) for n, a, b in zip(names, got, ref)}


def child_main(script: str, one, settings: list, name: str, env_for=lambda spec: {}) -> str | None:
    """The command line of a one-setting-per-process diagnostic: `script --one SPEC` prints one(SPEC) as a JSON line
    (what each child runs); otherwise each_in_child over --settings "A;B;..." (default: settings) into --out (default
    $OUT or "out") as name. Returns the output folder (None for --one)."""
    import sys

    argv = sys.argv
    if "--one" in argv:
        print(json.dumps(one(argv[argv.index("--one") + 1])), flush=True)
        return None
    out = argv[argv.index("--out") + 1] if "--out" in argv else os.environ.get("OUT", "out")
    settings = argv[argv.index("--settings") + 1].split(";") if "--settings" in argv else settings
    each_in_child(script, settings, out, name, env_for=env_for)
    return out


def kernel_times(fn, n: int = 20, dry: bool = False, top: int = 14) -> dict:
    """CUDA time per kernel name (us per call) over n calls of fn, the `top` largest first (torch.profiler); empty on a
    CPU dry run."""
    acts = [ProfilerActivity.CPU] + ([] if dry else [ProfilerActivity.CUDA])
    with profile(activities=acts) as prof:
        for _ in range(n):
            fn()
        if not dry:
            torch.cuda.synchronize()
    out = {}
    for e in prof.key_averages():
        t = getattr(e, "device_time_total", 0) if not dry else 0
        if t > 0:
            out[e.key[:90]] = round(t / n, 2)
    return dict(sorted(out.items(), key=lambda kv: -kv[1])[:top])


def prism_tensors(B: int, T: int, H: int, K: int, L: int, seed: int, dtype=None) -> tuple:
    """Detached PRISM kernel inputs (q, k, v, u, p, beta, g) on DEV in dtype (default DTYPE), K = V
    (make_prism_inputs)."""
    from prismbench.kernels.prism.inputs import make_prism_inputs
    from prismbench.registry import Shape

    x = make_prism_inputs(Shape(B, T, H, K, K, L, dtype or DTYPE, DEV), seed)
    return tuple(x[n].detach() for n in ("q", "k", "v", "u", "p", "beta", "g"))


def float64_slice(x: tuple) -> list:
    """(q, k, v, u, p, beta, g) cut to batch 1 and heads 2 (k, p and beta keep their leading L axis), contiguous: a
    slice small enough for the float64 token loop `naive_recurrent_prism`."""
    lead = (False, True, False, False, True, True, False)   # k, p, beta carry the L axis
    return [(t[:, :1, :, :2] if ld else t[:1, :, :2]).contiguous() for t, ld in zip(x, lead)]


def tr_zero_filled(k1, g2, beta1, BT):
    """Version 7's Tr buffer for `chunk._fla_fused_kkt_solve` (same signature): torch.zeros, then fla's fused kkt +
    solve kernel (GPU only: under the interpreter `_tr_fla` uses the torch stand-ins and never calls it)."""
    from prismbench.kernels.prism import chunk as pc

    B, T, H, _ = k1.shape
    tr = torch.zeros(B, T, H, BT, device=k1.device, dtype=torch.float32)
    pc._fla_kkt_solve_launch(k1, g2, beta1, tr, BT)
    return tr
