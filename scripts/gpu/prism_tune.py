#!/usr/bin/env python3
"""Launch settings of version 10's heaviest kernels, re-measured after session 11's hardware counters
(results/kernels/prism-ncu-v10-h200.json: prep_u, the output kernel and the per-key kinds run at 12-18% occupancy,
two CTAs of 4 warps per SM at 168-255 registers, prep_u and the output kernel spilling; NOTES.md "Version 11").

One process, bf16, H=16, K=V=64, 32768 tokens, T=2048, L=3: chunk_prism forward + backward (autograd, as the harness
times them) and the forward alone, for the defaults and one setting changed at a time (num_warps, register cap,
pipelining stages, prep's column block); outputs and every gradient against the defaults' (max |x - ref| / max |ref|;
a launch setting may change a kernel's fp32 rounding, not its math: <= ~1e-3 expected, from bf16 re-roundings).
TUNE_SET=stash: the forward's launchers again under version 11's D_l stash (FWD_STASH_D; prep_u stores D_l, the
output kernel reads it at 144 registers offline, so version 8's cap of 168 no longer binds): prep_u's warps, stages and
column block, the output kernel's cap (none, 128 for four CTAs per SM), warps and stages; writes
$OUT/prism_tune_stash.json. TUNE_SET=rb (session 14): the per-key values launches in row blocks (KEYS_VALUES_BS 16 /
32, 4 / 8 warps, a register cap of 168 for three CTAs per SM) against whole chunks, and the columns loop in row blocks
(KEYS_COLUMNS_BS); writes $OUT/prism_tune_rb.json. TUNE_SET=rb2 (session 15): the row-block settings that ran on
the H100. TUNE_SET=bytes (session 16): the forward's intermediates in bf16 (FWD_16); writes $OUT/prism_tune_bytes.json;
TUNE_SET=bytes2: the subsets after it, and TR16_DOTS. TUNE_SET=cand17 (session 17; chose version 13): prep_u's
extra-key dots in bf16 (DOT16 "prep_u") and the WY erase kernel on the bf16 dH' (DH16_WY), against version 12.
TUNE_SET=cand18 (session 17; chose version 14): the WY kernels' dots in bf16 at L > 1 (DOT16 "wy"), alone and with V1 in
bf16 (WY_V1_16), against version 13. TUNE_SET=cand19 (session 18): the per-key values launches on column blocks of V
(KEYS_VALUES_BV 32 and 16, with and without the register cap that gives them one more CTA per SM) and the rows loop's
two passes as two launches (KEYS_ROWS_SPLIT), against version 14.
Writes $OUT/prism_tune.json. CPU dry run (interpreter, tiny shapes):
PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_tune.py --out /tmp/x
"""
from __future__ import annotations

import os

import torch

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.chunk import chunk_prism

from measure import (DRY, DTYPE, as_json, kernel_times, median_ms, out_dir, prism_fwd_bwd, prism_tensors, result_header,
                     row_writer, settings_variant)

T, H, K, BT, TOKENS = (37, 2, 16, 32, 74) if DRY else (2048, 16, 64, 64, 32768)
L = 3
NAMES = ("q", "k", "v", "u", "p", "beta", "g")
BASE = dict(WARPS={}, MAXNREG={}, STAGES={}, PREP_BV=pc.PREP_BV, WY_BV=pc.WY_BV, KEYS_VALUES_BS=pc.KEYS_VALUES_BS,
            KEYS_COLUMNS_BS=pc.KEYS_COLUMNS_BS, KEYS_VALUES_BV=pc.KEYS_VALUES_BV, KEYS_ROWS_SPLIT=pc.KEYS_ROWS_SPLIT,
            RB_D16=pc.RB_D16, FWD_16=pc.FWD_16,
            TR16_DOTS=pc.TR16_DOTS, DOT16=pc.DOT16, DH16_WY=pc.DH16_WY, WY_V1_16=pc.WY_V1_16)
