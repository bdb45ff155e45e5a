#!/usr/bin/env bash
# Session 16, call C (<= 600 s): TUNE_SET=bytes2 (the FWD_16 subsets after call A, and TR16_DOTS), the choice
# (s16_choose.py with S16_BYTES_SET=bytes2; the row blocks stay whole chunks, as call A's rb2 chose), the tree set to
# it, the release check over issue 5's whole grid, and issue 5's ratios from one process (stage targets) unless the
# choice is call A's (whose targets run call B made), then the FWD_16 GPU tests under it.
#   export PRISMBENCH_GIT_COMMIT=<commit>; bash scripts/gpu/s16_callC.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && TUNE_SET=bytes2 timeout -k 5 150 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_bytes2.log" 2>&1)
echo "tune bytes2 rc=$? $((SECONDS - S))s"
S16_BYTES_SET=bytes2 python3 scripts/gpu/s16_choose.py "$OUT" > "$OUT/choice.txt"; cat "$OUT/choice.txt"
tail -1 "$OUT/choice.txt" > "$OUT/choice.env"
set -a; . "$OUT/choice.env"; set +a
. scripts/gpu/s16_apply.sh
TL=$((300 - (SECONDS - S)))
PRISM_BUDGET_S=$((TL - 20)) timeout -k 5 $TL python3 scripts/gpu/prism_triton_check.py --release --no-perf --out "$OUT" \
  > "$OUT/release-check.log" 2>&1
echo "check rc=$? $((SECONDS - S))s"; grep -E "^\[release\]" "$OUT/release-check.log"
if [ "${S16_FWD16:-}" != '("tr", "w", "sw", "hs",)' ] || [ "${S16_TR16:-False}" != False ]; then
  TL=$((570 - (SECONDS - S)))
  if [ "$TL" -gt 130 ]; then
    TARGETS_LIMIT=$((TL - 10)) STAGES=targets bash scripts/gpu/kernels_gate_paper.sh
    echo "targets $((SECONDS - S))s"
  fi
fi
TL=$((585 - (SECONDS - S)))
if [ "$TL" -gt 40 ]; then
  timeout -k 5 $TL python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py -m gpu -k fwd16 \
    > "$OUT/pytest-gpu-fwd16.log" 2>&1
  echo "gpu tests rc=$? $((SECONDS - S))s"; tail -1 "$OUT/pytest-gpu-fwd16.log"
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
