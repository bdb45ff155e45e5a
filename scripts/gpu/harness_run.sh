#!/usr/bin/env bash
# One device call of a harness sweep on a lent GPU (scripts/gpu/README.md).
#   scripts/gpu/harness_run.sh PRESET SECONDS [prismbench run options...]
# Installs the carried wheels once per machine, restores the committed autotune results (fla autotunes
# each kernel on its first call, for minutes), runs `prismbench run --resume` for at most SECONDS
# (SIGINT then: the results file keeps every finished point, and the next call resumes), and copies
# the results JSON and the autotune cache to $OUT.
set -u
preset=$1; secs=$2; shift 2
. scripts/gpu/setup.sh
timeout --signal=INT --kill-after=30 "$secs" prismbench run --preset "$preset" --device cuda -o "out/$preset" --resume --no-plot "$@"
rc=$?
cp out/"$preset"/*.json "${OUT:-/tmp}/" 2>/dev/null
save_autotune_cache
exit $rc
