#!/usr/bin/env bash
# Session 18, the candidate call (<= 600 s on a fresh H100; run before s18_callA.sh on the same machine), on top of
# version 14: TUNE_SET=cand19 (the per-key values launches on column blocks of V, KEYS_VALUES_BV 32 / 16, with and
# without the register cap that gives them one more CTA per SM; the rows loop in two launches, KEYS_ROWS_SPLIT) in one
# process; when one is more than 1% below the defaults in ms_fwd + ms_fwd_bwd (s16_choose.py), it is set on the device
# (s16_apply.sh) and the whole-grid release check and issue 5's targets run on it. The choice is kept in
# ~/s18_pick.txt for s18_callA.sh on the same machine. Then the GPU tests of every setting swept, with the time left.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s18_callB.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && TUNE_SET=cand19 timeout -k 5 200 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_cand19.log" 2>&1)
echo "tune rc=$? $((SECONDS - S))s"
. scripts/gpu/pick_check.sh cand19
echo "$PICK" > ~/s18_pick.txt
TL=$((575 - (SECONDS - S)))
if [ "$TL" -gt 60 ]; then   # the GPU tests of every swept setting, with the time left (else s18_callA.sh runs them)
  timeout -k 5 $((TL - 10)) python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py \
    -k "keys_values_bv or keys_rows_split" > "$OUT/pytest-gpu-cand19.log" 2>&1
  echo "gpu tests rc=$? $((SECONDS - S))s"; tail -1 "$OUT/pytest-gpu-cand19.log"
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
