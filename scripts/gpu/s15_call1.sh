#!/usr/bin/env bash
# Session 15's first device call (<= 600 s on a fresh H100):
#   export PRISMBENCH_GIT_COMMIT=<commit>; bash scripts/gpu/s15_call1.sh
# 1. prism_rb_diag.py: the row-block settings one per child process (whole chunks as the reference; bf16 dots
#    against tf32 dots, transposed loads against transposed block pointers, row blocks of 16, 8 warps, the columns
#    kernel; the faulting session-14 setting last).
# 2. TUNE_SET=stash prism_tune.py: the forward's launchers under version 11's D_l stash (never run before).
set -u
S=$SECONDS
. scripts/gpu/setup.sh
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
(cd scripts/gpu && timeout -k 5 280 python3 prism_rb_diag.py --out "$OUT" > "$OUT/prism_rb_diag.log" 2>&1)
echo "diag rc=$? $((SECONDS - S))s"; cut -c1-400 "$OUT/prism_rb_diag.log"
TL=$((560 - (SECONDS - S))); echo "tune limit $TL"
(cd scripts/gpu && TUNE_SET=stash timeout -k 5 $TL python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune_stash.log" 2>&1)
echo "tune rc=$? $((SECONDS - S))s"
grep -h '"variant"' "$OUT/prism_tune_stash.log" | python3 -c "
import sys, json
for l in sys.stdin:
    r = json.loads(l)
    print(r['variant'], r.get('ms_fwd_bwd'), r.get('ms_fwd'), max((r.get('max_rel_diff_vs_defaults') or {}).values(), default=None), r.get('error', '')[:150])"
save_autotune_cache
echo "all done $((SECONDS - S))s"
