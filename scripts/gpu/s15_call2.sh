#!/usr/bin/env bash
# Session 15's second device call (<= 600 s): the release check over issue 5's whole grid (32 cases), the gate
# preset twice (the H100 baseline for version 11: it was version 10's), the pytest-benchmark suite (results/bench
# was version 7's; its wheels are carried in .carry/test).
#   export PRISMBENCH_GIT_COMMIT=<commit>; bash scripts/gpu/s15_call2.sh
set -u
S=$SECONDS
nvidia-smi --query-gpu=name,driver_version --format=csv > "${OUT:-/tmp/out}/gpu.txt"
CHECK_BUDGET=${CHECK_BUDGET:-170} CHECK_LIMIT=${CHECK_LIMIT:-210} GATE_LIMIT=${GATE_LIMIT:-110} BENCH_LIMIT=${BENCH_LIMIT:-80} \
  STAGES=${STAGES:-"check gate bench"} timeout -k 5 585 bash scripts/gpu/kernels_gate_paper.sh
echo "rc=$? $((SECONDS - S))s"
