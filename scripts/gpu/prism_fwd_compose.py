#!/usr/bin/env python3
"""Where PRISM's L=1 forward loses to fla's gated delta rule forward, and whether fla's own state pass and
output kernel can close the gap (issue 5, target "L=1 fwd >= 0.9x chunk_gated_delta_rule fwd";
kernels/prism/NOTES.md, "Version 5 preparation").

At L=1 PRISM is the gated delta rule with v := delta_1 = GELU(p (v - u)) (SPEC section 1). Our forward
(Tr, prep_w, prep_u, fwd_h, fwd_o) keeps W, Ub, V1 and the chunk states in fp32 and runs tf32 dots; fla's
GDN forward (cumsum, fused kkt + solve + recompute_w_u, fwd_h, fwd_o) keeps w, u, v_new and h in bf16. This
script measures, at the timing shape (bf16, 32768 tokens, H=16, K=V=64, chunk 64; T=2048 and 16384):
1. each phase of ours and of fla's GDN forward, alone;
2. forward variants at L=1, each timed whole and checked against float64 (o and the final state; T=1000
   against the token loop, T=4096 against the float64 chunked reference; B=1, H=4, initial state on):
   - "ours": chunk_prism_fwd as shipped;
   - "fla_h_o_fp32": our Tr + prep (fp32 W, Ub) feeding fla's chunk_gated_delta_rule_fwd_h and chunk_fwd_o;
   - "fla_h_o_bf16": the same with W, Ub written in bf16 by our prep kernels (fla GDN's storage);
   - "fla_gdn": fla's chunk_gated_delta_rule forward on delta_1 computed in torch (timed without and with the
     delta's elementwise pass): the peer itself, and its error against the same float64 reference.
Each section (a variant, or a group of phase timings) runs in a process of its own (`--only`), so a CUDA error in one
cannot poison the others (the first GPU run, 2026-12-06, lost every fla number to an illegal address in one).
Writes $OUT/prism_fwd_compose.json. CPU dry run (interpreter, tiny shapes; fla's kernels do not run there, so
only our variant is exercised):  PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_fwd_compose.py
"""
from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
import traceback

import torch
import torch.nn.functional as F
import triton

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.kernels.prism.naive import chunk_prism_torch, naive_recurrent_prism
from prismbench.registry import Shape

from measure import median_ms, rel   # scripts/gpu/measure.py

DRY = os.environ.get("PRISM_CHECK_DRYRUN") == "1"
DEV = torch.device("cpu" if DRY else "cuda")
RCP_LN2 = 1.0 / math.log(2.0)


def bench(fn):
    return median_ms(fn, DRY)


def fla_ops():
    from fla.ops.common.chunk_delta_h import chunk_gated_delta_rule_fwd_h
    from fla.ops.common.chunk_o import chunk_fwd_o
    from fla.ops.gated_delta_rule import chunk_gated_delta_rule
    from fla.ops.gated_delta_rule.chunk_fwd import chunk_gated_delta_rule_fwd_intra
    from fla.ops.utils import chunk_local_cumsum
    return dict(fwd_h=chunk_gated_delta_rule_fwd_h, fwd_o=chunk_fwd_o, gdn=chunk_gated_delta_rule,
                intra=chunk_gated_delta_rule_fwd_intra, cumsum=chunk_local_cumsum)


def prep(x, BT, store_dtype):
    """Our Tr + prep_w + prep_u at L=1 with W and Ub written in store_dtype. Returns gc, W, Ub."""
    k, v, u, p, beta, g = (x[n] for n in ("k", "v", "u", "p", "beta", "g"))
    L, B, T, H, K = k.shape
    V = v.shape[-1]
    NT = triton.cdiv(T, BT)
    BK = pc._block(K)
    BV = min(pc._block(V), max(16, triton.next_power_of_2(pc.PREP_BV)))
    prec, raw = pc._prec(k.dtype), pc._raw_ok(k.dtype)
    if pc._tr_solver(None, k.dtype) == "fla":
        tr = pc._tr_fla(k[0], beta[0], g, BT)
    else:
        tr = torch.empty(B, T, H, BT, device=k.device, dtype=torch.float32)
        pc.prism_fwd_solve_kernel[(NT, B * H)](k, beta, g, tr, T, H, K=K, BT=BT, BK=BK, PREC=prec, RAW=raw,
                                               num_warps=pc._warps(16, 16, BT))
    gc = torch.empty(B, T, H, device=k.device, dtype=torch.float32)
    w = torch.empty(B, T, H, K, device=k.device, dtype=store_dtype)
    pc.prism_prep_w_kernel[(NT, B * H)](k, beta, g, tr, gc, w, T, H, K=K, BT=BT, BK=BK, PREC=prec,
                                         num_warps=pc.WARPS.get("prep_w", pc._warps(BK, BT, BT)))
    ub = torch.empty(B, T, H, V, device=k.device, dtype=store_dtype)
    pc.prism_prep_u_kernel[(triton.cdiv(V, BV), NT, B * H)](
        k, v, u, p, beta, g, tr, ub, None, gc, w, None, T, B=B, H=H, K=K, V=V, L=L, BT=BT, BK=BK, BV=BV,
        STORE_SW=False, PREC=prec, RAW=raw, STORE_W=False, num_warps=pc.WARPS.get("prep_u", pc._warps(BK, BV, BT)))
    return gc, w, ub


