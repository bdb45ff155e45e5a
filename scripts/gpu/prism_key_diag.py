#!/usr/bin/env python3
"""Where the per-key backward kernel's time goes (issue 5; kernels/prism/NOTES.md, "Version 4 on an H100", next
step 1). prism_bwd_key_kernel is 6.3 of L=3 fwd+bwd's 12.5 ms on an H100 (two launches, ~3.1 ms each) against a
FLOP floor of ~0.1 ms per launch; this script splits that time without hardware counters (HOPPER.md's method:
time variants that leave a stage out, take differences).

At the timing shape (bf16, 32768 tokens, H=16, K=V=64, chunk 64, L=3), for the launch l=2 (FIRST) and l=1:
1. (until version 6) the whole launch (KIND=-1, KEYS_IMPL="split"), grid (3, N, B*H), at 8 and 4 warps;
2. each program kind alone (the kernel's constexpr KIND; the other branches are dropped at compile time), grid
   (1, N, B*H): rows (0), columns (1), values (2); at 4 warps also each kind with maxnreg=168 (3 CTAs per SM);
3. derived: the sum of the three kinds alone (KEYS_IMPL="kinds") against the whole launch (how well they
   overlap). (Second run, commit 2079e60, also timed the rows kind's two halves as KIND 3 and 4, the deleted
   "kinds4" candidate: read-out 0.51 + write 0.61 ms against rows 0.81 at 4 warps.)
(First run, 2026-12-06, commit b459990, before KIND existed: the kinds were source copies with `i_p` made a
constexpr; results/kernels/prism-triton-v4-key-diag-h100.json.)
Buffers come from the real backward up to phase C1 (forward, prep, dH pass, WY); the timed launches add into the
fp32 partial buffers again and again, which changes their values, not the work.

First, a check that the three kinds launched alone one after the other write what the whole launch writes
(`kinds_vs_whole_max_rel_diff`, expected 0: the kinds write disjoint buffers). Writes $OUT/prism_key_diag.json.
CPU dry run (interpreter, tiny shape, wall-clock times; tests the script):
    PRISM_CHECK_DRYRUN=1 TRITON_INTERPRET=1 python3 scripts/gpu/prism_key_diag.py
On the GPU, hardware counters for one launch of each kind (Firecracker machines; HOPPER.md, KINDS.md):
    ncu --clock-control none --kernel-name regex:prism_bwd_key --launch-skip 20 --launch-count 4 \\
        --section SpeedOfLight --section Occupancy --section LaunchStats --section WarpStateStats \\
        --section MemoryWorkloadAnalysis python3 scripts/gpu/prism_key_diag.py --ncu
"""
from __future__ import annotations

import argparse
import json
import os
import sys

import torch
import triton

from prismbench.kernels.prism import chunk as pc
from prismbench.kernels.prism.inputs import make_prism_inputs
from prismbench.registry import Shape

from measure import max_rel_diff, median_ms   # scripts/gpu/measure.py

DRY = os.environ.get("PRISM_CHECK_DRYRUN") == "1"
DEV = torch.device("cpu" if DRY else "cuda")
KINDS = {0: "rows", 1: "columns", 2: "values"}   # the kernel's KIND


