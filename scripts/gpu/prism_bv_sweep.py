#!/usr/bin/env python3
"""Column blocks of the column-blocked parallel launchers (issue 5; kernels/prism/NOTES.md, "Version 7"): after the
warps sweep (results/kernels/prism-warps-sweep-h100.json) set prep_u to 4 warps and prep_dvloc to 2, their column block
PREP_BV (32) and wy2_cols' WY_BV (32) are swept here with the warps around the new defaults.

At T=2048, 32768 tokens, H=16, K=V=64, bf16, chunk 64, L in (1, 3): PREP_BV in (16, 32, 64) x prep_u warps (4, 8)
(timed: the whole prep, Tr + prep_w + prep_u) and x prep_dvloc warps (2, 4) (timed: prism_prep_dvloc); WY_BV in
(16, 32, 64) x wy2_cols warps (4, 8) (timed: the whole WY phase). Each with the largest relative difference of its
outputs from the defaults' (the column blocks are independent: expected 0). Writes $OUT/prism_bv_sweep.json.
CPU dry run (interpreter, tiny shape, one configuration each):
    PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_bv_sweep.py --out /tmp/x
"""
from __future__ import annotations

import json
import sys

import torch

from prismbench.kernels.prism import chunk as pc

# scripts/gpu/measure.py
from measure import DRY, forward_states, max_rel_diff, median_ms, prism_tensors, sweep_start, write_json


def main():
    out, res, B, T, H, K, BT = sweep_start()
    defaults = dict(PREP_BV=pc.PREP_BV, WY_BV=pc.WY_BV)
    for L in (1, 3):
        q, k, v, u, p, beta, g = prism_tensors(B, T, H, K, L, L)
        scale = K ** -0.5
        do = torch.randn_like(v)
        gc, w, ub, sw, tr, hs, vnew = forward_states(k, v, u, p, beta, g, BT)
        dv1_after_dh = pc.prism_prep_dvloc(q, k, g, do, scale, BT)
        dhs, _ = pc.prism_bwd_dh(q, k, w, gc, do, dv1_after_dh, None, BT, False, scale)
        w_s, ub_s, dv1_s = (t.clone() for t in (w, ub, dv1_after_dh))

        def wy(copy=True):
            w_, ub_, dv1_ = (t.clone() for t in (w, ub, dv1_after_dh)) if copy else (w_s, ub_s, dv1_s)
            return (*pc.prism_bwd_wy(q, k, beta, gc, hs, dhs, do, dv1_, w_, ub_, tr, scale, BT), w_, ub_, dv1_)

        sweeps = [  # (launcher timed, block variable, warps name, blocks, warps, fn, timed fn)
            ("prep", "PREP_BV", "prep_u", (16, 32, 64), (4, 8), lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT), None),
            ("prep_dvloc", "PREP_BV", "prep_dvloc", (16, 32, 64), (2, 4),
             lambda: (pc.prism_prep_dvloc(q, k, g, do, scale, BT),), None),
            ("wy", "WY_BV", "wy2_cols", (16, 32, 64), (4, 8), wy, lambda: wy(False)),
        ]
        for name, var, wname, blocks, warps_list, fn, timed in sweeps:
            pc.WARPS.clear()
            setattr(pc, var, defaults[var])
            ref = fn()
            res["rows"].append(dict(L=L, launcher=name, config="default", ms=median_ms(timed or fn, DRY)))
            for bv in (blocks[:1] if DRY else blocks):
                for warps in (warps_list[:1] if DRY else warps_list):
                    setattr(pc, var, bv)
                    pc.WARPS.clear()
                    pc.WARPS[wname] = warps
                    row = dict(L=L, launcher=name, config=f"{var}={bv},{wname}={warps}")
                    try:
                        row["max_rel_diff"] = max_rel_diff(fn(), ref)
                        row["ms"] = median_ms(timed or fn, DRY)
                    except Exception as e:  # noqa: BLE001  (a config that fails to compile or run is a result)
                        row["error"] = repr(e)[:300]
                    print(json.dumps(row), flush=True)
                    res["rows"].append(row)
            setattr(pc, var, defaults[var])
            pc.WARPS.clear()
            write_json(res, out, "prism_bv_sweep.json")


if __name__ == "__main__":
    sys.exit(main())