def variants(ops, BT):
    def ours(x, h0, scale):
        o, ht, _ = pc.chunk_prism_fwd(x["q"], x["k"], x["v"], x["u"], x["p"], x["beta"], x["g"], scale, h0, True, BT)
        return o, ht

    def composed(store_dtype):
        def fn(x, h0, scale):
            gc, w, ub = prep(x, BT, store_dtype)
            g2 = gc * RCP_LN2      # fla's kernels take the chunk-local cumsum in log2 units (exp2)
            h, vnew, ht = ops["fwd_h"](k=x["k"][0], w=w, u=ub, g=g2, initial_state=h0, output_final_state=True,
                                       chunk_size=BT)
            o = ops["fwd_o"](q=x["q"], k=x["k"][0], v=vnew, h=h, g=g2, scale=scale, chunk_size=BT)
            return o, ht
        return fn

    def gdn(with_delta):
        def fn(x, h0, scale, d=None):
            if d is None or with_delta:
                d = F.gelu(x["p"][0].float() * (x["v"].float() - x["u"].float())).to(x["v"].dtype)
            o, ht = ops["gdn"](x["q"], x["k"][0], d, x["g"], x["beta"][0], scale=scale, initial_state=h0,
                               output_final_state=True)
            return o, ht
        return fn

    v = dict(ours=ours)
    if ops:
        v.update(fla_h_o_fp32=composed(torch.float32), fla_h_o_bf16=composed(torch.bfloat16),
                 fla_gdn=gdn(True), fla_gdn_no_delta=gdn(False))
    return v


def inputs(B, T, H, K, L, seed, dt):
    return {n: t.detach() for n, t in make_prism_inputs(Shape(B, T, H, K, K, L, dt, DEV), seed).items()}


SECTIONS = ("fla_gdn", "fla_h_o_bf16", "phases_fla_bf16", "ours", "phases_ours", "phases_fla_gdn", "fla_gdn_no_delta",
            "fla_h_o_fp32", "phases_fla_fp32")   # in order of interest: a call's time limit may cut the tail


def phases(section, x, BT, ops, d):
    """Per-kernel times of one section at the inputs x (L=1)."""
    k, beta, g = x["k"], x["beta"], x["g"]
    B, T, H, K = x["q"].shape
    scale = K ** -0.5
    ph = {}
    gc, w, ub = prep(x, BT, torch.float32)
    if section == "phases_ours":
        ph["tr"] = bench(lambda: pc._tr_fla(k[0], beta[0], g, BT))
        ph["prep_w_u_incl_tr_fp32"] = bench(lambda: prep(x, BT, torch.float32))
        ph["prep_w_u_incl_tr_bf16"] = bench(lambda: prep(x, BT, torch.bfloat16))
        sw = torch.zeros(B, triton.cdiv(T, BT), H, K, K, device=DEV, dtype=torch.float32)
        ph["ours_fwd_h"] = bench(lambda: pc.prism_fwd_h(k, w, ub, sw, gc, BT))
        hs, vnew, _ = pc.prism_fwd_h(k, w, ub, sw, gc, BT)
        ph["ours_fwd_o"] = bench(lambda: pc.prism_fwd_o(x["q"], k, x["v"], x["u"], x["p"], beta, gc, hs, vnew, scale, BT))
    elif section == "phases_fla_gdn":
        g2 = gc * RCP_LN2
        ph["fla_cumsum"] = bench(lambda: ops["cumsum"](g, chunk_size=BT, scale=RCP_LN2))
        ph["fla_intra"] = bench(lambda: ops["intra"](k=k[0], v=d, g=g2, beta=beta[0], chunk_size=BT))
        ph["delta_elementwise"] = bench(lambda: F.gelu(x["p"][0].float() * (x["v"].float() - x["u"].float()))
                                        .to(x["v"].dtype))
    else:   # phases_fla_bf16 / phases_fla_fp32: fla's state pass and output kernel on our W, Ub
        sd = torch.float32 if section.endswith("fp32") else torch.bfloat16
        g2 = gc * RCP_LN2
        w2, ub2 = w.to(sd), ub.to(sd)
        ph["fla_fwd_h"] = bench(lambda: ops["fwd_h"](k=k[0], w=w2, u=ub2, g=g2, chunk_size=BT))
        h, vn, _ = ops["fwd_h"](k=k[0], w=w2, u=ub2, g=g2, chunk_size=BT)
        ph["fla_fwd_o"] = bench(lambda: ops["fwd_o"](q=x["q"], k=k[0], v=vn, h=h, g=g2, scale=scale, chunk_size=BT))
    return ph


