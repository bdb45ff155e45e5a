#!/usr/bin/env python3
"""Hardware counters of every kernel of one PRISM L=3 forward + backward at the perf shape (issue 5; bf16, H=16,
K=V=64, 32768 tokens, T=2048), and of fla's GLA forward + backward and GDN forward beside it: what binds each kernel
(DRAM bytes and bandwidth, SM and tensor-pipe use, occupancy, spills, stall reasons), for kernels/prism/NOTES.md.

The script warms every path up (compiles, autotunes), then brackets one call of each section with
cudaProfilerStart/Stop, so ncu with `--profile-from-start off` sees those calls' kernels only:
    ncu --clock-control none --profile-from-start off --csv --page raw --print-units base --metrics <METRICS> \\
        python3 scripts/gpu/prism_ncu.py --profile > ncu.csv
    python3 scripts/gpu/prism_ncu.py --parse ncu.csv --out $OUT      # -> $OUT/prism_ncu.json
(scripts/gpu/prism_ncu.sh runs both.) Section order in the profiled region: prism L=3 fwd+bwd, prism L=3 fwd, GLA
fwd+bwd, GDN fwd; each kernel row names the section it ran in (the parse step splits on `section_marker_kernel`,
launched on a grid of i + 1 programs before section i).
CPU dry run (interpreter, tiny shapes, no ncu, the fla sections left out: tests the profiled PRISM path only):
PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_ncu.py --profile
"""
from __future__ import annotations

import argparse
import csv
import io
import os
import sys

import torch
import triton
import triton.language as tl

from measure import DEV, DRY, prism_fwd_bwd, prism_tensors, result_header, write_json

T, H, K, BT, TOKENS = (37, 2, 16, 16, 74) if DRY else (2048, 16, 64, 64, 32768)
L = 3
SECTIONS = ("prism L=3 fwd+bwd", "prism L=3 fwd", "gla fwd+bwd", "gdn fwd")

METRICS = (
    "gpu__time_duration.sum",
    "dram__bytes_read.sum",
    "dram__bytes_write.sum",
    "lts__t_bytes.sum",
    "dram__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__throughput.avg.pct_of_peak_sustained_elapsed",
    "sm__pipe_tensor_op_hmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__pipe_tensor_op_gmma_cycles_active.avg.pct_of_peak_sustained_active",
    "sm__inst_executed_pipe_fma.avg.pct_of_peak_sustained_active",
    "sm__warps_active.avg.pct_of_peak_sustained_active",
    "launch__registers_per_thread",
    "launch__block_size",
    "launch__grid_size",
    "launch__shared_mem_per_block_dynamic",
    "launch__shared_mem_per_block_static",
    "launch__occupancy_limit_registers",
    "launch__occupancy_limit_shared_mem",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_ld.sum",
    "l1tex__t_bytes_pipe_lsu_mem_local_op_st.sum",
    "smsp__average_warps_issue_stalled_long_scoreboard_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_barrier_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_mio_throttle_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_short_scoreboard_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_math_pipe_throttle_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_wait_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_lg_throttle_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_not_selected_per_issue_active.ratio",
    "smsp__average_warps_issue_stalled_dispatch_stall_per_issue_active.ratio",
    "smsp__issue_active.avg.pct_of_peak_sustained_active",
)


@triton.jit
def section_marker_kernel(x):
    tl.store(x + tl.program_id(0), 1.0)


def marker(i: int) -> None:
    """Section i starts: a kernel the parser finds by name, its grid (i + 1 programs) says which section."""
    section_marker_kernel[(i + 1,)](torch.empty(i + 1, device=DEV))


