#!/usr/bin/env bash
# One device call of a harness sweep on a lent GPU (see README "Reproducing the committed results").
#   scripts/gpu/harness_run.sh PRESET SECONDS [prismbench run options...]
# Installs the carried wheels once per machine, restores carried autotune results (fla autotunes
# each kernel on its first call, for minutes), runs `prismbench run --resume` for at most SECONDS
# (SIGINT then: the results file keeps every finished point, and the next call resumes), and copies
# the results JSON and the autotune cache to $OUT.
set -u
preset=$1; secs=$2; shift 2
export PYTHONUNBUFFERED=1 TRITON_CACHE_AUTOTUNING=1
if ! python3 -c "import fla, pydantic, prismbench.cli" 2>/dev/null; then
  python3 -m pip install -q --no-deps --no-index .carry/*.whl &&
  python3 -m pip install -q --no-deps --no-build-isolation -e . || exit 3
fi
if [ -f scripts/gpu/autotune-cache.tgz ] && [ ! -f ~/.triton/.autotune-restored ]; then
  mkdir -p ~/.triton/cache && tar xzf scripts/gpu/autotune-cache.tgz -C ~/.triton/cache && touch ~/.triton/.autotune-restored
fi
timeout --signal=INT --kill-after=30 "$secs" prismbench run --preset "$preset" --device cuda -o "out/$preset" --resume --no-plot "$@"
rc=$?
cp out/"$preset"/*.json "${OUT:-/tmp}/" 2>/dev/null
(cd ~/.triton/cache 2>/dev/null && find . -name '*.autotune.json' | tar czf "${OUT:-/tmp}/autotune-cache.tgz" -T -)
exit $rc