VARIANTS = [   # first written for version 10 (results/kernels/prism-tune-v10-h100.json); the rows time the checkout's defaults
    ("defaults", {}),
    ("prep_u at 8 warps", dict(WARPS={"prep_u": 8})),
    ("prep column block 32", dict(PREP_BV=32)),
    ("prep column block 32, prep_u at 8 warps", dict(PREP_BV=32, WARPS={"prep_u": 8})),
    ("prep_u at 1 stage", dict(STAGES={"prep_u": 1})),
    ("output kernel uncapped", dict(MAXNREG={"o": None})),
    ("output kernel at 8 warps, uncapped", dict(WARPS={"o": 8}, MAXNREG={"o": None})),
    ("output kernel at 1 stage", dict(STAGES={"o": 1})),
    ("output kernel at 1 stage, uncapped", dict(STAGES={"o": 1}, MAXNREG={"o": None})),
    ("rows loop at 1 stage", dict(STAGES={"key_rows": 1})),
    ("rows loop at 2 stages", dict(STAGES={"key_rows": 2})),
    ("per-key values at 8 warps", dict(WARPS={"key_kind2": 8})),
    ("WY erase and read at 8 warps", dict(WARPS={"wy2_erase": 8, "wy2_read": 8})),
    ("WY column block 64", dict(WY_BV=64)),
    ("defaults again", {}),
]
VARIANTS_STASH = [
    ("defaults (version 11: the D_l stash)", {}),
    ("prep_u at 8 warps", dict(WARPS={"prep_u": 8})),
    ("prep_u at 1 stage", dict(STAGES={"prep_u": 1})),
    ("prep_u at 2 stages", dict(STAGES={"prep_u": 2})),
    ("prep column block 32", dict(PREP_BV=32)),
    ("output kernel uncapped", dict(MAXNREG={"o": None})),
    ("output kernel capped at 128", dict(MAXNREG={"o": 128})),
    ("output kernel at 8 warps, uncapped", dict(WARPS={"o": 8}, MAXNREG={"o": None})),
    ("output kernel at 1 stage", dict(STAGES={"o": 1})),
    ("output kernel at 2 stages", dict(STAGES={"o": 2})),
    ("defaults again", {}),
]
VARIANTS_RB = [
    (f"defaults (KEYS_VALUES_BS={pc.KEYS_VALUES_BS})", {}),
    ("values in whole chunks (version 11)", dict(KEYS_VALUES_BS=None)),
    ("values rows 32, 4 warps", dict(KEYS_VALUES_BS=32, WARPS={"key_values_rb": 4})),
    ("values rows 32, 4 warps, maxnreg 168", dict(KEYS_VALUES_BS=32, WARPS={"key_values_rb": 4},
                                                  MAXNREG={"key_values_rb": 168})),
    ("values rows 32, 8 warps", dict(KEYS_VALUES_BS=32, WARPS={"key_values_rb": 8})),
    ("values rows 16, 4 warps", dict(KEYS_VALUES_BS=16, WARPS={"key_values_rb": 4})),
    ("values rows 16, 8 warps", dict(KEYS_VALUES_BS=16, WARPS={"key_values_rb": 8})),
    ("columns rows 32, 4 warps", dict(KEYS_COLUMNS_BS=32, WARPS={"key_columns_rb": 4})),
    ("columns rows 16, 4 warps", dict(KEYS_COLUMNS_BS=16, WARPS={"key_columns_rb": 4})),
    ("columns rows 32, 4 warps, 1 stage", dict(KEYS_COLUMNS_BS=32, STAGES={"key_columns_rb": 1})),
    ("values in whole chunks again", dict(KEYS_VALUES_BS=None)),
    ("defaults again", {}),
]
# session 15: the row-block kernels as they ran on the H100 (prism_rb_diag: the columns kernel in bf16; the values
# kernel with every key kernel's dots at tf32, here RB_D16=False puts only the row blocks at tf32); no setting that
# faulted, so one process
VARIANTS_RB2 = [
    ("defaults (whole chunks)", {}),
    ("columns rows 32", dict(KEYS_COLUMNS_BS=32)),
    ("columns rows 16", dict(KEYS_COLUMNS_BS=16)),
    ("values rows 32, tf32 dots", dict(KEYS_VALUES_BS=32, RB_D16=False)),
    ("values rows 16, tf32 dots", dict(KEYS_VALUES_BS=16, RB_D16=False)),
    ("values and columns rows 32, tf32 dots", dict(KEYS_VALUES_BS=32, KEYS_COLUMNS_BS=32, RB_D16=False)),
    ("defaults again", {}),
]
# session 16: the forward's intermediates in bf16 (FWD_16): Tr, W, Sw, the chunk states, one at a time and together
# ("w" and "hs" leave the forward's outputs unchanged: its dots round them to bf16 anyway)
V11 = dict(FWD_16=(), TR16_DOTS=False)   # version 11's fp32 intermediates (the defaults when these sets first ran)
VARIANTS_BYTES = [
    ("defaults (version 11: fp32 intermediates)", V11),
    ("Tr in bf16", dict(FWD_16=("tr",), TR16_DOTS=False)),
    ("W in bf16", dict(FWD_16=("w",))),
    ("Sw in bf16", dict(FWD_16=("sw",))),
    ("states in bf16", dict(FWD_16=("hs",))),
    ("W and states in bf16", dict(FWD_16=("w", "hs"))),
    ("Tr, W and states in bf16", dict(FWD_16=("tr", "w", "hs"), TR16_DOTS=False)),
    ("Tr, W, Sw and states in bf16", dict(FWD_16=("tr", "w", "sw", "hs"), TR16_DOTS=False)),
    ("defaults again", V11),
]
# session 16, second call: the subsets that call A's per-kernel times point to (Tr in bf16 slowed prep_u by 105 us),
# and Tr in bf16 with prep_u's W and Ub dots taking it as it is (TR16_DOTS)
ALL16 = ("tr", "w", "sw", "hs")
VARIANTS_BYTES2 = [
    ("defaults (version 11: fp32 intermediates)", V11),
    ("Tr, W, Sw and states in bf16 (call A's choice)", dict(FWD_16=ALL16, TR16_DOTS=False)),
    ("W, Sw and states in bf16", dict(FWD_16=("w", "sw", "hs"))),
    ("Sw and states in bf16", dict(FWD_16=("sw", "hs"))),
    ("Tr, W, Sw and states in bf16, prep_u's Tr dots in bf16", dict(FWD_16=ALL16, TR16_DOTS=True)),
    ("defaults again", V11),
]
# prepared in session 16 for the next, on top of version 12: prep_u's two extra-key dots in bf16 (DOT16 "prep_u"),
# the WY erase kernel on the bf16 dH' with no fp32 copy stored (DH16_WY), and both (session 17's choice: version 13).
# Each row names its settings, so the set times the same four configurations with version 13 as the default; its
# "defaults" rows (s16_choose.py's baseline) stay version 12's, as when it chose; max_rel_diff_vs_defaults is
# against the checkout's defaults.
V12_DOT16 = ("h", "o", "dh", "key")
V12 = dict(DOT16=V12_DOT16, DH16_WY=False)
VARIANTS_CAND17 = [
    ("defaults (version 12)", V12),
    ("prep_u's extra-key dots in bf16", dict(DOT16=V12_DOT16 + ("prep_u",), DH16_WY=False)),
    ("WY erase on the bf16 dH'", dict(DOT16=V12_DOT16, DH16_WY=True)),
    ("both", dict(DOT16=V12_DOT16 + ("prep_u",), DH16_WY=True)),
    ("defaults again", V12),
]
# prepared in session 17, on top of version 13: the WY kernels' dots in bf16 at L > 1 (DOT16 "wy"), and with V1 in a
# bf16 buffer of its own (WY_V1_16)
V13_DOT16 = ("h", "o", "dh", "key", "prep_u")
V13 = dict(DOT16=V13_DOT16, WY_V1_16=False)
VARIANTS_CAND18 = [
    ("defaults (version 13)", V13),
    ("WY dots in bf16", dict(DOT16=V13_DOT16 + ("wy",), WY_V1_16=False)),
    ("WY dots in bf16, V1 in bf16", dict(DOT16=V13_DOT16 + ("wy",), WY_V1_16=True)),
    ("defaults again", V13),
]
# session 18: the values launches on column blocks of V (offline sm_90, bf16 dots, 4 warps: whole V 255 registers, two
# CTAs per SM; BV 32 196-225, capped at 168 0-12 B of spills, three CTAs; BV 16 158-160, three CTAs, capped at 128
# 28-52 B of spills, four)
VARIANTS_CAND19 = [
    ("defaults (version 14)", {}),
    ("values V blocks 32", dict(KEYS_VALUES_BV=32)),
    ("values V blocks 32, maxnreg 168", dict(KEYS_VALUES_BV=32, MAXNREG={"key_values_bv": 168})),
    ("values V blocks 16", dict(KEYS_VALUES_BV=16)),
    ("values V blocks 16, maxnreg 128", dict(KEYS_VALUES_BV=16, MAXNREG={"key_values_bv": 128})),
    ("rows loop in two launches", dict(KEYS_ROWS_SPLIT=True)),
    ("rows loop in two launches, values V blocks 32, maxnreg 168",
     dict(KEYS_ROWS_SPLIT=True, KEYS_VALUES_BV=32, MAXNREG={"key_values_bv": 168})),
    ("defaults again", {}),
]
SETS = {None: (VARIANTS, "prism_tune.json"), "stash": (VARIANTS_STASH, "prism_tune_stash.json"),
        "rb": (VARIANTS_RB, "prism_tune_rb.json"), "rb2": (VARIANTS_RB2, "prism_tune_rb2.json"),
        "bytes": (VARIANTS_BYTES, "prism_tune_bytes.json"), "bytes2": (VARIANTS_BYTES2, "prism_tune_bytes2.json"),
        "cand17": (VARIANTS_CAND17, "prism_tune_cand17.json"), "cand18": (VARIANTS_CAND18, "prism_tune_cand18.json"),
        "cand19": (VARIANTS_CAND19, "prism_tune_cand19.json")}