def run_section(section, out):
    """One section in this process: timings (T=2048, 16384) and, for a variant, its errors against float64."""
    ops = {} if DRY else fla_ops()
    dt = torch.float32 if DRY else torch.bfloat16
    BT = 16 if DRY else 64
    K = 16 if DRY else 64
    res = dict(section=section, timings=[], errors=[], failures=[])
    V = variants(ops, BT)
    path = os.path.join(out, f"prism_fwd_compose-{section}.json")

    def save():
        with open(path, "w") as f:
            json.dump(res, f, indent=1)

    def fail(where, e):
        res["failures"].append(dict(where=where, error=repr(e)[:500], tb=traceback.format_exc()[-1500:]))
        print(f"{section} {where} failed: {e!r}"[:300], flush=True)
        save()

    for T in ((37,) if DRY else (2048, 16384)):
        B = 2 if DRY else 32768 // T
        H = 2 if DRY else 16
        x = inputs(B, T, H, K, 1, 0, dt)
        scale = K ** -0.5
        d = F.gelu(x["p"][0].float() * (x["v"].float() - x["u"].float())).to(x["v"].dtype)
        row = dict(T=T, B=B, H=H, K=K, L=1)
        try:
            if section.startswith("phases"):
                row.update(phases(section, x, BT, ops, d))
            elif section == "fla_gdn_no_delta":
                row["ms"] = bench(lambda: V[section](x, None, scale, d))
            else:
                row["ms"] = bench(lambda: V[section](x, None, scale))
        except Exception as e:  # noqa: BLE001
            fail(f"T={T}", e)
            return res
        res["timings"].append(row)
        print(json.dumps({kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in row.items()}), flush=True)
        save()
        del x
    if section.startswith("phases") or section == "fla_gdn_no_delta":
        return res
    for T, seed in (((37, 0),) if DRY else ((1000, 0), (1000, 1), (4096, 0))):
        B, H = 1, (2 if DRY else 4)
        x = inputs(B, T, H, K, 1, seed, dt)
        gen = torch.Generator(device="cpu").manual_seed(seed + 1)
        h0 = torch.randn(B, H, K, K, generator=gen).to(DEV)
        ref_fn = naive_recurrent_prism if T <= 1000 else chunk_prism_torch
        try:
            with torch.no_grad():
                o_r, ht_r = ref_fn(**{n: t.double() for n, t in x.items()}, initial_state=h0.double(),
                                   output_final_state=True)
                o, ht = V[section](x, h0.clone(), K ** -0.5)
            row = dict(T=T, seed=seed, ref=ref_fn.__name__, o=rel(o, o_r), ht=rel(ht, ht_r))
        except Exception as e:  # noqa: BLE001
            fail(f"errors T={T} seed={seed}", e)
            return res
        res["errors"].append(row)
        print(json.dumps(row), flush=True)
        save()
    return res


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--only", choices=SECTIONS, help="run one section in this process (the parent runs each so)")
    ap.add_argument("--section-limit", type=float, default=75.0, help="seconds per section process")
    a = ap.parse_args()
    os.makedirs(a.out, exist_ok=True)
    if a.only:
        run_section(a.only, a.out)
        return
    # each section in a process of its own: a CUDA error (an illegal address in fla's fwd_h on fp32 inputs,
    # 2026-12-06) poisons the process's context and would fail every section after it
    res = dict(device=torch.cuda.get_device_name() if not DRY else "cpu (interpreter)",
               git_commit=os.environ.get("PRISMBENCH_GIT_COMMIT"), torch=torch.__version__, triton=triton.__version__,
               sections={})
    for section in (("ours", "phases_ours") if DRY else SECTIONS):
        t0 = time.time()
        try:
            rc = subprocess.run([sys.executable, os.path.abspath(__file__), "--only", section, "--out", a.out],
                                timeout=a.section_limit).returncode
        except subprocess.TimeoutExpired:
            rc = "timeout"
        path = os.path.join(a.out, f"prism_fwd_compose-{section}.json")
        sec = json.load(open(path)) if os.path.exists(path) else {}
        sec.update(rc=rc, seconds=round(time.time() - t0, 1))
        res["sections"][section] = sec
        with open(os.path.join(a.out, "prism_fwd_compose.json"), "w") as f:
            json.dump(res, f, indent=1)
    print(f"wrote {os.path.join(a.out, 'prism_fwd_compose.json')}", file=sys.stderr)


if __name__ == "__main__":
    main()
