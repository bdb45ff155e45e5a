#!/usr/bin/env bash
# One device call (~9 min on an H100): the PRISM kernel's release check (issue 5: the default settings'
# correctness grid + per-kernel phase times), the gate preset twice (issue 9), and the paper preset's
# missing points (issue 7: prism-triton at every T; the other methods at T=16384, whatever PAPER_16K_METHODS
# names; GATE_RUNS (2): gate runs, the spread needs 2). STAGES picks and orders the stages (default "check gate
# paper paper16k"; also "bench", and "targets": prism-triton with GLA, GDN and GDP in one process, for issue 5's
# ratios from a single process). CHECK_ARGS: more options of the check, e.g. "--fwd-own". Every stage has its own time limit; everything
# lands in $OUT/bundle.tgz (re-packed after each
# stage, so a stage cut off keeps the ones before) plus $OUT/summary.log.
#   export PRISMBENCH_GIT_COMMIT=<commit sent>; bash scripts/gpu/kernels_gate_paper.sh
# First use (2026-11-25, H100): check 144 s, gate runs 82 s (cut at 80 s: 14 of 16 points) and 63 s, paper
# prism-triton cut at 90 s (14 of 16), T=16384 peers cut at 110 s (15 of 18): the limits below are raised to
# match; a whole run needs ~10 minutes of device time, i.e. the call's limit.
set -u
. scripts/gpu/setup.sh
W=${W:-/tmp/bundle}; mkdir -p "$W"
OUTDIR=${OUT:-/tmp/out}; mkdir -p "$OUTDIR"
PAPER_16K_METHODS=${PAPER_16K_METHODS:-prism-fla-dplr,ttt-triton,ttt-fla-chunk,gla-fla-chunk,gdn-fla-chunk,gdp-fla-chunk,sdpa}
pack() { (cd ~/.triton/cache 2>/dev/null && find . -name '*.autotune.json' | tar czf "$W/autotune-cache.tgz" -T -); tar czf "$OUTDIR/bundle.tgz" -C "$W" . ; }
log() { echo "[$(date +%T) +${SECONDS}s] $*" | tee -a "$OUTDIR/summary.log"; }

stage_check() {
log "stage: PRISM release check"
PRISM_BUDGET_S=${CHECK_BUDGET:-150} timeout -k 10 "${CHECK_LIMIT:-200}" \
  python3 scripts/gpu/prism_triton_check.py --release ${CHECK_ARGS:-} --out "$W" > "$W/release-check.log" 2>&1
log "check rc=$?"; grep -E "^\[(release|phase)\]|FAIL|Error" "$W/release-check.log" | tail -8 | tee -a "$OUTDIR/summary.log"; pack
# a kernel that fails its check is not timed: the device time is kept for the fix
if ! python3 -c "import json,sys; sys.exit(0 if json.load(open('$W/prism_triton_check.json')).get('correctness_ok') is True else 1)"; then
  log "STOP: the release check did not pass (correctness_ok is not true); no gate or paper timings"; exit 1
fi
}

stage_gate() {
log "stage: gate preset ${GATE_RUNS:-2} time(s)"
for i in $(seq 1 "${GATE_RUNS:-2}"); do
  timeout --signal=INT -k 20 "${GATE_LIMIT:-110}" prismbench run --preset gate --device cuda -o "out/gate-run$i" \
    --no-plot --no-check > "$W/gate-run$i.log" 2>&1
  log "gate run $i rc=$?"; tail -2 "$W/gate-run$i.log" | tee -a "$OUTDIR/summary.log"
done
g=$(cd out/gate-run1 && ls gate-*.json | head -1)
n=${GATE_RUNS:-2}
for i in $(seq 1 "$n"); do cp "out/gate-run$i/$g" "$W/gate-run$i.json" 2>/dev/null; done
if [ "$n" -ge 2 ]; then  # the run-to-run spread of the last two runs (a fresh machine's first run compiles)
  a="$W/gate-run$((n - 1)).json"; b="$W/gate-run$n.json"
  prismbench gate "$b" --baseline "$a" --tolerance 0 --json "$W/gate-spread-ratio.json" > "$W/gate-spread-ratio.txt" 2>&1
  prismbench gate "$b" --baseline "$a" --tolerance 0 --absolute --json "$W/gate-spread-abs.json" > "$W/gate-spread-abs.txt" 2>&1
fi
rm -rf out/gate-run*; pack
}

stage_bench() {
log "stage: pytest-benchmark suite (tests/bench)"
python3 -c "import pytest_benchmark" 2>/dev/null || python3 -m pip install -q --no-deps --no-index .carry/test/*.whl
timeout --signal=INT -k 20 "${BENCH_LIMIT:-150}" python3 -m pytest tests/bench -q -p no:cacheprovider \
  --benchmark-autosave --benchmark-storage="file://$W/benchmarks" --benchmark-columns=min,median,max,rounds \
  > "$W/bench.log" 2>&1
log "bench rc=$?"; tail -3 "$W/bench.log" | tee -a "$OUTDIR/summary.log"; pack
}

stage_paper() {
log "stage: paper preset, prism-triton at every T"
timeout --signal=INT -k 20 "${PAPER_PRISM_LIMIT:-120}" prismbench run --preset paper --device cuda -o out/paper-prism \
  --no-plot -m prism-triton > "$W/paper-prism.log" 2>&1
log "paper prism-triton rc=$?"; tail -2 "$W/paper-prism.log" | tee -a "$OUTDIR/summary.log"
mv out/paper-prism/paper-*.json "$W/paper-prism-triton.json" 2>/dev/null; pack
}

stage_targets() {  # issue 5's ratios from one process: prism-triton and its three peers at every T
log "stage: paper preset, prism-triton + GLA + GDN + GDP in one process"
timeout --signal=INT -k 20 "${TARGETS_LIMIT:-420}" prismbench run --preset paper --device cuda -o out/paper-targets \
  --no-plot -m prism-triton,gla-fla-chunk,gdn-fla-chunk,gdp-fla-chunk > "$W/paper-targets.log" 2>&1
log "paper targets rc=$?"; tail -2 "$W/paper-targets.log" | tee -a "$OUTDIR/summary.log"
mv out/paper-targets/paper-*.json "$W/paper-targets.json" 2>/dev/null; pack
}

stage_paper16k() {
log "stage: paper preset, other methods at T=16384"
timeout --signal=INT -k 20 "${PAPER_16K_LIMIT:-110}" prismbench run --preset paper --device cuda -o out/paper-16k \
  --no-plot -m "$PAPER_16K_METHODS" --set T=16384 > "$W/paper-16k.log" 2>&1
log "paper T=16384 rc=$?"; tail -2 "$W/paper-16k.log" | tee -a "$OUTDIR/summary.log"
mv out/paper-16k/paper-*.json "$W/paper-16k.json" 2>/dev/null; pack
}

for st in ${STAGES:-check gate paper paper16k}; do
  case "$st" in
    check|gate|bench|paper|targets|paper16k) "stage_$st" ;;
    *) log "unknown stage $st (known: check gate bench paper targets paper16k)"; exit 2 ;;
  esac
done
log "done"
