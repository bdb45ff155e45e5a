#!/usr/bin/env bash
# Session 18, call C (<= 600 s on a fresh H100), version 14's defaults: the candidates one setting per process
# (prism_vbv_diag.py: the values launches on column blocks of V, whose first call gave wrong gradients or faulted, with
# bf16 and with tf32 key dots; the rows loop in two launches, timed against the defaults in its own process), the
# rows-split GPU tests, then issue 5's targets (run 24, version 14) with the time left.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s18_callC.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && timeout -k 5 230 python3 prism_vbv_diag.py --out "$OUT" > "$OUT/prism_vbv_diag.log" 2>&1)
echo "diag rc=$? $((SECONDS - S))s"; cut -c1-400 "$OUT/prism_vbv_diag.log"
timeout -k 5 100 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py -k "keys_rows_split" \
  > "$OUT/pytest-gpu-rows-split.log" 2>&1
echo "gpu tests rc=$? $((SECONDS - S))s"; tail -1 "$OUT/pytest-gpu-rows-split.log"
TL=$((580 - (SECONDS - S)))
if [ "$TL" -gt 150 ]; then
  TARGETS_LIMIT=$((TL - 10)) STAGES=targets bash scripts/gpu/kernels_gate_paper.sh
fi
echo "all done $((SECONDS - S))s"
