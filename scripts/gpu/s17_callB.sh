#!/usr/bin/env bash
# Session 17, call B (<= 600 s, ~4 min on a warm or fresh H100), version 13 as the tree's defaults: the GPU tests of
# its two settings (each on and off; the interpreter tests of them too, which check the launches) and of the default
# path, then the pytest-benchmark suite.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s17_callB.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
python3 -c "import pytest_benchmark" 2>/dev/null || python3 -m pip install -q --no-deps --no-index .carry/test/*.whl
timeout -k 5 240 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py \
  -k "v13 or dot16_prep_u or dh16_wy or (gpu_bf16 and not tr_fla and not keys and not prep_split and not fwd16 and not stash and not fla_l1)" \
  > "$OUT/pytest-gpu-v13.log" 2>&1
echo "gpu tests rc=$? $((SECONDS - S))s"; tail -3 "$OUT/pytest-gpu-v13.log"
TL=$((575 - (SECONDS - S)))
if [ "$TL" -gt 60 ]; then
  BENCH_LIMIT=$((TL - 15)) STAGES=bench bash scripts/gpu/kernels_gate_paper.sh
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