def bench(fn):
    return median_ms(fn, DRY)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.environ.get("OUT", "out"))
    ap.add_argument("--ncu", action="store_true", help="launch each variant a few times, no timing (under ncu)")
    a = ap.parse_args()
    T, H, K, L, BT = (37, 2, 16, 3, 16) if DRY else (2048, 16, 64, 3, 64)
    B = 2 if DRY else 32768 // T
    dt = torch.float32 if DRY else torch.bfloat16
    x = {n: t.detach() for n, t in make_prism_inputs(Shape(B, T, H, K, K, L, dt, DEV), 0).items()}
    q, k, v, u, p, beta, g = (x[n] for n in ("q", "k", "v", "u", "p", "beta", "g"))
    scale = K ** -0.5
    do = torch.randn_like(v)
    # the backward up to phase C1, as chunk_prism_bwd runs it
    _, _, hs = pc.chunk_prism_fwd(q, k, v, u, p, beta, g, scale, None, False, BT)
    gc, w, ub, _, tr, dv1 = pc.prism_fwd_prep(k, v, u, p, beta, g, BT, q=q, do=do, scale=scale, store_sw=False)
    dhs, _ = pc.prism_bwd_dh(q, k, w, gc, do, dv1, None, BT, False, scale)
    dqp, dbp, dgp = pc.prism_bwd_wy(q, k, beta, gc, hs, dhs, do, dv1, w, ub, tr, scale, BT)
    # zeros: a launch writes only key l's slices; the rest must compare equal, not as uninitialised memory
    dk, dp, dbeta = torch.zeros_like(k), torch.zeros_like(p), torch.zeros_like(beta)
    dq, dv, du = torch.zeros_like(q), torch.zeros_like(v), torch.zeros_like(u)   # the fused tail's (LAST) outputs
    NT, BK, BV = triton.cdiv(T, BT), pc._block(K), pc._block(K)
    prec, raw = pc._prec(dt), pc._raw_ok(dt)
    kern = pc.prism_bwd_key_kernel

    def launch(kind, l, warps, maxnreg=None, last=False):
        extra = {} if maxnreg is None else dict(maxnreg=maxnreg)
        kern[(3 if kind < 0 else 1, NT, B * H)](
            q, k, v, u, p, beta, gc, dhs, do, ub, dqp, w, dbp, dgp, dv1, dk, dp, dbeta, dq, dv, du, scale, T, B, H, l,
            K=K, V=K, BT=BT, BK=BK, BV=BV, FIRST=l == L - 1, PREC=prec, RAW=raw, KIND=kind, LAST=last,
            num_warps=warps, **extra)

    def outputs_after(kern_launches):
        """The buffers a key launch writes, after the given launches on fresh copies of the inputs."""
        keep = [t.clone() for t in (dqp, w, dbp, dgp, dv1)]
        for fn in kern_launches:
            fn()
        out = [t.clone() for t in (dqp, w, dbp, dgp, dv1, dk, dp, dbeta)]
        for t, kp in zip((dqp, w, dbp, dgp, dv1), keep):
            t.copy_(kp)
        return out

    # the three kinds alone, one after the other, must write what the whole launch writes (FIRST and not)
    same = {"kinds": []}
    for l in (L - 1, 1):
        whole = outputs_after([lambda: launch(-1, l, 4)])
        for name, kinds in (("kinds", (0, 1, 2)),):
            split = outputs_after([lambda P=P: launch(P, l, 4) for P in kinds])
            same[name].append(max_rel_diff(split, whole))
    res = dict(kinds_vs_whole_max_rel_diff=max(same["kinds"]),
               shape=dict(B=B, T=T, H=H, K=K, V=K, L=L, BT=BT, dtype=str(dt)), tiles=NT * B * H,
               device=torch.cuda.get_device_name() if not DRY else "cpu (interpreter)",
               git_commit=os.environ.get("PRISMBENCH_GIT_COMMIT"), rows=[])
    # version 7: each kind alone at 4 warps (the default), 8 warps, and 8 warps under maxnreg=128 (two CTAs of 8 warps
    # per SM; offline sm_90 spills at 128: rows 756 B, columns 528 B, values 136 B (LAST 292 B)); the l = 1 launch
    # as the default runs it (KEYS_TAIL="fused": LAST) and without the tail
    configs = ((4, None),) if DRY else ((4, None), (8, None), (8, 128))
    for l, last in ((L - 1, False), (1, True), (1, False)):
        for warps, cap in configs:
            if a.ncu:
                for _ in range(3):
                    for P in KINDS:
                        launch(P, l, warps, cap, last)
                continue
            row = dict(l=l, first=l == L - 1, last=last, warps=warps, maxnreg=cap)
            for P in KINDS:
                try:
                    row[f"{KINDS[P]}_ms"] = bench(lambda: launch(P, l, warps, cap, last))
                except Exception as e:  # noqa: BLE001  (an unaccepted option must not cost the rest)
                    row[f"{KINDS[P]}_error"] = repr(e)[:300]
            res["rows"].append(row)
            print(json.dumps({kk: (round(vv, 4) if isinstance(vv, float) else vv) for kk, vv in row.items()}),
                  flush=True)
    # the whole keys phase (prism_bwd_keys: both keys' kinds and the fused tail) and the autograd fwd+bwd with the
    # values kind (or every kind) at 8 warps, with and without maxnreg=128, against the defaults; outputs compared
    if not a.ncu:
        xg = [t.detach().clone().requires_grad_() for t in (q, k, v, u, p, beta, g)]

        def keys_phase():
            return pc.prism_bwd_keys(q, k, v, u, p, beta, gc, dhs, do, ub, dqp.clone(), w.clone(), dbp.clone(),
                                     dgp.clone(), scale, BT, dr=dv1.clone())

        def fwdbwd():
            for t in xg:
                t.grad = None
            pc.chunk_prism(*xg, scale=scale, chunk_size=BT)[0].backward(do)
            return [t.grad for t in xg]

        all8 = {"key_kind0": 8, "key_kind1": 8, "key_kind2": 8}
        variants = {"default": ({}, {}), "values_w8": ({"key_kind2": 8}, {}),
                    "values_w8_r128": ({"key_kind2": 8}, {"key_kind2": 128}),
                    "all_w8_r128": (all8, {n: 128 for n in all8})}
        ref_k = ref_g = None
        for name, (wv, cv) in (variants.items() if not DRY else list(variants.items())[:2]):
            pc.WARPS.clear()
            pc.WARPS.update(wv)
            pc.MAXNREG.clear()
            pc.MAXNREG.update(cv)
            row = dict(variant=name)
            try:
                outk = [t.clone() for t in keys_phase()]
                outg = [t.clone() for t in fwdbwd()]
                if ref_k is None:
                    ref_k, ref_g = outk, outg
                row["keys_max_rel_diff"] = max_rel_diff(outk, ref_k)
                row["fwdbwd_grads_max_rel_diff"] = max_rel_diff(outg, ref_g)
                row["bwd_keys_ms"] = bench(keys_phase)
                row["fwdbwd_ms"] = bench(fwdbwd)
            except Exception as e:  # noqa: BLE001
                row["error"] = repr(e)[:300]
            pc.WARPS.clear()
            pc.MAXNREG.clear()
            res.setdefault("phases", []).append(row)
            print(json.dumps(row), flush=True)
    if not a.ncu:
        os.makedirs(a.out, exist_ok=True)
        path = os.path.join(a.out, "prism_key_diag.json")
        with open(path, "w") as f:
            json.dump(res, f, indent=1)
        print(f"wrote {path}", file=sys.stderr)


if __name__ == "__main__":
    main()
