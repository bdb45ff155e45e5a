#!/usr/bin/env python3
"""GPU check of the PRISM Triton kernel (issue 5 items 3 and 4): correctness, then timings.

1. Correctness, bf16 inputs: o, final state and every gradient (q, k, v, u, p, beta, g, initial_state)
   against a float64 reference on the same inputs (token loop `naive_recurrent_prism` up to T=1000,
   chunked `chunk_prism_torch` above), relative error ||x - ref|| / ||ref||, limit 5e-3; grid
   T in {64, 1000, 4096, 16384} x L in {1, 3} x K=V in {64, 128} x seeds.
2. Timings (bf16, H=16, K=V=64, B*T=32768, T in {2048, 4096, 8192, 16384}), do_bench median with
   quantiles [0.5, 0.2, 0.8]: PRISM L=1 and L=3 fwd and fwd+bwd beside fla chunk_gla (fwd, fwd+bwd),
   chunk_gated_delta_rule (fwd) and chunk_gated_delta_product n=3 (fwd); peak memory of one fwd+bwd
   (total, and above the inputs); per-phase PRISM kernel times.

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


def run_correctness(res, quick, save):
    rows = res.setdefault("correctness", [])
    Ts = (64, 1000, 4096, 16384)
    Ks = (64, 128)
    if DRY:
        Ts, Ks = (37,), (16,)
    for K in Ks:
        for L in (1, 3):
            for T in Ts:
                if quick and K > 64 and T > 4096:
                    continue
                seeds = (0,) if (quick and (K > 64 or T > 4096)) or DRY else (0, 1)
                for seed in seeds:
                    row = dict(B=1, T=T, H=4, K=K, V=K, L=L, seed=seed, dtype="bfloat16")
                    t0 = time.time()
                    try:
                        errs, ref = correctness_case(1, T, 4, K, L, seed)
                        row.update(errors=errs, reference=ref, worst=max(errs.values()),
                                   ok=all(e <= TOL_BF16 for e in errs.values()))   # NaN fails
                    except Exception as e:  # noqa: BLE001
                        row.update(error=repr(e), trace=traceback.format_exc()[-2000:], ok=False)
                    row["sec"] = round(time.time() - t0, 1)
                    rows.append(row)
                    print(f"[correct] K={K} L={L} T={T} seed={seed}: ok={row['ok']} "
                          f"worst={row.get('worst', row.get('error'))} "
                          + (" ".join(f"{n}={e:.1e}" for n, e in row.get("errors", {}).items())), flush=True)
                    save()
    # fp32 inputs, one case, for information
    try:
        errs, ref = correctness_case(1, 1000 if not DRY else 37, 4, 64 if not DRY else 16, 3, 0,
                                     dtype=torch.float32)
        res["correctness_fp32"] = dict(T=1000, K=64, L=3, errors=errs, reference=ref)
        print(f"[correct] fp32 T=1000 K=64 L=3 worst={max(errs.values()):.1e}", flush=True)
    except Exception as e:  # noqa: BLE001
        res["correctness_fp32"] = dict(error=repr(e))
    save()


# ----------------------------------------------------------------------------------------- timing
def bench(fn):
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


def run_perf(res, quick, save):
    import torch.nn.functional as F

    rows = res.setdefault("perf", [])
    H, K, tokens, dev, dt = 16, 64, 32768, torch.device("cuda"), torch.bfloat16
    Ts = (2048, 16384) if quick else (2048, 4096, 8192, 16384)
    if os.environ.get("PRISM_PERF_T"):
        Ts = tuple(int(t) for t in os.environ["PRISM_PERF_T"].split(","))
    try:
        if os.environ.get("PRISM_NO_FLA") == "1":
            raise ImportError("PRISM_NO_FLA=1: fla baselines skipped")
        from fla.ops.gated_delta_product import chunk_gated_delta_product
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        from fla.ops.gla import chunk_gla
    except Exception as e:  # noqa: BLE001
        res["fla_import_error"] = repr(e)
        chunk_gla = chunk_gated_delta_rule = chunk_gated_delta_product = None
    for T in Ts:
        B = tokens // T
        for L in (1, 3):
            x = make_prism_inputs(Shape(B, T, H, K, K, L, dt, dev), 0)
            timed(f"prism_triton_L{L}", T, tokens, lambda x=x: chunk_prism(**x)[0], list(x.values()), rows, save)
            del x
        if chunk_gla is None:
            continue
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
    """Per-phase times of the PRISM kernels (L=3 and L=1, K=V=64, H=16, 32768 tokens)."""
    rows = res.setdefault("phases", [])
    H, K, tokens, dev, dt, BT = 16, 64, 32768, torch.device("cuda"), torch.bfloat16, 64
    for T in ((2048,) if quick else (2048, 16384)):
        for L in (1, 3):
            B = tokens // T
            x = {n: t.detach() for n, t in make_prism_inputs(Shape(B, T, H, K, K, L, dt, dev), 0).items()}
            q, k, v, u, p, beta, g = (x[n] for n in NAMES)
            scale = K ** -0.5
            row = dict(T=T, L=L)
            try:
                gc, w, ub, sw, _, _ = pc.prism_fwd_prep(k, v, u, p, beta, g, BT)
                hs, vnew, _ = pc.prism_fwd_h(k, w, ub, sw, gc, BT)
                do = torch.randn_like(v)
                row["fwd_prep"] = bench(lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT))["ms"]
                row["fwd_h"] = bench(lambda: pc.prism_fwd_h(k, w, ub, sw, gc, BT))["ms"]
                row["fwd_o"] = bench(lambda: pc.prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT))["ms"]
                row["bwd_total"] = bench(lambda: pc.chunk_prism_bwd(q, k, v, u, p, beta, g, scale, None, hs, do,
                                                                    None, BT))["ms"]
                row["bwd_prep"] = bench(lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT, q=q, do=do, scale=scale,
                                                                  store_sw=False, store_tr=True))["ms"]
            except Exception as e:  # noqa: BLE001
                row["error"] = repr(e)[:500]
            rows.append(row)
            print(f"[phase] {row}", flush=True)
            save()


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
    if not a.no_correct:
        run_correctness(res, a.quick, save)
        ok = all(r["ok"] for r in res["correctness"])
        res["correctness_ok"] = ok
        print(f"[correct] all ok: {ok}  ({time.time() - t0:.0f}s)", flush=True)
    if not a.no_perf and not DRY:
        run_phases(res, a.quick, save)
        run_perf(res, a.quick, save)
    res["total_sec"] = time.time() - t0
    save()
    print(f"wrote {path} in {time.time() - t0:.0f}s", flush=True)


if __name__ == "__main__":
    main()
