#!/usr/bin/env bash
# Prepared in session 16 for the next session's first call (<= 600 s, ~6 min on a fresh H100): TUNE_SET=prepu16
# (prep_u's extra-key dots in bf16, DOT16 "prep_u", against version 12 in one process); when the candidate's
# ms_fwd + ms_fwd_bwd is more than 1% below the defaults' (mean of the two defaults rows), the device's chunk.py gets
# "prep_u" in DOT16 and the whole-grid release check and issue 5's targets run on it; the choice goes to
# $OUT/prepu16_choice.txt.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s17_callA.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
(cd scripts/gpu && TUNE_SET=prepu16 timeout -k 5 120 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_prepu16.log" 2>&1)
echo "tune rc=$? $((SECONDS - S))s"
python3 - "$OUT" > "$OUT/prepu16_choice.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/prism_tune_prepu16.log") if l.startswith('{"variant"')]
for r in rows:
    print("#", r["variant"], r.get("ms_fwd_bwd"), r.get("ms_fwd"), r.get("max_rel_diff_vs_defaults"), r.get("error", "")[:200])
ok = [r for r in rows if "ms_fwd" in r and "ms_fwd_bwd" in r]
base = [r["ms_fwd"] + r["ms_fwd_bwd"] for r in ok if r["variant"].startswith("defaults")]
cand = [r for r in ok if not r["variant"].startswith("defaults")]
if base and cand:
    ref, c = sum(base) / len(base), cand[0]["ms_fwd"] + cand[0]["ms_fwd_bwd"]
    print(f"# candidate {c:.3f} against defaults {ref:.3f} ({c / ref - 1:+.1%})")
    print("on" if c < ref * 0.99 else "off")
else:
    print("off")
PY
cat "$OUT/prepu16_choice.txt"
if [ "$(tail -1 "$OUT/prepu16_choice.txt")" = on ]; then
  sed -i 's/^DOT16 = ("h", "o", "dh", "key")$/DOT16 = ("h", "o", "dh", "key", "prep_u")/' kernels/prism/chunk.py
  grep -n "^DOT16 =" kernels/prism/chunk.py
  PRISM_BUDGET_S=200 timeout -k 5 230 python3 scripts/gpu/prism_triton_check.py --release --no-perf --out "$OUT" \
    > "$OUT/release-check-prepu16.log" 2>&1
  echo "check rc=$? $((SECONDS - S))s"; grep -E "^\[release\]" "$OUT/release-check-prepu16.log"
  TL=$((575 - (SECONDS - S)))
  if [ "$TL" -gt 130 ]; then
    TARGETS_LIMIT=$((TL - 10)) STAGES=targets bash scripts/gpu/kernels_gate_paper.sh
  fi
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
