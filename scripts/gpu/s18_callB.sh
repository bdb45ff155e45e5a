#!/usr/bin/env bash
# Session 18, the candidate call (<= 600 s on a fresh H100; run before s18_callA.sh on the same machine), on top of
# version 14: TUNE_SET=cand19 (the per-key values launches on column blocks of V, KEYS_VALUES_BV 32 / 16, with and
# without the register cap that gives them one more CTA per SM) in one process; the GPU tests of every setting swept;
# when one is more than 1% below the defaults in ms_fwd + ms_fwd_bwd (s16_choose.py), it is set on the device
# (s16_apply.sh) and the whole-grid release check and issue 5's targets run on it. The choice is kept in
# ~/s18_pick.txt for s18_callA.sh on the same machine.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s18_callB.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && TUNE_SET=cand19 timeout -k 5 200 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_cand19.log" 2>&1)
echo "tune rc=$? $((SECONDS - S))s"
timeout -k 5 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py -k "keys_values_bv" \
  > "$OUT/pytest-gpu-values-bv.log" 2>&1
echo "gpu tests rc=$? $((SECONDS - S))s"; tail -1 "$OUT/pytest-gpu-values-bv.log"
. scripts/gpu/pick_check.sh cand19
echo "$PICK" > ~/s18_pick.txt
save_autotune_cache
echo "all done $((SECONDS - S))s"
