#!/usr/bin/env python3
"""Host time of the L=1 forward (issue 5; kernels/prism/NOTES.md, "Version 7", call 4): the gate runs of commit 61daedb
measured prism-triton L=1 fwd at 0.86-1.04 ms (p20-p80 0.83-0.90) at T=2048, where the targets run of the same kernels
measured 0.655 ms and the GPU time of its kernels is ~0.65 ms (results/kernels/prism-l1-fwd-profile-h100.json): a
sub-millisecond call whose launches take longer on the host than its kernels on the GPU is timed at the host's pace.

For T in (2048, 8192) (32768 tokens, H=16, K=V=64, bf16), each callable as the harness calls it (the registry's
make_inputs, inputs requiring grad): prism-triton L=1 fwd, gdn-fla-chunk fwd, and prism-triton's parts (delta_1 alone;
fla's GDN forward alone on a precomputed delta_1; chunk_prism's input check): do_bench median (GPU pace, events) and
the host time per call (200 calls back to back without synchronizing, wall clock / 200, after 20 warm calls; the
launch queue does not fill in 200 sub-millisecond calls, so this is the host's launch pace). Writes
$OUT/prism_l1_host.json.
CPU dry run (prism-triton parts only, interpreter, tiny shape): PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 <this>
"""
from __future__ import annotations

import json
import sys
import time

import torch

from prismbench import registry
from prismbench.kernels.prism import chunk as pc
from prismbench.registry import Shape

from measure import DEV, DRY, DTYPE, median_ms, out_dir, result_header, write_json   # scripts/gpu/measure.py


def host_ms(fn, n=200, warm=20):
    """Wall-clock ms per call of n back-to-back calls (no synchronisation inside), after warm calls."""
    for _ in range(warm if not DRY else 1):
        fn()
    if not DRY:
        torch.cuda.synchronize()
    n = n if not DRY else 2
    t0 = time.perf_counter()
    for _ in range(n):
        fn()
    t1 = time.perf_counter()
    if not DRY:
        torch.cuda.synchronize()
    t2 = time.perf_counter()
    return (t1 - t0) * 1e3 / n, (t2 - t0) * 1e3 / n


def main():
    out = out_dir()
    registry.load_all()
    dev = DEV
    dt = DTYPE
    res = result_header()
    for T in ((37,) if DRY else (2048, 8192)):
        tokens, H, K = (74, 2, 16) if DRY else (32768, 16, 64)
        shape = Shape(tokens // T, T, H, K, K, 1, dt, dev)
        m = registry.get("prism-triton")
        x = m.make_inputs(shape, 0)
        d1 = pc.prism_delta1(x["v"].detach(), x["u"].detach(), x["p"][0].detach())
        scale = K ** -0.5
        fns = {
            "prism-triton fwd": lambda: m.fn(x, shape),
            "delta1": lambda: pc.prism_delta1(x["v"], x["u"], x["p"][0]),
            "fla gdn fwd on delta1 (chunk.py glue)": lambda: pc._fla_gdn_fwd(
                x["q"].detach(), x["k"][0].detach(), d1, x["g"].detach(), x["beta"][0].detach(), scale, None, False,
                64),
            "chunk_prism input check": lambda: pc._check(*(x[n] for n in ("q", "k", "v", "u", "p", "beta", "g")),
                                                         None),
        }
        if not DRY:
            gdn = registry.get("gdn-fla-chunk")
            xg = gdn.make_inputs(shape, 0)
            fns["gdn-fla-chunk fwd"] = lambda: gdn.fn(xg, shape)
        for name, fn in fns.items():
            fn()
            gpu = median_ms(fn, DRY)
            host, host_sync = host_ms(fn)
            row = dict(T=T, callable=name, do_bench_median_ms=gpu, host_ms_per_call=host,
                       wall_ms_per_call_with_final_sync=host_sync)
            print(json.dumps(row), flush=True)
            res["rows"].append(row)
    write_json(res, out, "prism_l1_host.json")


if __name__ == "__main__":
    sys.exit(main())