TUNE_SET = os.environ.get("TUNE_SET") or None
if TUNE_SET not in SETS:
    raise SystemExit(f"TUNE_SET must be one of {[k for k in SETS if k]} or unset, got {TUNE_SET!r}")
RUN, NAME = SETS[TUNE_SET]


def main():
    out = out_dir()
    B = TOKENS // T
    res = result_header(shape=dict(B=B, T=T, H=H, K=K, V=K, BT=BT, L=L, dtype=str(DTYPE)), base=as_json(BASE))
    add = row_writer(res, out, NAME, show=lambda row: {k: v for k, v in row.items()
                                                                    if k != "kernels_us_fwd_bwd"})
    x = prism_tensors(B, T, H, K, L, L)
    do = torch.randn_like(x[2])
    ref = None
    for i, (name, settings) in enumerate(RUN):
        def extra(fields):
            fields["ms_fwd"] = median_ms(lambda: chunk_prism(*x, chunk_size=BT), DRY)
            if i == 0 or {"PREP_BV", "KEYS_VALUES_BS", "KEYS_COLUMNS_BS", "FWD_16", "DOT16"} & set(settings):
                fields["kernels_us_fwd_bwd"] = kernel_times(lambda: prism_fwd_bwd(x, do, BT), n=10, dry=DRY, top=20)
        fields, got = settings_variant(pc, BASE, settings, lambda: prism_fwd_bwd(x, do, BT), ref, ("o",) + NAMES,
                                       "max_rel_diff_vs_defaults", extra)
        ref = got if ref is None else ref
        add(dict(variant=name, settings=as_json(settings), **fields))
    print(f"wrote {out}/{NAME}", flush=True)


if __name__ == "__main__":
    main()
