#!/usr/bin/env bash
# Session 16, call B (<= 600 s): with call A's choice (S16_* variables, s16_apply.sh), issue 5's ratios from one
# process (stage targets: prism-triton with GLA, GDN and GDP), the FWD_16 GPU tests, and the pytest-benchmark suite.
#   export PRISMBENCH_GIT_COMMIT=<commit>; S16_FWD16=... S16_VBS=... S16_CBS=... S16_RBD16=... bash scripts/gpu/s16_callB.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
. scripts/gpu/setup.sh
. scripts/gpu/s16_apply.sh
TARGETS_LIMIT=${TARGETS_LIMIT:-200} STAGES=targets bash scripts/gpu/kernels_gate_paper.sh
echo "targets $((SECONDS - S))s"
timeout -k 5 90 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py -m gpu -k fwd16 \
  > "$OUT/pytest-gpu-fwd16.log" 2>&1
echo "gpu tests rc=$? $((SECONDS - S))s"; tail -2 "$OUT/pytest-gpu-fwd16.log"
TL=$((575 - (SECONDS - S)))
if [ "$TL" -gt 60 ]; then
  BENCH_LIMIT=$((TL - 15)) STAGES=bench bash scripts/gpu/kernels_gate_paper.sh
fi
echo "all done $((SECONDS - S))s"
