#!/usr/bin/env bash
# Prepared in session 17 for the next session's first call (<= 600 s, ~7 min on a fresh H100), on version 14 as the
# tree's defaults (session 18: run second, after s18_callB.sh on the same machine, with its choice when it chose one):
# the gate preset twice (version 14 had no gate run; the second pair's better run becomes the H100 baseline), the
# launch settings swept again under version 14 (prism_tune.py's default set: warps, stages, register caps, column
# blocks, one at a time; the WY kernels now take bf16 dots and read bf16 V1, so their 8-warp and column block rows are
# worth timing again), and the pytest-benchmark suite.
#   export PRISMBENCH_GIT_COMMIT=<full commit>; bash scripts/gpu/s18_callA.sh
set -u
S=$SECONDS
OUT=${OUT:-/tmp/out}; mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version --format=csv > "$OUT/gpu.txt"
. scripts/gpu/setup.sh
# session 18: the candidate call (s18_callB.sh) ran first on this machine; its choice, if any, is set here too
# (and the GPU tests of the settings it swept run here, before the gate, instead of the default launch-settings sweep)
TUNE=1
if [ -s ~/s18_pick.txt ]; then
  PICK=$(cat ~/s18_pick.txt); echo "pick: $PICK"; set -a; eval "$PICK"; set +a; . scripts/gpu/s16_apply.sh
  timeout -k 5 150 python3 -m pytest -q -p no:cacheprovider tests/kernels/test_prism_triton.py \
    -k "keys_values_bv or keys_rows_split" > "$OUT/pytest-gpu-cand19.log" 2>&1
  echo "gpu tests rc=$? $((SECONDS - S))s"; tail -1 "$OUT/pytest-gpu-cand19.log"
  TUNE=0
fi
GATE_LIMIT=100 STAGES=gate bash scripts/gpu/kernels_gate_paper.sh
echo "gate $((SECONDS - S))s"
if [ "$TUNE" = 1 ]; then
  (cd scripts/gpu && timeout -k 5 200 python3 prism_tune.py --out "$OUT" > "$OUT/prism_tune.log" 2>&1)
  echo "tune rc=$? $((SECONDS - S))s"
fi
[ -f "$OUT/prism_tune.log" ] && python3 - "$OUT" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1] + "/prism_tune.log") if l.startswith('{"variant"')]
for r in rows:
    print(f"# {r['variant']}: fwd+bwd {r.get('ms_fwd_bwd')} fwd {r.get('ms_fwd')} {r.get('error', '')[:120]}")
PY
TL=$((575 - (SECONDS - S)))
if [ "$TL" -gt 60 ]; then
  BENCH_LIMIT=$((TL - 15)) STAGES=bench bash scripts/gpu/kernels_gate_paper.sh
fi
save_autotune_cache
echo "all done $((SECONDS - S))s"
