#!/usr/bin/env python3
"""GPU check of the PRISM Triton kernel (issue 5 items 3 and 4): correctness, then timings.

1. Correctness, bf16 inputs: o, final state and every gradient (q, k, v, u, p, beta, g, initial_state)
   against a float64 reference on the same inputs (token loop `naive_recurrent_prism` up to T=1000,
   chunked `chunk_prism_torch` above), relative error ||x - ref|| / ||ref||, limit 5e-3; grid
   T in {64, 1000, 4096, 16384} x L in {1, 3} x K=V in {64, 128} x seeds.
2. Timings (bf16, H=16, K=V=64, B*T=32768, T in {2048, 8192}), do_bench median with
   quantiles [0.5, 0.2, 0.8]: PRISM L=1 and L=3 fwd and fwd+bwd beside fla chunk_gla (fwd, fwd+bwd),
   chunk_gated_delta_rule (fwd) and chunk_gated_delta_product n=3 (fwd), all in this process; peak memory
   of one fwd+bwd (total, and above the inputs); per-phase PRISM kernel times; for information PRISM at
   chunk 32 and at K=V=128.
3. A short table of the ratios last (issue 5 targets).

PRISM_BUDGET_S: sections that would start past this many seconds are skipped (in priority order: K=64
correctness, PRISM timings, K=128 correctness at T=1000, per-kernel phases with a num_warps sweep, fla
peers at T=2048 then 8192, the rest). Extract .carry/autotune-cache.tgz into ~/.triton/cache first and
export TRITON_CACHE_AUTOTUNING=1, or fla's first calls autotune for minutes.

Writes $OUT/prism_triton_check.json (rewritten after every section, so a timeout keeps what ran).
Usage: PYTHONUNBUFFERED=1 python3 scripts/gpu/prism_triton_check.py [--quick] [--no-correct] [--no-perf]
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
import triton

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.chunk import chunk_prism
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.kernels.prism.naive import chunk_prism_torch, naive_recurrent_prism
from prismbench.registry import Shape

TOL_BF16 = 5e-3
NAMES = ("q", "k", "v", "u", "p", "beta", "g")
QUANT = [0.5, 0.2, 0.8]
# PRISM_CHECK_DRYRUN=1: run the correctness section on the CPU (Triton interpreter) at tiny sizes, to test
# this script without a GPU.
DRY = os.environ.get("PRISM_CHECK_DRYRUN") == "1"
DEV = torch.device("cpu" if DRY else "cuda")
T0 = time.time()
BUDGET_S = float(os.environ.get("PRISM_BUDGET_S", "1e9"))   # skip what would start after this many seconds


def left():
    """Seconds left of the budget."""
    return BUDGET_S - (time.time() - T0)


def rel(x, ref):
    x, ref = x.detach().double(), ref.detach().double()
    if not torch.isfinite(x).all():
        return float("nan")
    return ((x - ref).norm() / ref.norm().clamp_min(1e-30)).item()


def meta():
    m = dict(device=torch.cuda.get_device_name() if not DRY else "cpu (dry run)", torch=torch.__version__, triton=triton.__version__,
             python=platform.python_version(), date=time.strftime("%Y-%m-%d %H:%M:%S"))
    try:
        import fla
        m["fla"] = getattr(fla, "__version__", "?")
    except Exception as e:  # noqa: BLE001
        m["fla"] = f"unavailable: {e!r}"
    try:
        m["driver"] = subprocess.run(["nvidia-smi", "--query-gpu=driver_version", "--format=csv,noheader"],
                                     capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        m["driver"] = "?"
    try:
        m["git"] = subprocess.run(["git", "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip()
    except Exception:  # noqa: BLE001
        m["git"] = "?"
    return m


# ----------------------------------------------------------------------------------------- correctness
def correctness_case(B, T, H, K, L, seed, dtype=torch.bfloat16):
    dev = DEV
    x = make_prism_inputs(Shape(B, T, H, K, K, L, dtype, dev), seed)
    gen = torch.Generator(device="cpu").manual_seed(seed + 1)
    h0 = torch.randn(B, H, K, K, generator=gen).to(dev).requires_grad_()
    do = torch.randn(B, T, H, K, generator=gen, dtype=torch.float64).to(dev)
    dht = torch.randn(B, H, K, K, generator=gen, dtype=torch.float64).to(dev)
    ref_in = {n: t.detach().double().requires_grad_() for n, t in x.items()}
    h0r = h0.detach().double().requires_grad_()
    ref_fn = naive_recurrent_prism if T <= 1000 else chunk_prism_torch
    o_r, ht_r = ref_fn(**ref_in, initial_state=h0r, output_final_state=True)
    torch.autograd.backward([o_r, ht_r], [do, dht])
    o, ht = chunk_prism(**x, initial_state=h0, output_final_state=True)
    errs = dict(o=rel(o, o_r), ht=rel(ht, ht_r))
    try:
        torch.autograd.backward([o.float(), ht], [do.float(), dht.float()])
    except Exception as e:  # noqa: BLE001  (forward errors are kept)
        errs["bwd_error"] = float("nan")
        print(f"  backward failed: {e!r}"[:300], flush=True)
        return errs, ref_fn.__name__
    errs.update({"d" + n: rel(x[n].grad, ref_in[n].grad) for n in NAMES})
    errs["dh0"] = rel(h0.grad, h0r.grad)
    return errs, ref_fn.__name__


def run_correctness(res, grid, save):
    rows = res.setdefault("correctness", [])
    for K, L, T in grid:
        seed = 0
        row = dict(B=1, T=T, H=4, K=K, V=K, L=L, seed=seed, dtype="bfloat16", split_solve=pc.SPLIT_SOLVE)
        if left() < (150 if T > 4096 else 30):
            row.update(skipped="time budget", ok=None)
            rows.append(row)
            print(f"[correct] K={K} L={L} T={T}: skipped (time)", flush=True)
            continue
        t0 = time.time()
        try:
            errs, ref = correctness_case(1, T, 4, K, L, seed)
            row.update(errors=errs, reference=ref, worst=max(errs.values()),
                       ok=all(e <= TOL_BF16 for e in errs.values()))   # NaN fails
        except Exception as e:  # noqa: BLE001
            row.update(error=repr(e), trace=traceback.format_exc()[-2000:], ok=False)
        row["sec"] = round(time.time() - t0, 1)
        rows.append(row)
        print(f"[correct] K={K} L={L} T={T} seed={seed}{' split_solve' if pc.SPLIT_SOLVE else ''}: ok={row['ok']} "
              f"worst={row.get('worst', row.get('error'))} "
              + (" ".join(f"{n}={e:.1e}" for n, e in row.get("errors", {}).items())), flush=True)
        save()


# ----------------------------------------------------------------------------------------- timing
def bench(fn):
    if DRY:   # CPU dry run: one call, wall clock (tests the code path only)
        t = time.time()
        fn()
        ms = (time.time() - t) * 1e3
        return dict(ms=ms, ms_p20=ms, ms_p80=ms)
    ms, lo, hi = triton.testing.do_bench(fn, warmup=25, rep=100, quantiles=QUANT)
    return dict(ms=ms, ms_p20=lo, ms_p80=hi)


def peak(fn):
    torch.cuda.synchronize()
    base = torch.cuda.memory_allocated()
    torch.cuda.reset_peak_memory_stats()
    fn()
    torch.cuda.synchronize()
    pk = torch.cuda.max_memory_allocated()
    return dict(peak_GiB=pk / 2 ** 30, peak_above_inputs_GiB=(pk - base) / 2 ** 30)


def timed(name, T, tokens, fwd, grads_of, rows, save, do_bwd=True):
    """fwd() -> output tensor; grads_of = tensors to differentiate."""
    row = dict(op=name, T=T, B=tokens // T)
    if left() < 20:
        row["skipped"] = "time budget"
        rows.append(row)
        print(f"[perf] {name} T={T}: skipped (time)", flush=True)
        return
    try:
        out = fwd()
        do = torch.randn_like(out)
        row["fwd"] = bench(fwd)
        if do_bwd:
            def fb():
                torch.autograd.grad(fwd(), grads_of, do)
            row["fwdbwd"] = bench(fb)
            row.update(peak(fb))
        for mode in ("fwd", "fwdbwd"):
            if mode in row:
                row[mode]["ktok_s"] = tokens / row[mode]["ms"]
    except Exception as e:  # noqa: BLE001
        row["error"] = repr(e)[:500]
    rows.append(row)
    print(f"[perf] {name:28s} T={T:5d} " + " ".join(
        f"{m}={row[m]['ms']:.3f}ms({row[m]['ktok_s']:,.0f}k/s)" for m in ("fwd", "fwdbwd") if m in row)
        + (f" peak={row['peak_GiB']:.2f}GiB(+{row['peak_above_inputs_GiB']:.2f})" if "peak_GiB" in row else "")
        + (f" ERROR {row['error']}" if "error" in row else ""), flush=True)
    save()


def prism_perf(res, save, Ts, variants=False):
    """PRISM at K=V=64, chunk 64 (variants: chunk 32, and K=V=128, which runs at chunk 32)."""
    rows = res.setdefault("perf", [])
    H, tokens, dev, dt = 16, 32768, torch.device("cuda"), torch.bfloat16
    todo = [("prism_triton_L{L}", 64, 64)] if not variants else [("prism_triton_L{L}_C32", 64, 32),
                                                                  ("prism_triton_L{L}_K128", 128, 64)]
    for T in Ts:
        for name, K, C in todo:
            for L in (1, 3):
                x = make_prism_inputs(Shape(tokens // T, T, H, K, K, L, dt, dev), 0)
                timed(name.format(L=L), T, tokens, lambda x=x, C=C: chunk_prism(**x, chunk_size=C)[0],
                      list(x.values()), rows, save)
                del x


def fla_perf(res, save, Ts):
    """fla peers in this process: chunk_gla fwd and fwd+bwd, chunk_gated_delta_rule fwd,
    chunk_gated_delta_product n=3 fwd (fla's first calls autotune: minutes on a fresh machine)."""
    import torch.nn.functional as F

    rows = res.setdefault("perf", [])
    H, K, tokens, dev, dt = 16, 64, 32768, torch.device("cuda"), torch.bfloat16
    try:
        if os.environ.get("PRISM_NO_FLA") == "1":
            raise ImportError("PRISM_NO_FLA=1: fla baselines skipped")
        from fla.ops.gated_delta_product import chunk_gated_delta_product
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        from fla.ops.gla import chunk_gla
    except Exception as e:  # noqa: BLE001
        res["fla_import_error"] = repr(e)
        return
    for T in Ts:
        B = tokens // T
        gen = torch.Generator(device="cpu").manual_seed(0)
        q, k, v = (torch.randn(B, T, H, K, generator=gen).to(dev, dt).requires_grad_() for _ in range(3))
        gk = F.logsigmoid(torch.randn(B, T, H, K, generator=gen) + 2).to(dev, dt).requires_grad_()
        timed("fla_chunk_gla", T, tokens, lambda: chunk_gla(q, k, v, gk)[0], [q, k, v, gk], rows, save)
        kn = F.normalize(k.detach().float(), dim=-1).to(dt).requires_grad_()
        g = F.logsigmoid(torch.randn(B, T, H, generator=gen) + 2).to(dev).requires_grad_()
        beta = torch.rand(B, T, H, generator=gen).to(dev, dt).requires_grad_()
        timed("fla_chunk_gated_delta_rule", T, tokens, lambda: chunk_gated_delta_rule(q, kn, v, g, beta)[0],
              [q, kn, v], rows, save, do_bwd=False)
        n = 3
        k3 = F.normalize(torch.randn(B, T * n, H, K, generator=gen), dim=-1).to(dev, dt)
        v3 = torch.randn(B, T * n, H, K, generator=gen).to(dev, dt)
        b3 = torch.rand(B, T * n, H, generator=gen).to(dev, dt)
        timed("fla_gated_delta_product_n3", T, tokens,
              lambda: chunk_gated_delta_product(q, k3, v3, g, b3, num_householder=n)[0], [q], rows, save,
              do_bwd=False)
        del q, k, v, gk, kn, g, beta, k3, v3, b3
        torch.cuda.empty_cache()


def run_phases(res, quick, save):
    """Per-kernel times of PRISM (L=1 and L=3, K=V=64, chunk 64, H=16, 32768 tokens, T=2048), each at the
    default num_warps and, unless quick, at 4 and 8 warps (pc.WARPS overrides)."""
    rows = res.setdefault("phases", [])
    H, K, tokens, dev, BT = 16, 64, 32768, DEV, 64
    dt = torch.float32 if DRY else torch.bfloat16
    T = 37 if DRY else 2048
    if DRY:
        H, K, tokens, BT = 1, 16, 37, 16
    for L in (1, 3):
        if left() < 30:
            break
        B = tokens // T
        x = {n: t.detach() for n, t in make_prism_inputs(Shape(B, T, H, K, K, L, dt, dev), 0).items()}
        q, k, v, u, p, beta, g = (x[n] for n in NAMES)
        scale = K ** -0.5
        do = torch.randn_like(v)
        for warps in ((None,) if quick or DRY else (None, 4, 8)):
            if left() < 30:
                break
            pc.WARPS.clear()
            if warps is not None:
                pc.WARPS.update({n: warps for n in ("prep", "h", "o", "dh", "wy", "keys")})
            row = dict(T=T, L=L, num_warps=warps or "default")
            try:
                gc, w, ub, sw, tr, _ = pc.prism_fwd_prep(k, v, u, p, beta, g, BT)
                hs, vnew, _ = pc.prism_fwd_h(k, w, ub, sw, gc, BT)
                row["fwd_prep"] = bench(lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT))["ms"]
                # SPLIT_SOLVE variant (solve kernel + prep without the solve), and the solve kernel alone
                row["fwd_prep_split"] = bench(lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT, split_solve=True))["ms"]
                row["solve_only"] = bench(lambda: pc.prism_fwd_solve_kernel[(triton.cdiv(T, BT), B * H)](
                    k, beta, g, tr, T, H, K=K, BT=BT, BK=K, PREC=pc._prec(k.dtype), RAW=pc._raw_ok(k.dtype),
                    num_warps=pc.WARPS.get("solve", 4)))["ms"]
                row["fwd_h"] = bench(lambda: pc.prism_fwd_h(k, w, ub, sw, gc, BT))["ms"]
                row["fwd_o"] = bench(lambda: pc.prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT))["ms"]
                row["bwd_prep"] = bench(lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT, q=q, do=do, scale=scale,
                                                                  store_sw=False))["ms"]
                gc, w, ub, _, tr, dv1 = pc.prism_fwd_prep(k, v, u, p, beta, g, BT, q=q, do=do, scale=scale,
                                                          store_sw=False)
                dv1c = dv1.clone()
                row["bwd_dh"] = bench(lambda: pc.prism_bwd_dh(q, k, w, gc, do, dv1c.copy_(dv1), None, BT, False,
                                                              scale))["ms"]
                dhs, _ = pc.prism_bwd_dh(q, k, w, gc, do, dv1, None, BT, False, scale)
                wc, ubc = w.clone(), ub.clone()
                row["bwd_wy"] = bench(lambda: pc.prism_bwd_wy(q, k, beta, gc, hs, dhs, do, dv1, wc.copy_(w),
                                                              ubc.copy_(ub), tr, scale, BT))["ms"]
                dqp, dbp, dgp = pc.prism_bwd_wy(q, k, beta, gc, hs, dhs, do, dv1, w, ub, tr, scale, BT)
                row["bwd_keys"] = bench(lambda: pc.prism_bwd_keys(q, k, v, u, p, beta, gc, dhs, do, ub, dqp, w, dbp,
                                                                  dgp.clone(), scale, BT))["ms"]
                row["bwd_total"] = bench(lambda: pc.chunk_prism_bwd(q, k, v, u, p, beta, g, scale, None, hs, do,
                                                                    None, BT))["ms"]
            except Exception as e:  # noqa: BLE001
                row["error"] = repr(e)[:500]
            rows.append(row)
            print(f"[phase] " + " ".join(f"{a}={b:.3f}" if isinstance(b, float) else f"{a}={b}"
                                         for a, b in row.items()), flush=True)
            save()
    pc.WARPS.clear()


