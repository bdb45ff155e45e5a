#!/usr/bin/env python3
"""The sequential passes' column block (issue 5; kernels/prism/NOTES.md, "Version 6"): prism_fwd_h_kernel and
prism_bwd_dh_kernel run one program per (V column block, b, h) through all chunks, so at T=16384 (32768 tokens, H=16:
B*H = 32) the default 32-wide block gives 64 programs for 132 SMs. For T in (2048, 8192, 16384), L=3, K=V=64, bf16,
chunk 64: each pass at column blocks 16 / 32 / 64 (chunk.SEQ_BV) and 4 / 8 warps, timed (do_bench median), and its
outputs (hs, V1, final state; dhs, dV1) compared with the default's (max relative difference; the column blocks are
independent, so expected ~0). Writes $OUT/prism_seq_bv.json.
CPU dry run (interpreter, tiny shape): PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_seq_bv.py
"""
from __future__ import annotations

import json
import sys

import torch

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.registry import Shape

# scripts/gpu/measure.py
from measure import DEV, DRY, DTYPE, max_rel_diff, median_ms, out_dir, result_header, write_json


def main():
    out = out_dir()
    H, K, L, BT, tokens = (2, 16, 3, 16, 74) if DRY else (16, 64, 3, 64, 32768)
    dt = DTYPE
    res = result_header()
    for T in ((37,) if DRY else (2048, 8192, 16384)):
        B = tokens // T
        x = {n: t.detach() for n, t in make_prism_inputs(Shape(B, T, H, K, K, L, dt, DEV), 0).items()}
        q, k, v, u, p, beta, g = (x[n] for n in ("q", "k", "v", "u", "p", "beta", "g"))
        scale = K ** -0.5
        do = torch.randn_like(v)
        gc, w, ub, sw, tr, dvloc = pc.prism_fwd_prep(k, v, u, p, beta, g, BT, q=q, do=do, scale=scale)
        h0 = torch.randn(B, H, K, K, device=DEV)
        dht = torch.randn(B, H, K, K, device=DEV)

        def fwd_h():
            return pc.prism_fwd_h(k, w, ub, sw, gc, BT, h0, True)

        scratch = dvloc.clone()

        def bwd_dh(fresh=True):
            """fresh: on a copy of dVloc (the outputs compared); else in place on a scratch buffer (timed: the pass
            turns dVloc into dV1 in place, so repeated calls change its values, not its work)."""
            dv1 = dvloc.clone() if fresh else scratch
            dhs, dh0 = pc.prism_bwd_dh(q, k, w, gc, do, dv1, dht, BT, True, scale)
            return dhs, dh0, dv1

        pc.SEQ_BV.clear()
        pc.WARPS.clear()
        ref = {"h": fwd_h(), "dh": bwd_dh()}
        for bv in ((16,) if DRY else (16, 32, 64)):
            for warps in ((4,) if DRY else (4, 8)):
                row = dict(T=T, B=B, BV=bv, warps=warps, programs=B * H * (-(-K // bv)))
                for name, fn, timed in (("h", fwd_h, fwd_h), ("dh", bwd_dh, lambda: bwd_dh(False))):
                    pc.SEQ_BV.clear()
                    pc.WARPS.clear()
                    pc.SEQ_BV[name] = bv
                    pc.WARPS[name] = warps
                    try:
                        row[f"{name}_max_rel_diff"] = max_rel_diff(fn(), ref[name])
                        row[f"{name}_ms"] = median_ms(timed, DRY)
                    except Exception as e:  # noqa: BLE001  (a config that does not compile is a result)
                        row[f"{name}_error"] = repr(e)[:300]
                pc.SEQ_BV.clear()
                pc.WARPS.clear()
                print(json.dumps(row), flush=True)
                res["rows"].append(row)
        # the default's times for reference (rule of _seq_bv, default warps)
        res["rows"].append(dict(T=T, B=B, BV="default", warps="default", h_ms=median_ms(fwd_h, DRY),
                                dh_ms=median_ms(lambda: bwd_dh(False), DRY)))
        print(json.dumps(res["rows"][-1]), flush=True)
    write_json(res, out, "prism_seq_bv.json")


if __name__ == "__main__":
    sys.exit(main())
