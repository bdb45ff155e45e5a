#!/usr/bin/env bash
# Session 17, call C (<= 600 s on a fresh H100), on top of version 13: TUNE_SET=cand18 (the WY kernels' dots in bf16
# at L > 1, DOT16 "wy"; with V1 in bf16, WY_V1_16) in one process; the GPU tests of both; when a candidate is more
# than 1% below the defaults in ms_fwd + ms_fwd_bwd (s16_choose.py), it is set on the device (s16_apply.sh) and the
# whole-grid release check and issue 5's targets run on it.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s17_callC.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && TUNE_SET=cand18 timeout -k 5 150 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_cand18.log" 2>&1)
echo "tune rc=$? $((SECONDS - S))s"
timeout -k 5 120 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py -k "dot16_wy" \
  > "$OUT/pytest-gpu-wy.log" 2>&1
echo "gpu tests rc=$? $((SECONDS - S))s"; tail -1 "$OUT/pytest-gpu-wy.log"
. scripts/gpu/pick_check.sh cand18
save_autotune_cache
echo "all done $((SECONDS - S))s"