def summary(res):
    """Short table: ratios to the peers measured in this process (issue 5 targets)."""
    perf = {(r["op"], r["T"]): r for r in res.get("perf", []) if "fwd" in r}

    def ms(op, T, mode):
        r = perf.get((op, T))
        return r[mode]["ms"] if r and mode in r else None

    lines, table = [], []
    for T in sorted({T for _, T in perf}):
        for label, a, b, mode_a, mode_b, target in (
                ("L=1 fwd vs GDN fwd", "prism_triton_L1", "fla_chunk_gated_delta_rule", "fwd", "fwd", 0.9),
                ("L=3 fwd vs GDP n=3 fwd", "prism_triton_L3", "fla_gated_delta_product_n3", "fwd", "fwd", 2.5),
                ("L=3 fwd+bwd vs GLA fwd+bwd", "prism_triton_L3", "fla_chunk_gla", "fwdbwd", "fwdbwd", 1.0)):
            x, y = ms(a, T, mode_a), ms(b, T, mode_b)
            if x is not None and y is not None:
                table.append(dict(T=T, what=label, prism_ms=x, peer_ms=y, speed_ratio=y / x, target=target))
                lines.append(f"T={T:5d} {label:28s} prism {x:7.3f} ms  peer {y:7.3f} ms  ratio {y / x:5.2f}x "
                             f"(target >= {target})")
        pa, pb = perf.get(("prism_triton_L3", T)), perf.get(("fla_chunk_gla", T))
        if pa and pb and "peak_GiB" in pa and "peak_GiB" in pb:
            table.append(dict(T=T, what="peak mem L=3 fwd+bwd / GLA", ratio=pa["peak_GiB"] / pb["peak_GiB"],
                              target=1.5))
            lines.append(f"T={T:5d} peak memory PRISM L=3 / GLA: {pa['peak_GiB']:.2f} / {pb['peak_GiB']:.2f} GiB "
                         f"= {pa['peak_GiB'] / pb['peak_GiB']:.2f}x (target <= 1.5)")
    res["summary"] = table
    bad = [r for r in res.get("correctness", []) if r.get("ok") is False]
    lines.append(f"correctness: {sum(r.get('ok') is True for r in res.get('correctness', []))} ok, {len(bad)} failed, "
                 f"{sum(r.get('ok') is None for r in res.get('correctness', []))} skipped")
    print("\n".join(lines), flush=True)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--no-correct", action="store_true")
    ap.add_argument("--no-perf", action="store_true")
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    path = os.path.join(a.out, "prism_triton_check.json")
    res = dict(meta=meta(), tolerance_bf16=TOL_BF16)
    print(res["meta"], flush=True)

    def save():
        with open(path, "w") as f:
            json.dump(res, f, indent=1)

    t0 = time.time()
    # order = priority (the budget skips what comes last): K=64 correctness, PRISM K=64 timings, K=128
    # correctness at T=1000, fla peers at T=2048, phases, the rest
    K64 = [(64, L, T) for L in (1, 3) for T in (64, 1000, 4096)]
    K128 = [(128, L, 1000) for L in (1, 3)]
    rest = [(128, L, T) for L in (1, 3) for T in (64, 4096)] + ([] if a.quick else [(64, L, 16384) for L in (1, 3)])
    if DRY:
        K64, K128, rest = [(16, L, 37) for L in (1, 3)], [(72, 2, 40)], []
    perf = not a.no_perf and not DRY
    if not a.no_correct:
        run_correctness(res, K64, save)
    if perf:
        prism_perf(res, save, (2048, 8192))
    if not a.no_correct:
        run_correctness(res, K128, save)
        pc.SPLIT_SOLVE = True     # the split-solve variant (not default until checked on a GPU)
        run_correctness(res, [(64, 3, 1000)] if not DRY else [(16, 3, 37)], save)
        pc.SPLIT_SOLVE = False
    if not a.no_perf:
        run_phases(res, a.quick, save)
    if perf:
        fla_perf(res, save, (2048,))
        fla_perf(res, save, (8192,))
        prism_perf(res, save, (2048,), variants=True)
    if not a.no_correct:
        run_correctness(res, rest, save)
    if not a.no_correct:
        res["correctness_ok"] = all(r["ok"] is not False for r in res["correctness"])
        print(f"[correct] all ok (skipped rows excepted): {res['correctness_ok']}  ({time.time() - t0:.0f}s)",
              flush=True)
    summary(res)
    res["total_sec"] = time.time() - t0
    save()
    print(f"wrote {path} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
