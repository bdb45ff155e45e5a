#!/usr/bin/env python3
"""num_warps per launcher (issue 5; kernels/prism/NOTES.md, "Version 6", call 5): the state and dh passes ran faster
at 4 warps than at the 8 that `chunk._warps` picks from offline spill counts, so the other launchers that take
`_warps`' 8 (or a fixed 4) are swept here, one at a time, the rest at their defaults.

At T=2048, 32768 tokens, H=16, K=V=64, bf16, chunk 64, L in (1, 3); for each launcher name of `chunk.WARPS`
("prep_w", "prep_u" (both timed as the whole prep: Tr + prep_w + prep_u), "prep_dvloc", "o", "wy2_cols", "wy2_erase",
"wy2_read" (each timed as the whole WY phase), "keys" (the per-key tail, timed as the whole keys phase; L=3 only)) at
2, 4 and 8 warps: the phase's do_bench median and the largest relative difference of its outputs from the defaults'
(a warps change may reorder fp32 sums: expected <= 1e-6). Phases that write their inputs in place (WY, keys) run
on copies for the comparison and on scratch copies for the timing (their values change, their work does not).
Writes $OUT/prism_warps_sweep.json. CPU dry run (interpreter, tiny shape, one warps value):
    PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_warps_sweep.py --out /tmp/x
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
    for L in (1, 3):
        q, k, v, u, p, beta, g = prism_tensors(B, T, H, K, L, L)
        scale = K ** -0.5
        do = torch.randn_like(v)
        pc.WARPS.clear()
        gc, w, ub, sw, tr, hs, vnew = forward_states(k, v, u, p, beta, g, BT)
        dvloc = pc.prism_prep_dvloc(q, k, g, do, scale, BT)
        dv1_after_dh = dvloc.clone()   # the dh pass turns dVloc into dV1 in place
        dhs, _ = pc.prism_bwd_dh(q, k, w, gc, do, dv1_after_dh, None, BT, False, scale)

        def wy(copy=True):
            w_, ub_, dv1_ = (t.clone() for t in (w, ub, dv1_after_dh)) if copy else (w_s, ub_s, dv1_s)
            out = pc.prism_bwd_wy(q, k, beta, gc, hs, dhs, do, dv1_, w_, ub_, tr, scale, BT)
            return (*out, w_, ub_, dv1_)

        w_s, ub_s, dv1_s = (t.clone() for t in (w, ub, dv1_after_dh))
        dqp, dbp, dgp, dkp, dy, dv1c = wy()

        def keys(copy=True):
            t_ = [t.clone() for t in (dy, dqp, dkp, dbp, dgp, dv1c)] if copy else keys_scratch
            return pc.prism_bwd_keys(q, k, v, u, p, beta, gc, dhs, do, t_[0], t_[1], t_[2], t_[3], t_[4], scale, BT,
                                     dr=t_[5])

        keys_scratch = [t.clone() for t in (dy, dqp, dkp, dbp, dgp, dv1c)]
        phases = {
            "prep_w": (lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT), None),
            "prep_u": (lambda: pc.prism_fwd_prep(k, v, u, p, beta, g, BT), None),
            "prep_dvloc": (lambda: (pc.prism_prep_dvloc(q, k, g, do, scale, BT),), None),
            "o": (lambda: (pc.prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT),), None),
            "wy2_cols": (wy, lambda: wy(False)),
            "wy2_erase": (wy, lambda: wy(False)),
            "wy2_read": (wy, lambda: wy(False)),
        }
        if L > 1:
            phases["keys"] = (keys, lambda: keys(False))
        for name, (fn, timed) in phases.items():
            pc.WARPS.clear()
            ref = fn()
            row = dict(L=L, launcher=name, default_ms=median_ms(timed or fn, DRY))
            for warps in ((4,) if DRY else (2, 4, 8)):
                pc.WARPS.clear()
                pc.WARPS[name] = warps
                try:
                    row[f"w{warps}_max_rel_diff"] = max_rel_diff(fn(), ref)
                    row[f"w{warps}_ms"] = median_ms(timed or fn, DRY)
                except Exception as e:  # noqa: BLE001  (a config that fails to compile or run is a result)
                    row[f"w{warps}_error"] = repr(e)[:300]
            pc.WARPS.clear()
            print(json.dumps(row), flush=True)
            res["rows"].append(row)
            write_json(res, out, "prism_warps_sweep.json")


if __name__ == "__main__":
    sys.exit(main())
