#!/usr/bin/env python3
"""The per-key kinds in loops over the keys (`chunk.KEYS_LOOP`: "rows" in version 10, "columns" and "values" the
candidates), one process (H=16, K=V=64, 32768 tokens, bf16, L=3; KEYS_BF16 on).

At T = 2048 and 16384: chunk_prism forward + backward (autograd, as the harness times them) for version 10's rows loop
alone (the reference of the differences), the rows loop at one pipelining stage, the columns and values loops each
added alone, all three (the candidate defaults: columns at one stage, values at 8 warps), and at the first T all
three with the values loop at 4 warps, at one stage, and the rows loop at one stage. Outputs and every input gradient
of each variant against version 10's (max |x - ref| / max |ref|: the columns and values loops are bit-identical to the
per-key launches under the interpreter, so only a GPU's per-kernel rounding of the decay products may show, ~1e-3
at most). Per-kernel CUDA times at the first T for version 10 and the candidate defaults.
Writes $OUT/prism_keys_loop.json. CPU dry run (interpreter, tiny shapes; fla's kernels replaced by the torch
stand-ins): PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_keys_loop.py --out /tmp/x
"""
from __future__ import annotations

import torch

from prismbench.kernels.prism import chunk as pc

from measure import (DRY, as_json, kernel_times, out_dir, prism_fwd_bwd, prism_tensors, result_header, settings_variant,
                     row_writer)

TS = (37, 74) if DRY else (2048, 16384)
H, K, BT, TOKENS = (2, 16, 64, 148) if DRY else (16, 64, 64, 32768)
L = 3
NAMES = ("q", "k", "v", "u", "p", "beta", "g")
# "candidate" is the configuration session 10's call 2 measured (all three loops; the values loop's 8 warps and the
# columns loop's 1 stage are the launchers' defaults): the module's default has since become rows + columns
CANDIDATE = dict(KEYS_LOOP=("rows", "columns", "values"), KEYS_BF16=("dh", "d"), WARPS={}, STAGES={}, MAXNREG={})
V10 = dict(KEYS_LOOP=("rows",))


def fwd_bwd(x, do):
    return prism_fwd_bwd(x, do, BT)


def main():
    out = out_dir()
    res = result_header(shape=dict(H=H, K=K, V=K, BT=BT, tokens=TOKENS, L=L),
                        candidate=as_json(CANDIDATE),
                        measured_stages=dict(pc.MEASURED_STAGES))
    add = row_writer(res, out, "prism_keys_loop.json")

    for T in TS:
        B = TOKENS // T
        x = prism_tensors(B, T, H, K, L, L)
        do = torch.randn_like(x[2])
        variants = [("v10: rows loop", V10), ("candidate: rows, columns, values loops", {}),
                    ("rows loop at 1 stage", dict(V10, STAGES={"key_rows": 1}))]
        if T == TS[0]:
            variants += [("rows + columns loops", dict(KEYS_LOOP=("rows", "columns"))),
                         ("rows + values loops", dict(KEYS_LOOP=("rows", "values"))),
                         ("candidate, values at 4 warps", dict(WARPS={"key_values": 4})),
                         ("candidate, values at 1 stage", dict(STAGES={"key_values": 1})),
                         ("candidate, rows at 1 stage", dict(STAGES={"key_rows": 1})),
                         ("candidate, columns at 3 stages", dict(STAGES={"key_columns": 3}))]
        ref = None
        for name, settings in variants:
            def extra(fields, name=name):
                if T == TS[0] and name.startswith(("v10", "candidate:")):
                    fields["kernels_us_fwd_bwd"] = kernel_times(lambda: fwd_bwd(x, do), n=10, dry=DRY, top=20)
            fields, got = settings_variant(pc, CANDIDATE, settings, lambda: fwd_bwd(x, do), ref, ("o",) + NAMES,
                                           "max_rel_diff_vs_v10", extra)
            ref = got if ref is None else ref
            add(dict(T=T, L=L, variant=name, settings=as_json(settings), **fields))
    print(f"wrote {out}/prism_keys_loop.json", flush=True)


if __name__ == "__main__":
    main()
