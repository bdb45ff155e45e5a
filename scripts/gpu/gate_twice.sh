#!/usr/bin/env bash
# The `gate` preset run twice on one GPU, then gated against itself at tolerance 0: the per-point
# change between the two runs is the run-to-run noise the gate's tolerance must sit above.
#   scripts/gpu/gate_twice.sh SECONDS_PER_RUN
# Writes gate-run1.json (the baseline to commit), gate-run2.json and the two spread reports to $OUT.
set -u
secs=${1:-200}
. scripts/gpu/setup.sh
timeout --signal=INT --kill-after=30 "$secs" prismbench run --preset gate --device cuda -o out/gate-run1 --no-plot
timeout --signal=INT --kill-after=30 "$secs" prismbench run --preset gate --device cuda -o out/gate-run2 --no-plot --no-check
s=$(cd out/gate-run1 && ls gate-*.json | head -1)
cp "out/gate-run1/$s" "$OUT/gate-run1.json"; cp "out/gate-run2/$s" "$OUT/gate-run2.json"
prismbench gate "out/gate-run2/$s" --baseline "out/gate-run1/$s" --tolerance 0 --json "$OUT/gate-spread-ratio.json"
prismbench gate "out/gate-run2/$s" --baseline "out/gate-run1/$s" --tolerance 0 --absolute --json "$OUT/gate-spread-abs.json"
save_autotune_cache
exit 0
