#!/usr/bin/env python3
"""Chunk length 64 against 32 (issue 5; kernels/prism/NOTES.md, "Version 7"): the backward's per-key kernels hold
several [BT, BT] and [BT, 64] fp32 tiles per program (240-255 registers at BT=64, 2 CTAs of 4 warps per SM); at BT=32
the [BT, BT] tiles are a quarter and the intra-chunk C^2 K work per token halves, while the two sequential passes
take twice as many steps. chunk_prism takes chunk_size 16 / 32 / 64 already; this measures which is faster at L=3.

For L in (3, 1), T in (2048, 16384) (32768 tokens, H=16, K=V=64, bf16) and chunk_size in (64, 32): the autograd
forward (inputs require grad, as the harness's training forward) and forward+backward (do_bench medians), the largest
relative difference of o and every gradient from chunk 64's (both are bf16 kernels: expected ~1e-3 to 1e-2 in the
max-abs sense), peak memory of one fwd+bwd, and the CUDA time per kernel over 5 fwd+bwd calls (torch.profiler).
Writes $OUT/prism_chunk_size.json.
CPU dry run (interpreter, tiny shape): PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_chunk_size.py
"""
from __future__ import annotations

import json
import sys

import torch

from prismbench.kernels.prism.chunk import chunk_prism
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.registry import Shape

# scripts/gpu/measure.py
from measure import DEV, DRY, DTYPE, kernel_times, max_rel_diff, median_ms, out_dir, result_header, write_json

NAMES = ("q", "k", "v", "u", "p", "beta", "g")


def main():
    out = out_dir()
    H, K, tokens = (2, 16, 74) if DRY else (16, 64, 32768)
    dt = DTYPE
    res = result_header()
    for L in (3, 1):
        for T in ((37,) if DRY else (2048, 16384)):
            B = tokens // T
            x = make_prism_inputs(Shape(B, T, H, K, K, L, dt, DEV), 0)
            do = torch.randn_like(x["v"])
            ref = None
            for bt in ((16, 32) if DRY else (64, 32)):
                def fwd():
                    return chunk_prism(*(x[n] for n in NAMES), chunk_size=bt)[0]

                def fwdbwd():
                    for n in NAMES:
                        x[n].grad = None
                    fwd().backward(do)

                row = dict(L=L, T=T, B=B, chunk_size=bt)
                try:
                    fwdbwd()
                    outs = [fwd().detach()] + [x[n].grad.detach().clone() for n in NAMES]
                    if ref is None:
                        ref = outs
                    else:
                        row["max_rel_diff_vs_first"] = max_rel_diff(outs, ref)
                        row["max_rel_diff_each"] = {n: max_rel_diff([o], [r]) for n, o, r in
                                                    zip(("o",) + NAMES, outs, ref)}
                    row["fwd_ms"] = median_ms(fwd, DRY)
                    row["fwdbwd_ms"] = median_ms(fwdbwd, DRY)
                    if not DRY:
                        torch.cuda.synchronize()
                        torch.cuda.reset_peak_memory_stats()
                        fwdbwd()
                        torch.cuda.synchronize()
                        row["peak_mib"] = round(torch.cuda.max_memory_allocated() / 2 ** 20, 1)
                    row["kernels_us"] = kernel_times(fwdbwd, 5, DRY, 24)
                except Exception as e:  # noqa: BLE001  (a failing configuration is a result)
                    row["error"] = repr(e)[:400]
                print(json.dumps(row), flush=True)
                res["rows"].append(row)
                write_json(res, out, "prism_chunk_size.json")


if __name__ == "__main__":
    sys.exit(main())
