#!/usr/bin/env bash
# Prepared in session 16 for the next session's first call (<= 600 s, ~6 min on a fresh H100): TUNE_SET=cand17
# (on top of version 12, in one process: prep_u's extra-key dots in bf16, DOT16 "prep_u"; the WY erase kernel on the
# bf16 dH', DH16_WY; both). The candidate with the lowest ms_fwd + ms_fwd_bwd, if more than 1% below the defaults'
# (mean of the two defaults rows), is set in the device's chunk.py, and the whole-grid release check and issue 5's
# targets run on it; the choice (s16_choose.py, set by s16_apply.sh) goes to $OUT/cand17_choice.txt.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s17_callA.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && TUNE_SET=cand17 timeout -k 5 150 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_cand17.log" 2>&1)
echo "tune rc=$? $((SECONDS - S))s"
. scripts/gpu/pick_check.sh cand17
save_autotune_cache
echo "all done $((SECONDS - S))s"
