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

import json

import torch

from prismbench.kernels.prism import chunk as pc

from measure import (DRY, kernel_times, max_rel_diff, median_ms, out_dir, prism_fwd_bwd, prism_tensors, result_header,
                     write_json)

TS = (37, 74) if DRY else (2048, 16384)
H, K, BT, TOKENS = (2, 16, 64, 148) if DRY else (16, 64, 64, 32768)
L = 3
NAMES = ("q", "k", "v", "u", "p", "beta", "g")
SETTINGS = ("KEYS_LOOP", "KEYS_BF16", "WARPS", "STAGES", "MAXNREG")
CANDIDATE = {n: getattr(pc, n) for n in SETTINGS}
V10 = dict(KEYS_LOOP=("rows",))


def fwd_bwd(x, do):
    return prism_fwd_bwd(x, do, BT)


def _json(v):
    return list(v) if isinstance(v, tuple) else v


def main():
    out = out_dir()
    res = result_header(shape=dict(H=H, K=K, V=K, BT=BT, tokens=TOKENS, L=L),
                        candidate={n: _json(v) for n, v in CANDIDATE.items()},
                        measured_stages=dict(pc.MEASURED_STAGES))
    rows = res["rows"]

    def add(row):
        rows.append(row)
        print(json.dumps(row), flush=True)
        write_json(res, out, "prism_keys_loop.json")

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
            for n, val in {**CANDIDATE, **settings}.items():
                setattr(pc, n, val)
            row = dict(T=T, L=L, variant=name, settings={n: _json(v) for n, v in settings.items()})
            try:
                got = fwd_bwd(x, do)
                if ref is None:
                    ref = got
                row["max_rel_diff_vs_v10"] = {n: max_rel_diff([a], [b]) for n, a, b in zip(("o",) + NAMES, got, ref)}
                row["ms_fwd_bwd"] = median_ms(lambda: fwd_bwd(x, do), DRY)
                if T == TS[0] and name.startswith(("v10", "candidate:")):
                    row["kernels_us_fwd_bwd"] = kernel_times(lambda: fwd_bwd(x, do), n=10, dry=DRY, top=20)
            except Exception as e:  # noqa: BLE001  (a variant that fails is a result)
                row["error"] = repr(e)[:400]
            for n, val in CANDIDATE.items():
                setattr(pc, n, val)
            add(row)
    print(f"wrote {out}/prism_keys_loop.json", flush=True)


if __name__ == "__main__":
    main()
