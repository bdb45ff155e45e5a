#!/usr/bin/env python3
"""The per-key kinds' bf16 copies (`chunk.KEYS_BF16`) and the rows loop (`chunk.KEYS_LOOP` "rows"; `KEYS_ROWS="loop"`
when this ran in session 10's call 1: results/kernels/prism-keys-bf16-h100.json), version 10 candidates,
against version 9's per-key launches, one process (H=16, K=V=64, 32768 tokens, bf16, L=3).

At T = 2048 and 16384: chunk_prism forward + backward (autograd, as the harness times them) with version 9's phase C2
("off": KEYS_BF16 (), KEYS_LOOP ()), each KEYS_BF16 part alone and both with per-key rows launches, the
defaults (both parts, the rows loop at 4 warps) and the rows loop at 8 warps (236 registers, no spills offline,
against 255 and 76-128 B of spills at 4); at the first T also the defaults with the columns launches under a register
cap of 168 (188 registers uncapped offline: 3 CTAs of 4 warps per SM fit under 170), and the forward alone (which
neither touches: this branch's prep_u at tf32 against run 14's 1.682 ms). Outputs and every input gradient of each
variant against the off variant's (max |x - ref| / max |ref|: the copies are bit-identical under the interpreter and
the loop sums in another order, so anything above ~1e-6 here is a GPU difference to look at). Per-kernel CUDA times
of forward + backward at the first T, off and default.
Writes $OUT/prism_keys_bf16.json. CPU dry run (interpreter, tiny shapes; fla's kernels replaced by the torch
stand-ins): PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_keys_bf16.py --out /tmp/x
"""
from __future__ import annotations

import torch

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.chunk import chunk_prism

from measure import (DRY, as_json, kernel_times, median_ms, out_dir, prism_fwd_bwd, prism_tensors, result_header,
                     settings_variant, row_writer)

TS = (37, 74) if DRY else (2048, 16384)
H, K, BT, TOKENS = (2, 16, 64, 148) if DRY else (16, 64, 64, 32768)
L = 3
# "default" is version 10's configuration as call 1 ran it (both copies, the rows loop alone)
DEFAULT = dict(KEYS_BF16=("dh", "d"), KEYS_LOOP=("rows",), WARPS=dict(pc.WARPS), MAXNREG=dict(pc.MAXNREG))
NAMES = ("q", "k", "v", "u", "p", "beta", "g")


def fwd_bwd(x, do):
    return prism_fwd_bwd(x, do, BT)


def main():
    out = out_dir()
    res = result_header(shape=dict(H=H, K=K, V=K, BT=BT, tokens=TOKENS, L=L),
                        defaults=as_json(DEFAULT),
                        dot16=list(pc.DOT16))
    add = row_writer(res, out, "prism_keys_bf16.json")

    for T in TS:
        B = TOKENS // T
        x = prism_tensors(B, T, H, K, L, L)
        do = torch.randn_like(x[2])
        per_key = dict(KEYS_LOOP=())
        variants = [("off", dict(per_key, KEYS_BF16=())), ("both, per-key rows", per_key), ("default", {}),
                    ("default, rows loop at 8 warps", dict(WARPS={"key_rows": 8}))]
        if T == TS[0]:
            variants[1:1] = [("dh, per-key rows", dict(per_key, KEYS_BF16=("dh",))),
                             ("d, per-key rows", dict(per_key, KEYS_BF16=("d",)))]
            variants += [("default, columns capped at 168", dict(MAXNREG={"key_kind1": 168}))]
        ref = None
        for name, settings in variants:
            def extra(fields, name=name):
                if T == TS[0] and name == "default":
                    with torch.no_grad():
                        fields["ms_fwd"] = median_ms(lambda: chunk_prism(*x, chunk_size=BT), DRY)
                if T == TS[0] and name in ("off", "default"):
                    fields["kernels_us_fwd_bwd"] = kernel_times(lambda: fwd_bwd(x, do), n=10, dry=DRY, top=20)
            fields, got = settings_variant(pc, DEFAULT, settings, lambda: fwd_bwd(x, do), ref, ("o",) + NAMES,
                                           "max_rel_diff_vs_off", extra)
            ref = got if ref is None else ref
            add(dict(T=T, L=L, variant=name, settings=as_json(settings), **fields))
    print(f"wrote {out}/prism_keys_bf16.json", flush=True)


if __name__ == "__main__":
    main()
