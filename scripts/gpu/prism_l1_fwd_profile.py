#!/usr/bin/env python3
"""Why the L=1 forward trails fla's GDN forward by more at T=8192 (issue 5; kernels/prism/NOTES.md, "Version 6 on an
H100"): harness runs 8 and 9 measured prism-triton L=1 fwd 0.958 / 1.015 ms against gdn-fla-chunk 0.709 at T=8192,
while the gap is ~0.1 ms (the delta_1 pass) at T=2048, 4096 and 16384.

For T in (4096, 8192) (32768 tokens, H=16, K=V=64, bf16), the two methods exactly as the harness calls them (the
registry's make_inputs and fn, the training forward: inputs require grad), timed with do_bench and profiled with
torch.profiler (CUDA time per kernel name over 20 calls). Writes $OUT/prism_l1_fwd_profile.json.
CPU dry run (prism-triton only, interpreter, tiny shape): PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 <this>
"""
from __future__ import annotations

import json
import sys

import torch

from prismbench import registry
from prismbench.registry import Shape

from measure import DEV, DRY, DTYPE, kernel_times, median_ms, out_dir, write_json   # scripts/gpu/measure.py


def main():
    out = out_dir()
    registry.load_all()
    dev = DEV
    dt = DTYPE
    methods = ("prism-triton",) if DRY else ("prism-triton", "gdn-fla-chunk")
    res = []
    for T in ((37,) if DRY else (4096, 8192)):
        tokens, H, K = (74, 2, 16) if DRY else (32768, 16, 64)
        shape = Shape(tokens // T, T, H, K, K, 1, dt, dev)
        for name in methods:
            m = registry.get(name)
            x = m.make_inputs(shape, 0)
            fn = lambda: m.fn(x, shape)   # noqa: E731
            fn()
            row = dict(T=T, method=name, ms=median_ms(fn, DRY), kernels_us=kernel_times(fn, 20, DRY, 14))
            # the input dtypes (an autotune key can hold them)
            row["inputs"] = {n: str(t.dtype).replace("torch.", "") for n, t in x.items() if isinstance(t, torch.Tensor)}
            print(json.dumps(row), flush=True)
            res.append(row)
    write_json(res, out, "prism_l1_fwd_profile.json")


if __name__ == "__main__":
    sys.exit(main())
