#!/usr/bin/env python3
"""The row-block kernels (KEYS_VALUES_BS, KEYS_COLUMNS_BS) one setting per process, so that a fault does not poison
the next (session 14: the first GPU call met an illegal memory access at the values kernel's first launch).

    python3 scripts/gpu/prism_rb_diag.py --out $OUT            # every setting, each in a child process
    python3 scripts/gpu/prism_rb_diag.py --out $OUT --settings "None,None,4;16,None,4"   # these settings
    python3 scripts/gpu/prism_rb_diag.py --one VBS,CBS,WARPS[,LOADS[,DOT16]]   # one setting (what the children run)

LOADS: RB_LOADS ("trans" default, "ptr"); DOT16 "0": the per-key kinds' dots at tf32 instead of bf16 (is the bf16 dot
what faults?). The fault's setting (32,None,4) runs last, so a hang there costs the others nothing.

Each child (CUDA_LAUNCH_BLOCKING=1, bf16, B=1, T=200, H=2, K=V=64, L=3, chunk 64) runs chunk_prism forward +
backward with the whole-chunk kernels (KEYS_VALUES_BS = KEYS_COLUMNS_BS = None) and with the setting (row blocks of
the values launches, of the columns loop, their num_warps), then times the setting's forward + backward at the perf
shape (B=16, T=2048, H=16, L=3; do_bench median), and prints one JSON line: ok, the max relative difference of the
output and every gradient from the whole-chunk run, ms_fwd_bwd, or the error. Writes $OUT/prism_rb_diag.json.
PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1: the same on the CPU (chunk 32, row blocks of 16, no perf shape).
The first version of this script (session 14's second call) took its reference at the module's defaults, which then
had KEYS_VALUES_BS = 32: every child faulted in the reference run; compute-sanitizer located the fault
("Out-of-range shared or local address") in the values kernel's bf16 dot (`_mm`).
"""
from __future__ import annotations

import os

DRY = os.environ.get("PRISM_CHECK_DRYRUN") == "1"
SETTINGS = ["None,None,4", "32,None,4,trans,0", "32,None,4,ptr", "16,None,4", "16,None,8", "32,None,8", "None,32,4",
            "None,16,4", "32,None,4"]
if DRY:
    SETTINGS = ["None,None,4", "16,None,4", "None,16,4"]


def one(spec: str) -> dict:
    import torch

    from measure import median_ms, prism_fwd_bwd, prism_tensors, rel_diffs
    from prismbench.kernels.prism import chunk as pc

    vbs, cbs, warps, loads, dot16 = (spec.split(",") + ["trans", "1"])[:5]
    B, T, H, K, L, BT = (1, 41, 2, 16, 3, 32) if DRY else (1, 200, 2, 64, 3, 64)
    dtype = torch.float32 if DRY else torch.bfloat16
    x = prism_tensors(B, T, H, K, L, 5, dtype)
    do = torch.randn_like(x[2])
    pc.KEYS_VALUES_BS = pc.KEYS_COLUMNS_BS = None
    ref = prism_fwd_bwd(x, do, BT)
    pc.KEYS_VALUES_BS = None if vbs == "None" else int(vbs)
    pc.KEYS_COLUMNS_BS = None if cbs == "None" else int(cbs)
    pc.WARPS = dict(pc.WARPS, key_values_rb=int(warps), key_columns_rb=int(warps))
    pc.RB_LOADS = loads
    if dot16 == "0":     # the per-key kinds' dots at tf32 (every key launch, not only the row blocks)
        pc.DOT16 = tuple(n for n in pc.DOT16 if n != "key")
    got = prism_fwd_bwd(x, do, BT)
    if not DRY:
        torch.cuda.synchronize()
    diff = rel_diffs(got, ref)
    row = dict(setting=spec, ok=all(d <= 1e-2 for d in diff.values()), max_rel_diff_vs_whole=diff)
    if not DRY:   # the perf shape
        xp = prism_tensors(16, 2048, 16, 64, 3, 0, dtype)
        dop = torch.randn_like(xp[2])
        row["ms_fwd_bwd_T2048"] = median_ms(lambda: prism_fwd_bwd(xp, dop, 64))
    return row


def main():
    from measure import child_main

    out = child_main(__file__, one, SETTINGS, "prism_rb_diag.json",
                     env_for=lambda spec: dict(CUDA_LAUNCH_BLOCKING="1"))
    if out is not None:
        save_cubins(out)


def save_cubins(out: str):
    """The row-block kernels' compiled binaries from Triton's cache (cubin, ptx, metadata) into
    $OUT/prism_rb_cubins.tgz, so that a faulting PC (compute-sanitizer's kernel+0x...) can be read against the
    device's own SASS (`cuobjdump -sass`): session 14's offline sm_90 compile has an FMUL at the reported +0x4be0."""
    import glob
    import tarfile

    cache = os.environ.get("TRITON_CACHE_DIR") or os.path.join(os.path.expanduser("~"), ".triton", "cache")
    files = [f for f in glob.glob(os.path.join(cache, "*", "*")) if "_rb_kernel" in os.path.basename(f)]
    if files:
        with tarfile.open(os.path.join(out, "prism_rb_cubins.tgz"), "w:gz") as tf:
            for f in files:
                tf.add(f, arcname=os.path.relpath(f, cache))
    print(f"saved {len(files)} cached files of the row-block kernels", flush=True)


if __name__ == "__main__":
    main()
