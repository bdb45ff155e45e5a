#!/usr/bin/env bash
# Session 15's device call when only one may run (<= 600 s): the release check over issue 5's whole grid
# (32 cases), the gate preset twice (a version 11 baseline), then the row-block diag with the time left.
#   export PRISMBENCH_GIT_COMMIT=<commit>; bash scripts/gpu/s15_callA.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
CHECK_BUDGET=170 CHECK_LIMIT=200 GATE_LIMIT=100 STAGES="check gate" timeout -k 5 430 bash scripts/gpu/kernels_gate_paper.sh
echo "check+gate rc=$? $((SECONDS - S))s"
. scripts/gpu/setup.sh
TL=$((575 - (SECONDS - S))); echo "diag limit $TL"
if [ "$TL" -gt 40 ]; then
  (cd scripts/gpu && timeout -k 5 $TL python3 prism_rb_diag.py --out "$OUT" \
     --settings "32,None,4,trans,0;16,None,4;32,None,4,ptr;None,32,4;32,None,4" > "$OUT/prism_rb_diag.log" 2>&1)
  echo "diag rc=$? $((SECONDS - S))s"; cut -c1-300 "$OUT/prism_rb_diag.log"
fi
echo "all done $((SECONDS - S))s"
