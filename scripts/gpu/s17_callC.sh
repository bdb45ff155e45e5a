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
S16_BYTES_SET=cand18 python3 scripts/gpu/s16_choose.py "$OUT" > "$OUT/cand18_choice.txt"; cat "$OUT/cand18_choice.txt"
PICK=$(tail -1 "$OUT/cand18_choice.txt")
set -a; eval "$PICK"; set +a
. scripts/gpu/s16_apply.sh
if [ -n "$PICK" ]; then
  PRISM_BUDGET_S=200 timeout -k 5 230 python3 scripts/gpu/prism_triton_check.py --release --no-perf --out "$OUT" \
    > "$OUT/release-check-cand18.log" 2>&1
  echo "check rc=$? $((SECONDS - S))s"; grep -E "^\[release\]" "$OUT/release-check-cand18.log"
  TL=$((575 - (SECONDS - S)))
  if [ "$TL" -gt 130 ]; then
    TARGETS_LIMIT=$((TL - 10)) STAGES=targets bash scripts/gpu/kernels_gate_paper.sh
  fi
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
