#!/usr/bin/env python3
"""Version 11's `KEYS_BF16` part "dx" (the values and columns kinds read diag(beta1) dY from a bf16 copy stored by the
WY column kernel), one process (H=16, K=V=64, 32768 tokens, bf16, L=3, the other defaults of version 10).

At T = 2048 and 16384: chunk_prism forward + backward (autograd, as the harness times them) without "dx" (version 10,
the reference of the differences) and with it; outputs and every input gradient against version 10's (max |x - ref| /
max |ref|: the copy holds the product the kinds would round to bf16 themselves, so 0 is expected, as under the
interpreter), and CUDA time per kernel at the first T for both.
Writes $OUT/prism_keys_dx.json. CPU dry run (interpreter, tiny shapes; fla's kernels replaced by the torch stand-ins):
PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_keys_dx.py --out /tmp/x
"""
from __future__ import annotations

import json

import torch

from prismbench.kernels.prism import chunk as pc

from measure import (DRY, as_json, kernel_times, out_dir, prism_fwd_bwd, prism_tensors, result_header, settings_variant,
                     write_json)

TS = (37, 74) if DRY else (2048, 16384)
H, K, BT, TOKENS = (2, 16, 64, 148) if DRY else (16, 64, 64, 32768)
L = 3
NAMES = ("q", "k", "v", "u", "p", "beta", "g")
BASE = dict(KEYS_BF16=("dh", "d", "dx"))
V10 = dict(KEYS_BF16=("dh", "d"))


def main():
    out = out_dir()
    res = result_header(shape=dict(H=H, K=K, V=K, BT=BT, tokens=TOKENS, L=L), base=as_json(BASE))
    rows = res["rows"]
    for T in TS:
        B = TOKENS // T
        x = prism_tensors(B, T, H, K, L, L)
        do = torch.randn_like(x[2])
        ref = None
        for name, settings in (("v10: dh, d", V10), ("v11: dh, d, dx", {})):
            def extra(fields):
                if T == TS[0]:
                    fields["kernels_us_fwd_bwd"] = kernel_times(lambda: prism_fwd_bwd(x, do, BT), n=10, dry=DRY, top=20)
            fields, got = settings_variant(pc, BASE, settings, lambda: prism_fwd_bwd(x, do, BT), ref, ("o",) + NAMES,
                                           "max_rel_diff_vs_v10", extra)
            ref = got if ref is None else ref
            rows.append(dict(T=T, L=L, variant=name, settings=as_json(settings), **fields))
            print(json.dumps(rows[-1]), flush=True)
            write_json(res, out, "prism_keys_dx.json")
    print(f"wrote {out}/prism_keys_dx.json", flush=True)


if __name__ == "__main__":
    main()
