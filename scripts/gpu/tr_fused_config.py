#!/usr/bin/env python3
"""Time Tr from fla's fused kkt + solve kernel (`chunk._tr_fla` with TR_FLA_IMPL="fused") over fla's configs
(BK in {32, 64} x num_warps in {1, 2, 4}) at the timing shape (bf16, 32768 tokens, H=16, K=64, chunk 64) for
T in {64, 2048, 16384}, beside the unfused path: the evidence for chunk.TR_FUSED_BK / TR_FUSED_WARPS.
Writes $OUT/tr_fused_config.json.   python3 scripts/gpu/tr_fused_config.py
"""
import json
import os

import torch
from triton.testing import do_bench

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.registry import Shape

rows = []
for T in (2048, 16384, 64):
    B = max(1, 32768 // T)
    x = make_prism_inputs(Shape(B, T, 16, 64, 64, 1, torch.bfloat16, torch.device("cuda")), 0)
    k1, b1, g = x["k"][0].detach(), x["beta"][0].detach(), x["g"].detach()
    row = dict(T=T, B=B, H=16, K=64)
    pc.TR_FLA_IMPL = "unfused"
    row["unfused_ms"] = do_bench(lambda: pc._tr_fla(k1, b1, g, 64), quantiles=[0.5])
    ref = pc._tr_fla(k1, b1, g, 64)
    pc.TR_FLA_IMPL = "fused"
    for bk in (32, 64):
        for w in (1, 2, 4):
            pc.TR_FUSED_BK, pc.WARPS["tr_fused"] = bk, w
            out = pc._tr_fla(k1, b1, g, 64)
            err = ((out - ref).norm() / ref.norm()).item()
            row[f"bk{bk}_w{w}_ms"] = do_bench(lambda: pc._tr_fla(k1, b1, g, 64), quantiles=[0.5])
            row[f"bk{bk}_w{w}_err_vs_unfused"] = err
    pc.WARPS.pop("tr_fused", None)
    pc.TR_FUSED_BK = 64
    rows.append(row)
    print(json.dumps(row), flush=True)
out = os.environ.get("OUT", "out")
os.makedirs(out, exist_ok=True)
json.dump(dict(device=torch.cuda.get_device_name(), rows=rows), open(os.path.join(out, "tr_fused_config.json"), "w"), indent=1)
