#!/usr/bin/env python3
"""Version 8's forward changes timed against what they replace, in one process (issue 5; kernels/prism/NOTES.md,
"Version 8"):

1. L = 1: FWD_IMPL "fla_parts" (fla's cumsum, fused kkt + solve into an unfilled bf16 buffer, prism_wu1_kernel with
   delta_1 built in-kernel, fla's state pass and output) against "fla_gdn" (prism_delta1_kernel, then fla's whole
   chunk_gated_delta_rule_fwd), and fla's GDN forward on the same shapes (baselines' gdn_chunk, the harness's call),
   at T = 2048 .. 16384 with 32768 tokens, H=16, K=V=64, bf16. Outputs of the two PRISM paths against each other and,
   at T=2048, both against the float64 token loop on a slice (B=1, H=2 of the same inputs).
2. prism_wu1_kernel alone at num_warps 2 / 4 / 8 x num_stages 2 / 3 / 4 (T=2048), and the per-kernel CUDA times of
   both L = 1 paths.
3. L = 3: chunk_prism_fwd with the output kernel under MEASURED_MAXNREG (maxnreg=168) against uncapped, at every T;
   outputs must be identical.
4. Tr's fp32 buffer from fla's fused kkt + solve unfilled (version 8's second change) against zero-filled (version 7):
   the L = 3 forward and the L = 1 backward that recomputes its prep, at the first and last T; outputs identical.
SECTIONS=l1,wu1,cap,trfill (env) picks the parts.
Writes $OUT/prism_l1_parts.json. CPU dry run (interpreter, tiny shapes; fla's kernels replaced by the torch stand-ins):
PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_l1_parts.py --out /tmp/x
"""
from __future__ import annotations

import os

import torch

from prismbench.kernels.prism import chunk as pc

# scripts/gpu/measure.py
from measure import (DRY, float64_slice, kernel_times, max_rel_diff, median_ms, out_dir, prism_tensors, rel,
                     result_header, tr_zero_filled, row_writer)

TS = (37, 74) if DRY else (2048, 4096, 8192, 16384)
# SECTIONS (env, comma-separated): which parts run; default all
SECTIONS = os.environ.get("SECTIONS", "l1,wu1,cap,trfill").split(",")
H, K, BT, TOKENS = (2, 16, 64, 148) if DRY else (16, 64, 64, 32768)


def gdn_fwd(q, k, v, u, p, beta, g, scale):
    """fla's GDN forward as the harness's gdn-fla-chunk calls it, on (q, k1, v, beta1, g) (the same shapes)."""
    if DRY:
        return pc._torch_gdn_fwd(q, k[0], v, g, beta[0], scale, None, False, 64)[0]
    from prismbench.baselines.fla_ops.gated_delta import gdn_chunk

    return gdn_chunk(q, k[0], v, beta[0], g, scale)


def fwd(x, scale, impl):
    return pc.chunk_prism_fwd(*x, scale, None, False, 64, fwd_impl=impl)[0]


