#!/usr/bin/env bash
# Session 18, call C (<= 600 s on a fresh H100), version 14's defaults: the candidates one setting per process
# (prism_vbv_diag.py: the values launches on column blocks of V, whose first call gave wrong gradients or faulted, at
# tf32 key dots; the rows loop in two launches, timed against the defaults in its own process), the
# rows-split GPU tests, then issue 5's targets (run 24, version 14) with the time left.
# VBV_SETTINGS: the diag's settings (default: the rows split, the values column blocks of 32 at tf32 key dots, without
# and under the 168 cap; bf16 key dots with column blocks are refused on a GPU); CALL_S: the call's budget in seconds (default 580; the targets run only with more than 150 s of it left).
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s18_callC.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && timeout -k 5 200 python3 prism_vbv_diag.py --out "$OUT" --settings "${VBV_SETTINGS:-None,None,1,1;32,None,0,0;32,168,0,0}" \
  > "$OUT/prism_vbv_diag.log" 2>&1)
echo "diag rc=$? $((SECONDS - S))s"; cut -c1-400 "$OUT/prism_vbv_diag.log"
timeout -k 5 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py -k "keys_rows_split" \
  > "$OUT/pytest-gpu-rows-split.log" 2>&1
echo "gpu tests rc=$? $((SECONDS - S))s"; tail -1 "$OUT/pytest-gpu-rows-split.log"
TL=$((${CALL_S:-580} - (SECONDS - S)))
if [ "$TL" -gt 150 ]; then
  TARGETS_LIMIT=$((TL - 10)) STAGES=targets bash scripts/gpu/kernels_gate_paper.sh
fi
echo "all done $((SECONDS - S))s"
