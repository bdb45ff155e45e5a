# Sourced by the session 17 call scripts after a sweep (prism_tune.py TUNE_SET=$1 into $OUT): picks its winner
# (s16_choose.py: lowest ms_fwd + ms_fwd_bwd, more than 1% below the defaults), sets it in the device's copy of
# chunk.py (s16_apply.sh), and when something won runs the whole-grid release check and, with the time left of the
# call's 575 s (counted from $S), issue 5's targets on it. The choice goes to $OUT/$1_choice.txt.
#   . scripts/gpu/pick_check.sh cand18
SET=$1
S16_BYTES_SET=$SET python3 scripts/gpu/s16_choose.py "$OUT" > "$OUT/${SET}_choice.txt"; cat "$OUT/${SET}_choice.txt"
PICK=$(tail -1 "$OUT/${SET}_choice.txt")
set -a; eval "$PICK"; set +a
. scripts/gpu/s16_apply.sh
if [ -n "$PICK" ]; then
  PRISM_BUDGET_S=200 timeout -k 5 230 python3 scripts/gpu/prism_triton_check.py --release --no-perf --out "$OUT" \
    > "$OUT/release-check-$SET.log" 2>&1
  echo "check rc=$? $((SECONDS - S))s"; grep -E "^\[release\]" "$OUT/release-check-$SET.log"
  TL=$((575 - (SECONDS - S)))
  if [ "$TL" -gt 130 ]; then
    TARGETS_LIMIT=$((TL - 10)) STAGES=targets bash scripts/gpu/kernels_gate_paper.sh
  fi
fi
