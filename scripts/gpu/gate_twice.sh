#!/usr/bin/env bash
# The `gate` preset run twice on one GPU, then gated against itself at tolerance 0: the per-point
# change between the two runs is the run-to-run noise the gate's tolerance must sit above.
#   scripts/gpu/gate_twice.sh SECONDS_PER_RUN
# Writes gate-run1.json (the baseline to commit), gate-run2.json and the two spread reports to $OUT.
set -u
secs=${1:-200}
export PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
if ! python3 -c "import fla, pydantic, prismbench.cli" 2>/dev/null; then
  python3 -m pip install -q --no-deps --no-index .carry/*.whl &&
  python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 3
fi
if [ -f scripts/gpu/autotune-cache.tgz ] && [ ! -f ~/.triton/.autotune-restored ]; then
  mkdir -p ~/.triton/cache && tar xzf scripts/gpu/autotune-cache.tgz -C ~/.triton/cache && touch ~/.triton/.autotune-restored
fi
timeout --signal=INT --kill-after=30 "$secs" prismbench run --preset gate --device cuda -o out/gate-run1 --no-plot
timeout --signal=INT --kill-after=30 "$secs" prismbench run --preset gate --device cuda -o out/gate-run2 --no-plot --no-check
s=$(cd out/gate-run1 && ls gate-*.json | head -1)
cp "out/gate-run1/$s" "$OUT/gate-run1.json"; cp "out/gate-run2/$s" "$OUT/gate-run2.json"
prismbench gate "out/gate-run2/$s" --baseline "out/gate-run1/$s" --tolerance 0 --json "$OUT/gate-spread-ratio.json"
prismbench gate "out/gate-run2/$s" --baseline "out/gate-run1/$s" --tolerance 0 --absolute --json "$OUT/gate-spread-abs.json"
(cd ~/.triton/cache 2>/dev/null && find . -name '*.autotune.json' | tar czf "$OUT/autotune-cache.tgz" -T -)
exit 0
