#!/usr/bin/env bash
# Hardware counters of one PRISM L=3 fwd+bwd, fla GLA fwd+bwd and GDN fwd at the perf shape (scripts/gpu/prism_ncu.py):
#   export PRISMBENCH_GIT_COMMIT=<commit sent>; bash scripts/gpu/prism_ncu.sh     # -> $OUT/prism_ncu.json, ncu.csv
set -u
. scripts/gpu/setup.sh
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
ncu --query-metrics > /tmp/ncu-metrics.txt 2>&1
M=$(cd scripts/gpu && python3 prism_ncu.py --metrics /tmp/ncu-metrics.txt)
echo "metrics: $M"
(cd scripts/gpu && timeout -k 10 "${NCU_LIMIT:-300}" ncu --clock-control none --profile-from-start off --csv --page raw --print-units base \
  --metrics "$M" python3 prism_ncu.py --profile) > "$OUTDIR/ncu.csv" 2> "$OUTDIR/ncu.err"
echo "ncu rc=$?"; tail -5 "$OUTDIR/ncu.err"
(cd scripts/gpu && python3 prism_ncu.py --parse "$OUTDIR/ncu.csv" --out "$OUTDIR")