def sections():
    """The four profiled calls (warmed up by the caller running them once before)."""
    B = TOKENS // T
    x = prism_tensors(B, T, H, K, L, 0)
    do = torch.randn_like(x[2])
    from prismbench.kernels.prism.chunk import chunk_prism

    calls = [lambda: prism_fwd_bwd(x, do, BT),
             lambda: chunk_prism(*x, chunk_size=BT)]
    if not DRY:
        from fla.ops.gated_delta_rule import chunk_gated_delta_rule
        from fla.ops.gla import chunk_gla

        q, k, v = (torch.randn(B, T, H, K, device=DEV, dtype=torch.bfloat16) for _ in range(3))
        k = torch.nn.functional.normalize(k.float(), dim=-1).to(torch.bfloat16)
        gk = torch.nn.functional.logsigmoid(torch.randn(B, T, H, K, device=DEV)).to(torch.bfloat16) / 16
        g = torch.nn.functional.logsigmoid(torch.randn(B, T, H, device=DEV)) / 16
        beta = torch.rand(B, T, H, device=DEV, dtype=torch.bfloat16)
        leaves = [t.detach().requires_grad_(True) for t in (q, k, v, gk)]

        def gla():
            o = chunk_gla(*leaves)[0]
            torch.autograd.grad(o, leaves, do)

        calls += [gla, lambda: chunk_gated_delta_rule(q, k, v, g, beta)]
    return calls


def profile() -> None:
    calls = sections()
    for c in calls:   # compile, autotune
        c()
        c()
    if not DRY:
        torch.cuda.synchronize()
        torch.cuda.profiler.start()
    for i, c in enumerate(calls):
        marker(i)
        c()
    if not DRY:
        torch.cuda.synchronize()
        torch.cuda.profiler.stop()
    print(f"profiled {len(calls)} sections", file=sys.stderr)


def _num(s: str):
    try:
        return float(s.replace(",", ""))
    except ValueError:
        return s


def parse(text: str) -> dict:
    """ncu --csv --page raw output -> {section: [kernel rows]} with derived fields (bytes in MB, bandwidth in TB/s,
    time in us), and per-section totals."""
    lines = [ln for ln in text.splitlines() if ln.startswith('"')]
    rows = list(csv.DictReader(io.StringIO("\n".join(lines))))
    rows = [r for r in rows if r.get("ID", "").strip().isdigit()]    # drops the units row
    out = {s: [] for s in SECTIONS}
    sec = None
    for r in rows:
        name = r.get("Kernel Name", "")
        if "section_marker" in name:
            sec = SECTIONS[int(_num(r.get("launch__grid_size", "1"))) - 1]
            continue
        if sec is None:
            continue
        m = {k: _num(v) for k, v in r.items() if k in METRICS}
        t_ns = m.get("gpu__time_duration.sum", 0.0)
        rd, wr = m.get("dram__bytes_read.sum", 0.0), m.get("dram__bytes_write.sum", 0.0)
        row = dict(kernel=name[:80], us=round(t_ns / 1e3, 1), dram_read_MB=round(rd / 1e6, 1),
                   dram_write_MB=round(wr / 1e6, 1),
                   dram_TBps=round((rd + wr) / t_ns / 1e3, 2) if t_ns else None,
                   **{k: v for k, v in m.items()})
        out[sec].append(row)
    totals = {}
    for s, ks in out.items():
        us = sum(k["us"] for k in ks)
        mb = sum(k["dram_read_MB"] + k["dram_write_MB"] for k in ks)
        totals[s] = dict(kernels=len(ks), us=round(us, 1), dram_MB=round(mb, 1),
                         dram_TBps=round(mb / us, 2) if us else None)   # MB / us = TB/s
    return dict(sections=out, totals=totals)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--profile", action="store_true")
    ap.add_argument("--parse")
    ap.add_argument("--metrics", help="print METRICS that this ncu knows (its --query-metrics output in this file)")
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    a = ap.parse_args()
    if a.metrics:
        known = {ln.split()[0] for ln in open(a.metrics) if ln.strip()}
        print(",".join(m for m in METRICS if m.startswith("launch__") or m.split(".")[0] in known))
        return
    if a.profile:
        profile()
    if a.parse:
        res = result_header(shape=dict(B=TOKENS // T, T=T, H=H, K=K, V=K, BT=BT, L=L, dtype="bfloat16"),
                            metrics=list(METRICS), **parse(open(a.parse).read()))
        del res["rows"]
        write_json(res, a.out, "prism_ncu.json")
        for s, t in res["totals"].items():
            print(s, t)
            for k in res["sections"][s]:
                print("   ", k["kernel"][:60], k["us"], "us", k["dram_read_MB"], "+", k["dram_write_MB"], "MB",
                      k["dram_TBps"], "TB/s")


if __name__ == "__main__":
    main()
