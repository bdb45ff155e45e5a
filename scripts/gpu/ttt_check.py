"""GPU checks and timings of the TTT-Linear baselines (issue 6, items 4 and 5), one script, JSON to $OUT.

Correctness (item 4), fp32: `ttt-triton` against `ttt-loop` (both fp32; gate: relative error
<= 1e-5 for o and every input gradient) and both against the float64 loop, at T in {256, 4096};
bf16 `ttt-triton` against float64 (informational); `ttt-fla-chunk` (fla kernels) against its
float64 dual form (fla's mini-batch-16 form, see baselines/ttt/fla_chunk.py).
Timing (item 5), H=16, d=64: `ttt-triton` and `ttt-fla-chunk` fwd and fwd+bwd at T=2048 with
B*T=32768 (do_bench, quantiles [0.5, 0.2, 0.8]); `ttt-loop` (and `ttt-loop-simplified`) timed with
CUDA events at T in {1024, 2048}, small B and at the matched B=16, T=2048.

Run (device machine):  PYTHONUNBUFFERED=1 python3 scripts/gpu/ttt_check.py
CPU smoke test:        TRITON_INTERPRET=1 python scripts/gpu/ttt_check.py --smoke
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import time
import traceback

import torch

from prismbench.baselines.ttt.fla_chunk import ttt_linear_fla_chunk
from prismbench.baselines.ttt.fused import ttt_linear_fused
from prismbench.baselines.ttt.naive import (make_ttt_inputs, make_ttt_simplified_inputs, ttt_linear_loop,
                                            ttt_linear_simplified_loop)

#: gate of item 4: ttt-triton vs ttt-loop, both fp32
TOL_TRITON_VS_LOOP_FP32 = 1e-5
NAMES = ("q", "k", "v", "eta", "gamma", "beta", "W0", "b0")


def rel(a, b):
    a, b = a.double(), b.double()
    if not torch.isfinite(a).all():
        return float("nan")
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def run_with_grads(fn, x, do):
    leaves = [x[n] for n in NAMES]
    o = fn(**x)
    grads = torch.autograd.grad(o, leaves, do)
    return [o.detach()] + [g.detach() for g in grads]


def loop_fn(**x):
    return ttt_linear_loop(**x)[0]


def inputs(B, T, H, D, seed, dtype, dev):
    return make_ttt_inputs(B, T, H, D, seed=seed, dtype=dtype, device=dev, requires_grad=True)


def cast(x, dtype):
    return {n: t.detach().to(dtype).requires_grad_(True) for n, t in x.items()}


def check_triton(B, T, H, D, seed, dev):
    x32 = inputs(B, T, H, D, seed, torch.float32, dev)
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    do = torch.randn(B, T, H, D, generator=gen).to(dev)
    t0 = time.time()
    lp32 = run_with_grads(loop_fn, x32, do)
    lp64 = run_with_grads(loop_fn, cast(x32, torch.float64), do.double())
    keys = ("o",) + tuple("d" + n for n in NAMES)
    out = dict(check="ttt-triton vs ttt-loop (fp32), mini-batch 1", shape=dict(B=B, T=T, H=H, D=D), seed=seed,
               tol=TOL_TRITON_VS_LOOP_FP32, loop_fp32_vs_fp64={k: rel(b, c) for k, b, c in zip(keys, lp32, lp64)})
    passed = True
    for prefetch in (True, False):
        tri = run_with_grads(lambda **x: ttt_linear_fused(**x, prefetch=prefetch), x32, do)
        tri_bf = run_with_grads(lambda **x: ttt_linear_fused(**x, prefetch=prefetch),
                                cast(x32, torch.bfloat16), do.bfloat16())
        rows = {k: dict(triton_vs_loop_fp32=rel(a, b), triton_vs_loop_fp64=rel(a, c),
                        triton_bf16_vs_loop_fp64=rel(e, c))
                for k, a, b, c, e in zip(keys, tri, lp32, lp64, tri_bf)}
        worst = max(r["triton_vs_loop_fp32"] for r in rows.values())
        ok = all(r["triton_vs_loop_fp32"] <= TOL_TRITON_VS_LOOP_FP32 for r in rows.values())   # NaN fails
        passed = passed and ok
        out[f"prefetch={prefetch}"] = dict(worst_triton_vs_loop_fp32=worst, passed=bool(ok), errors=rows)
    out["passed"] = bool(passed)
    out["seconds"] = round(time.time() - t0, 1)
    return out


def check_fla(B, T, H, D, seed, dev):
    out = dict(check="ttt-fla-chunk (fla kernels) vs its float64 dual form, mini-batch 16",
               shape=dict(B=B, T=T, H=H, D=D), seed=seed, errors={})
    x32 = inputs(B, T, H, D, seed, torch.float32, dev)
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    do = torch.randn(B, T, H, D, generator=gen).to(dev)
    ref = run_with_grads(ttt_linear_fla_chunk, cast(x32, torch.float64), do.double())
    keys = ("o",) + tuple("d" + n for n in NAMES)
    for dt in (torch.float32, torch.bfloat16):
        got = run_with_grads(ttt_linear_fla_chunk, cast(x32, dt), do.to(dt))
        out["errors"][str(dt).split(".")[-1]] = {k: rel(a, b) for k, a, b in zip(keys, got, ref)}
    return out


def bench(fn, quantiles=(0.5, 0.2, 0.8)):
    from triton.testing import do_bench
    return do_bench(fn, quantiles=list(quantiles), warmup=50, rep=300)


def time_events(fn, warm=1, reps=2):
    for _ in range(warm):
        fn()
    torch.cuda.synchronize()
    ts = []
    for _ in range(reps):
        s, e = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        s.record()
        fn()
        e.record()
        torch.cuda.synchronize()
        ts.append(s.elapsed_time(e))
    return sorted(ts)


def fwd_and_fwdbwd(fn, x):
    leaves = [x[n] for n in NAMES]

    def fwd():
        with torch.no_grad():
            fn(**x)

    def fwdbwd():
        o = fn(**x)
        torch.autograd.grad(o, leaves, torch.ones_like(o))
    return fwd, fwdbwd


def fla_raw(q, k, v, eta, gamma, beta, W0, b0):
    """fla's op as shipped (scale 1/sqrt(K), Zq + norm(Zq)), with the same initial state: the overhead
    of our corrections is the difference to `ttt-fla-chunk`."""
    from fla.ops.ttt import chunk_ttt_linear
    B, T, H, D = q.shape
    return chunk_ttt_linear(q, k, v, gamma, beta, eta.unsqueeze(-1), initial_state=W0.float()[None].expand(B, H, D, D),
                            initial_state_bias=b0.float().view(1, H, 1, D).expand(B, H, 1, D))[0]


def autotune_choice():
    from prismbench.baselines.ttt import fused
    return {k: {str(key): str(cfg) for key, cfg in getattr(fused, k).cache.items()}
            for k in ("ttt_linear_fwd_kernel", "ttt_linear_bwd_kernel")}


def time_kernels(B, T, H, D, dev, res):
    tokens = B * T
    for dt in (torch.bfloat16, torch.float32):
        x = inputs(B, T, H, D, 0, dt, dev)
        for name, fn in (("ttt-triton", ttt_linear_fused),
                         ("ttt-triton prefetch=False", lambda **a: ttt_linear_fused(**a, prefetch=False)),
                         ("ttt-fla-chunk", ttt_linear_fla_chunk),
                         ("fla chunk_ttt_linear as is (uncorrected)", fla_raw)):
            row = dict(method=name, dtype=str(dt).split(".")[-1], B=B, T=T, H=H, D=D,
                       mini_batch=1 if name.startswith("ttt-triton") else 16)
            try:
                fwd, fwdbwd = fwd_and_fwdbwd(fn, x)
                for mode, f in (("fwd", fwd), ("fwdbwd", fwdbwd)):
                    torch.cuda.reset_peak_memory_stats()
                    ms = bench(f)
                    row[mode] = dict(ms_median=ms[0], ms_p20=ms[1], ms_p80=ms[2],
                                     ktok_s=tokens / ms[0], peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
            except Exception as e:                                          # noqa: BLE001
                row["error"] = repr(e)[:2000]
                traceback.print_exc()
            print(json.dumps(row), flush=True)
            res["timings"].append(row)


def time_loops(shapes, H, D, dev, res, deadline):
    for name, B, T, reps in shapes:
        if time.time() > deadline:
            res["timings"].append(dict(method=name, B=B, T=T, skipped="time budget"))
            continue
        row = dict(method=name, dtype="float32", B=B, T=T, H=H, D=D, mini_batch=1, timer="cuda events, 1 warm-up",
                   reps=reps)
        try:
            if name == "ttt-loop":
                x = inputs(B, T, H, D, 0, torch.float32, dev)
                fwd, fwdbwd = fwd_and_fwdbwd(loop_fn, x)
            else:
                xs = make_ttt_simplified_inputs(B, T, H, D, seed=0, device=dev, requires_grad=True)
                leaves = list(xs.values())

                def fwd():
                    with torch.no_grad():
                        ttt_linear_simplified_loop(**xs)

                def fwdbwd():
                    o = ttt_linear_simplified_loop(**xs)[0]
                    torch.autograd.grad(o, leaves, torch.ones_like(o))
            for mode, f in (("fwd", fwd), ("fwdbwd", fwdbwd)):
                torch.cuda.reset_peak_memory_stats()
                ts = time_events(f, warm=1, reps=reps)
                med = ts[len(ts) // 2]
                row[mode] = dict(ms_all=ts, ms_median=med, ktok_s=B * T / med,
                                 peak_mem_gib=torch.cuda.max_memory_allocated() / 2**30)
        except Exception as e:                                              # noqa: BLE001
            row["error"] = repr(e)[:2000]
            traceback.print_exc()
        print(json.dumps(row), flush=True)
        res["timings"].append(row)


def machine_info():
    info = dict(python=platform.python_version(), torch=torch.__version__)
    try:
        import triton
        info["triton"] = triton.__version__
    except Exception:                                                        # noqa: BLE001
        pass
    try:
        import fla
        info["fla"] = getattr(fla, "__version__", "?")
    except Exception as e:                                                   # noqa: BLE001
        info["fla"] = repr(e)
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name()
        try:
            info["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                            capture_output=True, text=True).stdout.strip()
        except Exception:                                                    # noqa: BLE001
            pass
    try:
        info["git"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except Exception:                                                        # noqa: BLE001
        pass
    return info


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--smoke", action="store_true", help="tiny CPU run (TRITON_INTERPRET=1), no timing")
    ap.add_argument("--all-loops", action="store_true", help="also time ttt-loop at B=2 and at T=1024")
    ap.add_argument("--budget-s", type=float, default=420.0, help="stop starting new loop timings after this")
    args = ap.parse_args()
    t_start = time.time()
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    res = dict(machine=machine_info(), checks=[], timings=[], section_errors=[])
    out_dir = os.environ.get("OUT", ".")

    def save():
        with open(os.path.join(out_dir, "ttt_check.json"), "w") as f:
            json.dump(res, f, indent=1)

    def section(fn, *a):
        try:
            r = fn(*a)
            if r is not None:
                print(json.dumps(r), flush=True)
                res["checks"].append(r)
        except Exception as e:                                               # noqa: BLE001
            traceback.print_exc()
            res["section_errors"].append(dict(section=fn.__name__, args=repr(a), error=repr(e)[:2000]))
        save()

    if args.smoke:
        section(check_triton, 1, 9, 2, 12, 0, dev)
        section(check_fla, 1, 20, 2, 16, 0, dev)
    else:
        # timings first: the kernels' autotuner picks num_warps at the first call, so make it the benchmark shape
        section(time_kernels, 16, 2048, 16, 64, dev, res)
        section(check_triton, 2, 256, 4, 64, 0, dev)
        section(check_triton, 2, 256, 3, 48, 1, dev)
        section(check_triton, 1, 4096, 2, 64, 2, dev)
        section(check_fla, 2, 256, 4, 64, 3, dev)
        section(check_fla, 1, 1000, 2, 64, 4, dev)
        loops = [("ttt-loop", 16, 2048, 2), ("ttt-loop-simplified", 16, 2048, 1)]
        if args.all_loops:
            loops += [("ttt-loop", 2, 2048, 2), ("ttt-loop", 2, 1024, 2), ("ttt-loop", 16, 1024, 2)]
        section(time_loops, loops, 16, 64, dev, res, t_start + args.budget_s)
        try:
            res["autotune"] = autotune_choice()
        except Exception as e:                                               # noqa: BLE001
            res["autotune"] = repr(e)
    res["wall_s"] = round(time.time() - t_start, 1)
    save()
    print("wall", res["wall_s"], "s")


if __name__ == "__main__":
    main()
