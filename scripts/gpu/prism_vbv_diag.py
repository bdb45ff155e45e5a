#!/usr/bin/env python3
"""Session 18's candidates one setting per process, so that a fault does not poison the next: the per-key values
launches on column blocks of V (KEYS_VALUES_BV; its first GPU call gave wrong dv, du, dp, dbeta at BV 32 without a
register cap and an illegal memory access under one; the launcher now refuses it with bf16 dots on a GPU) and the rows
loop in two launches (KEYS_ROWS_SPLIT).

    python3 scripts/gpu/prism_vbv_diag.py --out $OUT       # every setting, each in a child process
    python3 scripts/gpu/prism_vbv_diag.py --out $OUT --settings "None,None,1,1;32,None,0,0"   # these settings
    python3 scripts/gpu/prism_vbv_diag.py --one BV,CAP,KEYDOT16,ROWSPLIT     # one setting (what the children run)

BV: KEYS_VALUES_BV (None: whole V); CAP: MAXNREG["key_values_bv"] (None: no cap); KEYDOT16 "0": every per-key kind's
dots at tf32 (DOT16 without "key": is the bf16 dot what breaks?); ROWSPLIT 1: KEYS_ROWS_SPLIT. Each child (bf16, B=1,
T=200, H=2, K=V=64, L=3, chunk 64; CUDA_LAUNCH_BLOCKING=1 for the column-block settings) runs chunk_prism forward +
backward with the defaults and with the setting and prints one JSON line: the max relative difference of the output
and every gradient from the defaults' and, for a setting within 1e-2 run without launch blocking, fwd+bwd ms at the
perf shape (B=16, T=2048, H=16, L=3; median) with the defaults' ms measured in the same child. Writes
$OUT/prism_vbv_diag.json. PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1: the same on the CPU at tiny shapes, no timing.
"""
from __future__ import annotations

import os

DRY = os.environ.get("PRISM_CHECK_DRYRUN") == "1"
# (bf16 key dots with a column block, KEYDOT16 1, are refused by the launcher on a GPU since session 18's call B)
SETTINGS = ["None,None,1,1", "32,None,0,0", "32,168,0,0"]


def one(spec: str) -> dict:
    import torch

    from measure import median_ms, prism_fwd_bwd, prism_tensors, rel_diffs
    from prismbench.kernels.prism import chunk as pc

    bv, cap, keydot16, rowsplit = spec.split(",")
    B, T, H, K, L, BT = (1, 41, 2, 16, 3, 32) if DRY else (1, 200, 2, 64, 3, 64)
    x = prism_tensors(B, T, H, K, L, 5, torch.bfloat16)
    do = torch.randn_like(x[2])
    ref = prism_fwd_bwd(x, do, BT)
    base = dict(KEYS_VALUES_BV=pc.KEYS_VALUES_BV, MAXNREG=pc.MAXNREG, DOT16=pc.DOT16,
                KEYS_ROWS_SPLIT=pc.KEYS_ROWS_SPLIT)

    def setting():
        pc.KEYS_VALUES_BV = None if bv == "None" else int(bv)
        pc.MAXNREG = {} if cap == "None" else {"key_values_bv": int(cap)}
        if keydot16 == "0":
            pc.DOT16 = tuple(n for n in pc.DOT16 if n != "key")
        pc.KEYS_ROWS_SPLIT = rowsplit == "1"

    def defaults():
        for n, v in base.items():
            setattr(pc, n, v)

    setting()
    got = prism_fwd_bwd(x, do, BT)
    if not DRY:
        torch.cuda.synchronize()
    diff = rel_diffs(got, ref)
    row = dict(setting=spec, ok=all(d <= 1e-2 for d in diff.values()), max_rel_diff_vs_defaults=diff)
    if row["ok"] and not DRY and os.environ.get("CUDA_LAUNCH_BLOCKING") != "1":   # the perf shape
        xp = prism_tensors(16, 2048, 16, 64, 3, 0, torch.bfloat16)
        dop = torch.randn_like(xp[2])
        for tag, f in (("defaults", defaults), ("setting", setting), ("defaults again", defaults),
                       ("setting again", setting)):
            f()
            row[f"ms_fwd_bwd_T2048 {tag}"] = median_ms(lambda: prism_fwd_bwd(xp, dop, 64))
    return row


def main():
    from measure import child_main

    child_main(__file__, one, SETTINGS, "prism_vbv_diag.json",
               env_for=lambda spec: {} if spec.startswith("None") else dict(CUDA_LAUNCH_BLOCKING="1"))


if __name__ == "__main__":
    main()
