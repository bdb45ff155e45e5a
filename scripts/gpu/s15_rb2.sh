#!/usr/bin/env bash
# Session 15: the row-block settings that run on the H100, timed in one process (TUNE_SET=rb2); when the fastest
# beats the defaults (mean of the two defaults rows) by more than 1.5% in fwd+bwd, the device's chunk.py is set to it
# and the release check (issue 5's whole grid) runs on it. The choice is logged to $OUT/rb2_choice.txt.
#   export PRISMBENCH_GIT_COMMIT=<commit>; bash scripts/gpu/s15_rb2.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
. scripts/gpu/setup.sh
(cd scripts/gpu && TUNE_SET=rb2 timeout -k 5 200 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_rb2.log" 2>&1)
echo "tune rc=$? $((SECONDS - S))s"
python3 - "$OUT" > "$OUT/rb2_choice.txt" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/prism_tune_rb2.log") if l.startswith('{"variant"')]
for r in rows:
    print("#", r["variant"], r.get("ms_fwd_bwd"), r.get("ms_fwd"), max((r.get("max_rel_diff_vs_defaults") or {}).values(), default=None), r.get("error", "")[:200])
base = [r["ms_fwd_bwd"] for r in rows if r["variant"].startswith("defaults") and "ms_fwd_bwd" in r]
cand = [r for r in rows if not r["variant"].startswith("defaults") and "ms_fwd_bwd" in r]
if base and cand:
    best = min(cand, key=lambda r: r["ms_fwd_bwd"])
    ref = sum(base) / len(base)
    print(f"# best {best['variant']} {best['ms_fwd_bwd']:.3f} against defaults {ref:.3f} ({best['ms_fwd_bwd'] / ref - 1:+.1%})")
    if best["ms_fwd_bwd"] < ref * 0.985:
        s = best["settings"]
        print(s.get("KEYS_VALUES_BS"), s.get("KEYS_COLUMNS_BS"), s.get("RB_D16", True))
PY
cat "$OUT/rb2_choice.txt"
set -- $(grep -v '^#' "$OUT/rb2_choice.txt")
if [ $# -eq 3 ]; then
  C=kernels/prism/chunk.py
  sed -i "s/^KEYS_VALUES_BS = None/KEYS_VALUES_BS = $1/; s/^KEYS_COLUMNS_BS = None/KEYS_COLUMNS_BS = $2/; s/^RB_D16 = True/RB_D16 = $3/" $C
  grep -n "^KEYS_VALUES_BS =\|^KEYS_COLUMNS_BS =\|^RB_D16 =" $C
  TL=$((560 - (SECONDS - S))); echo "check limit $TL"
  PRISM_BUDGET_S=$((TL - 30)) timeout -k 5 $TL python3 scripts/gpu/prism_triton_check.py --release --no-perf --out "$OUT" > "$OUT/release-check-rb2.log" 2>&1
  echo "check rc=$? $((SECONDS - S))s"; grep -E "^\[release\]" "$OUT/release-check-rb2.log"
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
