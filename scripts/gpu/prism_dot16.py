#!/usr/bin/env python3
"""bf16 dots (`chunk.DOT16`, version 9) against version 8's tf32 dots, one process (H=16, K=V=64, 32768 tokens, bf16).

1. At T = 2048 and 16384, L = 1 and 3: chunk_prism's forward (L = 3 only: the L = 1 forward is fla's kernels, which
   DOT16 does not touch) and forward + backward (autograd, as the harness times them), DOT16 off (()) against the
   default; at the first T and L = 3 also each launcher alone. (Call 1 of session 9 ran it with "prep_u" and "wy" as
   DOT16 names too, since removed: results/kernels/prism-dot16-h100.json.) Outputs and every input gradient of
   each variant against the default's (max |x - ref| / max |ref|), and at the first T the L = 3 output against the
   float64 token loop on a slice (B = 1, H = 2) for off and default.
   At the first T also the default with Tr's fp32 buffer zero-filled (version 8) instead of unfilled.
2. Per-kernel CUDA times of the L = 3 forward + backward at the first T, off and default.
Writes $OUT/prism_dot16.json. CPU dry run (interpreter, tiny shapes; fla's kernels replaced by the torch stand-ins):
PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_dot16.py --out /tmp/x
"""
from __future__ import annotations

import torch

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.chunk import chunk_prism
from prismbench.kernels.prism.naive import naive_recurrent_prism

from measure import (DRY, float64_slice, kernel_times, max_rel_diff, median_ms, out_dir, prism_fwd_bwd, prism_tensors,
                     rel, result_header, tr_zero_filled, row_writer)

TS = (37, 74) if DRY else (2048, 16384)
H, K, BT, TOKENS = (2, 16, 64, 148) if DRY else (16, 64, 64, 32768)
DEFAULT = pc.DOT16
NAMES = ("q", "k", "v", "u", "p", "beta", "g")


unfilled = pc._fla_fused_kkt_solve


def fwd_bwd(x, do):
    return prism_fwd_bwd(x, do, BT)


def main():
    out = out_dir()
    res = result_header(shape=dict(H=H, K=K, V=K, BT=BT, tokens=TOKENS), dot16_default=list(DEFAULT))
    add = row_writer(res, out, "prism_dot16.json")

    for T in TS:
        B = TOKENS // T
        for L in (1, 3):
            x = prism_tensors(B, T, H, K, L, L)
            do = torch.randn_like(x[2])
            variants = [("default", DEFAULT), ("off", ())]
            if T == TS[0]:   # Tr's fp32 buffer zero-filled (version 8) against unfilled (version 9's default)
                variants += [("default, Tr zero-filled", DEFAULT)]
            if T == TS[0] and L == 3:   # each launcher alone
                variants += [(n, (n,)) for n in DEFAULT]
            ref = None
            for name, d16 in variants:
                pc.DOT16 = d16
                if "zero-filled" in name:
                    pc._fla_fused_kkt_solve = tr_zero_filled
                row = dict(T=T, L=L, variant=name, dot16=list(d16))
                try:
                    got = fwd_bwd(x, do)
                    if ref is None:
                        ref = got
                    row["max_rel_diff_vs_default"] = {n: max_rel_diff([a], [b]) for n, a, b in
                                                      zip(("o",) + NAMES, got, ref)}
                    if L == 3:
                        with torch.no_grad():
                            row["ms_fwd"] = median_ms(lambda: chunk_prism(*x, chunk_size=BT), DRY)
                    row["ms_fwd_bwd"] = median_ms(lambda: fwd_bwd(x, do), DRY)
                    if T == TS[0] and L == 3 and name in ("default", "off"):
                        xs = float64_slice(x)
                        with torch.no_grad():
                            o = chunk_prism(*xs, chunk_size=BT)[0]
                        o64 = naive_recurrent_prism(*[t.double() for t in xs], scale=K ** -0.5)[0]
                        row["err_o_vs_float64_slice"] = rel(o, o64)
                        row["kernels_us_fwd_bwd"] = kernel_times(lambda: fwd_bwd(x, do), n=10, dry=DRY, top=20)
                except Exception as e:  # noqa: BLE001  (a variant that fails is a result)
                    row["error"] = repr(e)[:400]
                pc.DOT16 = DEFAULT
                pc._fla_fused_kkt_solve = unfilled
                add(row)
    print(f"wrote {out}/prism_dot16.json", flush=True)


if __name__ == "__main__":
    main()
