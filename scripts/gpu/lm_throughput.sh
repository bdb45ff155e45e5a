#!/usr/bin/env bash
# Model-level training throughput (issue 10) on one GPU: the `130m` LM with every mixer,
# T in {2048, 4096, 8192, 16384}, 32768 tokens per step, bf16 autocast, AdamW.
#
# One device-tool call, from the repository root (carry=[".carry"]: fla-core and pydantic wheels):
#   python3 -m pip install -q --no-deps --no-index .carry/*.whl && \
#   python3 -m pip install -q --no-deps --no-build-isolation -e . && bash scripts/gpu/lm_throughput.sh
#
# Writes under $OUT: train-130m-<gpu>.json (results format, mode "train"), figures/ (tokens/s vs T,
# PRISM/TTT ratio per TTT backend, peak memory, a Markdown table) and lm_throughput.log.
# Wall time is bounded (~8.5 min): 2 warm-up + 3 timed steps per point, the per-token PyTorch TTT
# loops 0 + 1 step; every point has a time budget (a timeout or an out-of-memory point is recorded,
# not fatal), and the whole run has TOTAL_BUDGET seconds, after which the rest is recorded as skipped.
# Environment: MODELS (default all; e.g. "ttt-loop,ttt-loop-simplified" for a second call),
# TOTAL_BUDGET (default 450), POINT_BUDGET (60), SERIAL_BUDGET (120), FIRST_EXTRA (90).
set -u
OUT=${OUT:-results}
MODELS=${MODELS:-all}
export PYTHONUNBUFFERED=1
mkdir -p "$OUT"
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader || true
python3 -c "import torch, triton; print('torch', torch.__version__, 'triton', triton.__version__)"
timeout -k 10 540 prismbench train-throughput --config 130m --models "$MODELS" \
    --warmup 2 --steps 3 --serial-warmup 0 --serial-steps 1 \
    --point-budget "${POINT_BUDGET:-60}" --serial-budget "${SERIAL_BUDGET:-120}" \
    --first-point-extra "${FIRST_EXTRA:-90}" --total-budget "${TOTAL_BUDGET:-450}" \
    --out "$OUT" 2>&1 | tee "$OUT/lm_throughput.log"
rc=${PIPESTATUS[0]}
# the command plots at its end; if it was cut off, plot what the results file holds
if [ "$rc" -ne 0 ] && ls "$OUT"/train-130m-*.json >/dev/null 2>&1; then
    python3 -m prismbench.lm.plots "$OUT"/train-130m-*[!v].json -o "$OUT/figures" 2>&1 | tee -a "$OUT/lm_throughput.log"
fi
echo "exit status $rc"
exit "$rc"
