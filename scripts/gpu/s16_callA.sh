#!/usr/bin/env bash
# Session 16, call A (<= 600 s): the FWD_16 sweep (TUNE_SET=bytes) and session 15's row-block sweep (rb2) in one
# process each, the choice (s16_choose.py -> $OUT/choice.env), the tree set to it (s16_apply.sh) and the release check
# over issue 5's whole grid with the time left. Call B (s16_callB.sh) takes the choice as environment variables.
#   export PRISMBENCH_GIT_COMMIT=<commit>; bash scripts/gpu/s16_callA.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
for set in bytes rb2; do
  (cd scripts/gpu && TUNE_SET=$set timeout -k 5 170 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_$set.log" 2>&1)
  echo "tune $set rc=$? $((SECONDS - S))s"
done
python3 scripts/gpu/s16_choose.py "$OUT" > "$OUT/choice.txt"; cat "$OUT/choice.txt"
tail -1 "$OUT/choice.txt" > "$OUT/choice.env"
set -a; . "$OUT/choice.env"; set +a
. scripts/gpu/s16_apply.sh
TL=$((580 - (SECONDS - S))); echo "check limit $TL"
if [ "$TL" -gt 60 ]; then
  PRISM_BUDGET_S=$((TL - 25)) timeout -k 5 $TL python3 scripts/gpu/prism_triton_check.py --release --no-perf --out "$OUT" \
    > "$OUT/release-check.log" 2>&1
  echo "check rc=$? $((SECONDS - S))s"; grep -E "^\[release\]" "$OUT/release-check.log"
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