def main():
    out = out_dir()
    res = result_header(shape=dict(H=H, K=K, V=K, BT=BT, tokens=TOKENS))
    scale = K ** -0.5
    add = row_writer(res, out, "prism_l1_parts.json")

    for T in (TS if "l1" in SECTIONS else ()):
        B = TOKENS // T
        x = prism_tensors(B, T, H, K, 1, 1)
        with torch.no_grad():
            ref = fwd(x, scale, "fla_gdn")
            got = fwd(x, scale, "fla_parts")
            row = dict(part="L1 fwd", T=T, max_rel_diff_parts_vs_gdn_path=max_rel_diff([got], [ref]))
            if T == TS[0]:   # both against the float64 token loop, on a slice (the loop is slow)
                from prismbench.kernels.prism.naive import naive_recurrent_prism

                xs = float64_slice(x)
                o64 = naive_recurrent_prism(*[t.double() for t in xs], scale=scale)[0]
                for impl in ("fla_gdn", "fla_parts"):
                    row[f"err_{impl}"] = rel(fwd(xs, scale, impl), o64)
            for impl in ("fla_gdn", "fla_parts"):
                row[f"ms_{impl}"] = median_ms(lambda: fwd(x, scale, impl), DRY)
            row["ms_gdn_fla"] = median_ms(lambda: gdn_fwd(*x, scale), DRY)
            for impl in ("fla_gdn", "fla_parts"):
                row[f"ratio_{impl}_vs_gdn"] = row["ms_gdn_fla"] / row[f"ms_{impl}"]
            if T == TS[0]:
                for impl in ("fla_gdn", "fla_parts"):
                    row[f"kernels_us_{impl}"] = kernel_times(lambda: fwd(x, scale, impl), dry=DRY)
        add(row)

    # prism_wu1_kernel's launch config at the first T
    T = TS[0]
    B = TOKENS // T
    q, k, v, u, p, beta, g = prism_tensors(B, T, H, K, 1, 1)
    cumsum, kkt, solve, rcp_ln2 = pc._fla_tr_ops()
    g2 = cumsum(g, chunk_size=BT, scale=rcp_ln2, output_dtype=torch.float32)
    if DRY:
        a = solve(kkt(k=k[0], g=g2, beta=beta[0], chunk_size=BT, output_dtype=torch.float32), output_dtype=k.dtype)
    else:
        a = torch.empty(B, T, H, BT, device=k.device, dtype=k.dtype)
        pc._fla_kkt_solve_launch(k[0], g2, beta[0], a, BT)
    wu_ref = pc.prism_wu1(k[0], v, u, p[0], beta[0], g2, a)
    for warps in (((4,) if DRY else (2, 4, 8)) if "wu1" in SECTIONS else ()):
        for stages in ((2,) if DRY else (2, 3, 4)):
            pc.WARPS["wu1"], st0 = warps, pc.WU1_STAGES
            pc.WU1_STAGES = stages
            row = dict(part="wu1 config", T=T, num_warps=warps, num_stages=stages)
            try:
                row["max_rel_diff"] = max_rel_diff(pc.prism_wu1(k[0], v, u, p[0], beta[0], g2, a), wu_ref)
                row["ms"] = median_ms(lambda: pc.prism_wu1(k[0], v, u, p[0], beta[0], g2, a), DRY)
            except Exception as e:  # noqa: BLE001  (a config that fails is a result)
                row["error"] = repr(e)[:300]
            pc.WARPS.pop("wu1")
            pc.WU1_STAGES = st0
            add(row)
    row = dict(part="delta1 alone", T=T, ms=median_ms(lambda: pc.prism_delta1(v, u, p[0]), DRY))
    add(row)

    # L = 3: the output kernel's register cap, end to end
    for T in (TS if "cap" in SECTIONS else ()):
        B = TOKENS // T
        x = prism_tensors(B, T, H, K, 3, 3)
        with torch.no_grad():
            row = dict(part="L3 fwd o cap", T=T, cap=pc._cap("o", 64, 64))
            capped = pc.chunk_prism_fwd(*x, scale, None, True, BT)[:2]
            row["ms_capped"] = median_ms(lambda: pc.chunk_prism_fwd(*x, scale, None, False, BT), DRY)
            pc.MAXNREG["o"] = None
            free = pc.chunk_prism_fwd(*x, scale, None, True, BT)[:2]
            row["ms_uncapped"] = median_ms(lambda: pc.chunk_prism_fwd(*x, scale, None, False, BT), DRY)
            pc.MAXNREG.pop("o")
            row["max_rel_diff"] = max_rel_diff(capped, free)
        add(row)
    # Tr's fp32 buffer unfilled (the default since version 8's second change) against zero-filled, end to end: the
    # L = 3 forward, and the L = 1 backward that recomputes its prep (hs=None)
    real = pc._fla_fused_kkt_solve
    for T in ((TS[0], TS[-1]) if "trfill" in SECTIONS else ()):
        B = TOKENS // T
        for L in (1, 3):
            x = prism_tensors(B, T, H, K, L, L)
            do = torch.randn_like(x[2])
            row = dict(part="Tr fill", T=T, L=L)
            with torch.no_grad():
                if L == 3:
                    f = lambda: pc.chunk_prism_fwd(*x, scale, None, False, BT)[0]  # noqa: E731
                else:
                    f = lambda: pc.chunk_prism_bwd(*x, scale, None, None, do, None, BT)  # noqa: E731
                got = f()
                row["ms_unfilled"] = median_ms(f, DRY)
                pc._fla_fused_kkt_solve = tr_zero_filled
                ref = f()
                row["ms_zero_filled"] = median_ms(f, DRY)
                pc._fla_fused_kkt_solve = real
                if L == 3:
                    got, ref = (got,), (ref,)
                row["max_rel_diff"] = max_rel_diff(got, ref)
            add(row)
    print(f"wrote {out}/prism_l1_parts.json", flush=True)


if __name__ == "__main__":
    main()
