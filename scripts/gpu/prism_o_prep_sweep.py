#!/usr/bin/env python3
"""The version-7 forward changes and their register caps (issue 5; kernels/prism/NOTES.md, "Version 7", call 7): the
output kernel's extra keys in a runtime loop with the decay mask rebuilt per key (offline sm_90 at 4 warps, L=3: still
255 registers uncapped, but 120 B of spills under maxnreg=168 against 356 B for the unrolled version 6 body), and
gc, W computed by prism_prep_u_kernel (PREP_W="fused", no prism_prep_w_kernel launch).

At T=2048, 32768 tokens, H=16, K=V=64, bf16, chunk 64, L in (1, 3): prism_fwd_o with no cap (default), maxnreg=168
(three CTAs of 4 warps per SM) and 128; the whole prep (Tr + prep_u [+ prep_w]) with PREP_W "fused" (default) and
"kernel", each also with prep_u under maxnreg=168. Each variant's outputs against the default's (max relative
difference; a cap or a fused W must not change them: expected 0). Writes $OUT/prism_o_prep_sweep.json.
CPU dry run (interpreter, tiny shape; caps are ignored there): PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 <this>
"""
from __future__ import annotations

import json
import sys

from prismbench.kernels.prism import chunk as pc

# scripts/gpu/measure.py
from measure import DRY, forward_states, max_rel_diff, median_ms, prism_tensors, sweep_start, write_json


def main():
    out, res, B, T, H, K, BT = sweep_start()
    for L in (1, 3):
        q, k, v, u, p, beta, g = prism_tensors(B, T, H, K, L, L)
        scale = K ** -0.5
        pc.MAXNREG.clear()   # (since version 8 the output kernel's default is capped: MEASURED_MAXNREG; None lifts it)
        gc, w, ub, sw, tr, hs, vnew = forward_states(k, v, u, p, beta, g, BT)

        def fo():
            return (pc.prism_fwd_o(q, k, v, u, p, beta, gc, hs, vnew, scale, BT),)

        def prep():
            return pc.prism_fwd_prep(k, v, u, p, beta, g, BT)[:4]

        variants = [("o", fo, {"o": None}, None), ("o", fo, {"o": 168}, None), ("o", fo, {"o": 128}, None),
                    ("prep", prep, {}, "fused"), ("prep", prep, {}, "kernel"), ("prep", prep, {"prep_u": 168}, "fused")]
        refs = {}
        for name, fn, cap, prep_w in (variants if not DRY else variants[:1] + variants[3:5]):
            pc.MAXNREG.clear()
            pc.MAXNREG.update(cap)
            pc.PREP_W = prep_w or "fused"
            row = dict(L=L, launcher=name, maxnreg=cap.get(name if name == "o" else "prep_u"), prep_w=prep_w)
            try:
                got = fn()
                refs.setdefault(name, got)
                row["max_rel_diff"] = max_rel_diff(got, refs[name])
                row["ms"] = median_ms(fn, DRY)
            except Exception as e:  # noqa: BLE001  (a config that fails to compile or run is a result)
                row["error"] = repr(e)[:300]
            pc.MAXNREG.clear()
            pc.PREP_W = "fused"
            print(json.dumps(row), flush=True)
            res["rows"].append(row)
            write_json(res, out, "prism_o_prep_sweep.json")


if __name__ == "__main__":
    sys.exit(main())
