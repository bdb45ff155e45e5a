#!/usr/bin/env bash
# Session 14's device call for the row-block kernels (one call, <= 600 s on a fresh H100):
#   export PRISMBENCH_GIT_COMMIT=<commit>; bash scripts/gpu/rb_call.sh
# 1. prism_rb_diag.py: each row-block setting in its own process (CUDA_LAUNCH_BLOCKING=1) against whole chunks;
#    compute-sanitizer on the default setting when it faults and the tool is there.
# 2. The default setting is kept if it passed, else the first that passed of: transposed block pointers
#    (RB_LOADS="ptr"), row blocks of 16; else KEYS_VALUES_BS = None (the device's copy of chunk.py is edited; the
#    choice is logged to $OUT/rb_choice.txt).
# 3. TUNE_SET=rb prism_tune.py (when a row-block setting passed), 4. the release check, 5. the targets run, with the
#    time left.
set -u
S=$SECONDS
. scripts/gpu/setup.sh
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
(cd scripts/gpu && timeout -k 5 200 python3 prism_rb_diag.py --out "$OUT" > "$OUT/prism_rb_diag.log" 2>&1)
echo "diag rc=$? $((SECONDS - S))s"; cut -c1-300 "$OUT/prism_rb_diag.log"
ok() { python3 -c "import json,sys; r={x['setting']: x['ok'] for x in json.load(open('$OUT/prism_rb_diag.json'))}; sys.exit(0 if r.get('$1') else 1)"; }
C=kernels/prism/chunk.py
if ok "32,None,trans"; then echo "rb: defaults (32, trans)" > "$OUT/rb_choice.txt"
else
  SAN=$(command -v compute-sanitizer || ls /usr/local/cuda*/bin/compute-sanitizer 2>/dev/null | head -1)
  [ -n "$SAN" ] && (cd scripts/gpu && timeout -k 5 90 "$SAN" --print-limit 3 python3 prism_rb_diag.py --one 32,None,trans > "$OUT/sanitizer.log" 2>&1)
  if ok "32,None,ptr"; then sed -i 's/^RB_LOADS = "trans"/RB_LOADS = "ptr"/' $C; echo "rb: 32, ptr" > "$OUT/rb_choice.txt"
  elif ok "16,None,trans"; then sed -i 's/^KEYS_VALUES_BS = 32/KEYS_VALUES_BS = 16/' $C; echo "rb: 16, trans" > "$OUT/rb_choice.txt"
  else sed -i 's/^KEYS_VALUES_BS = 32/KEYS_VALUES_BS = None/' $C; echo "rb: none passed, whole chunks" > "$OUT/rb_choice.txt"; fi
fi
cat "$OUT/rb_choice.txt"; grep -n "^KEYS_VALUES_BS =\|^RB_LOADS =" $C
if ! grep -q "whole chunks" "$OUT/rb_choice.txt"; then
  (cd scripts/gpu && TUNE_SET=rb timeout -k 5 150 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_rb.log" 2>&1)
  echo "rb tune rc=$? $((SECONDS - S))s"
  grep -h '"variant"' "$OUT/prism_tune_rb.log" | python3 -c "
import sys, json
for l in sys.stdin:
    r = json.loads(l)
    print(r['variant'], r.get('ms_fwd_bwd'), r.get('ms_fwd'), max((r.get('max_rel_diff_vs_defaults') or {}).values(), default=None), r.get('error', '')[:150])"
fi
CHECK_BUDGET=80 CHECK_LIMIT=120 STAGES="check" bash scripts/gpu/kernels_gate_paper.sh
echo "check done $((SECONDS - S))s"
TL=$((570 - (SECONDS - S))); echo "targets limit $TL"
[ "$TL" -gt 120 ] && TARGETS_LIMIT=$TL STAGES="targets" bash scripts/gpu/kernels_gate_paper.sh
echo "all done $((SECONDS - S))s"
