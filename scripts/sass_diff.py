"""Offline sm_90 check that a kernel change leaves a default launch's machine code as it was: compiles the same
kernels from two copies of kernels/prism/chunk.py (the installed one and an older checkout's), with the launch's
argument types and constexprs (arguments the older kernel lacks are dropped; the newer one's extra pointers passed as
None, its extra flags at their defaults), and compares their SASS with the kernel-parameter offsets masked
(c[0x0][...]: a longer argument list moves them). No GPU needed (Triton 3.6's ptxas / cuobjdump).

    python scripts/sass_diff.py /path/to/old/kernels/prism/chunk.py
"""
import importlib.util
import os
import re
import subprocess
import sys
import tempfile

os.environ.pop("TRITON_INTERPRET", None)
import triton  # noqa: E402
from triton.backends.compiler import GPUTarget  # noqa: E402
from triton.compiler import ASTSource  # noqa: E402

from prismbench.kernels.prism import chunk as new  # noqa: E402

BIN = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin")
TGT = GPUTarget("cuda", 90, 32)
F32, BF = "*fp32", "*bf16"
COMMON = dict(K=64, V=64, BT=64, BK=64, PREC="tf32", RAW=True, D16=1)
# kernel: (pointer / scalar argument types, constexprs, launch options) of version 11's default bf16 launch at
# K = V = 64, L = 3 (fp32 Tr, W, Sw and states: FWD_16 = (); version 12's default passes those four in bf16 and TR_D16=1
# to prep_u, which a version 11 checkout cannot compile, so the jobs stay version 11's)
JOBS = {
    "prism_prep_u_kernel": (
        dict(k=BF, v=BF, u=BF, p=BF, beta=BF, g=F32, tr=F32, ub_out=F32, sw_out=F32, gc_out=F32, w_out=F32,
             T="i32", B="i32", H="i32"),
        dict(COMMON, L=3, BV=64, STORE_SW=True, STORE_W=True, D16=0), dict(num_warps=4)),   # version 11's DOT16 lacks "prep_u"
    "prism_fwd_o_kernel": (
        dict(q=BF, k=BF, v=BF, u=BF, p=BF, beta=BF, gc=F32, hs=F32, vnew=BF, o=BF, scale="fp32", T="i32", B="i32",
             H="i32"),
        dict(COMMON, L=3, BV=64), dict(num_warps=4, maxnreg=168)),
    "prism_fwd_h_kernel": (
        dict(k=BF, w=F32, ub=F32, sw=F32, gc=F32, hs_out=F32, vnew_out=BF, T="i32", B="i32", H="i32"),
        dict(COMMON, L=3, BV=32, USE_H0=False, STORE_HT=False, h0=None, ht_out=None), dict(num_warps=4)),
}
# the per-key values launches of version 14 (KIND 2, bf16 dH' and the D_l stash; the first key's and the last one's),
# after session 18 moved their V tiles to column-block pointers (KEYS_VALUES_BV; off: the block index is 0)
KEY_TYPES = dict(q=BF, k=BF, v=BF, u=BF, p=BF, beta=BF, gc=F32, dhs=BF, do=BF, dy=F32, dqp=F32, dkp=F32, dbp=F32,
                 dgp=F32, drp=F32, dk=BF, dp=BF, dbeta=BF, dq=BF, dv=BF, du=BF, dd=BF, scale="fp32", T="i32", B="i32",
                 H="i32", l="i32")
for tag, first, last in (("first", True, False), ("last", False, True)):
    JOBS[f"prism_bwd_key_kernel:values-{tag}"] = (
        KEY_TYPES, dict(COMMON, BV=64, FIRST=first, LAST=last, KIND=2, STASH_D=True), dict(num_warps=4))
# the rows loop (KEYS_LOOP "rows"; session 18 put its two passes under KEYS_ROWS_SPLIT's constexpr PASS, 0 = both)
ROWS_TYPES = {n: KEY_TYPES[n] for n in ("q", "k", "v", "u", "p", "beta", "gc", "dhs", "do", "dy", "dqp", "dkp", "dbp",
                                        "dgp", "dq", "dk", "dbeta", "dd", "scale", "T", "B", "H")}
for last in (False, True):
    JOBS[f"prism_bwd_key_rows_kernel:last-{last}"] = (
        dict(ROWS_TYPES, L="i32"), dict(COMMON, BV=64, LAST=last, STASH_D=True), dict(num_warps=4))
# the columns loop (KEYS_LOOP "columns", one stage as launched)
JOBS["prism_bwd_key_columns_kernel"] = (
    {n: KEY_TYPES[n] for n in ("q", "k", "v", "u", "p", "beta", "gc", "dhs", "do", "dy", "dk", "dd", "scale", "T", "B",
                               "H")} | dict(L="i32"),
    dict(COMMON, BV=64, STASH_D=True), dict(num_warps=4, num_stages=1))


def load(path):
    spec = importlib.util.spec_from_file_location("chunk_old", path, submodule_search_locations=None)
    mod = importlib.util.module_from_spec(spec)
    sys.modules["chunk_old"] = mod
    spec.loader.exec_module(mod)
    return mod


def sass(fn, types, cst, opts):
    names = fn.arg_names
    sig, constexprs, attrs = {}, {}, {}
    for i, n in enumerate(names):
        if n in types:
            sig[n] = types[n]
            if types[n].startswith("*"):
                attrs[(i,)] = [["tt.divisibility", 16]]
        else:
            sig[n] = "constexpr"
            # a flag the older kernel lacks takes its declared default (a pointer it lacks: None)
            constexprs[(i,)] = cst.get(n, fn.params[i].default if fn.params[i].has_default else None)
    ck = triton.compile(ASTSource(fn=fn, signature=sig, constexprs=constexprs, attrs=attrs), target=TGT,
                        options=opts)
    d = tempfile.mkdtemp()
    cub = os.path.join(d, "k.cubin")
    open(cub, "wb").write(ck.asm["cubin"])
    out = subprocess.run([f"{BIN}/cuobjdump", "-sass", cub], capture_output=True, text=True).stdout
    lines = [ln.split("*/", 1)[1] for ln in out.splitlines() if re.match(r"\s*/\*[0-9a-f]{4,}\*/", ln)]
    return [re.sub(r"c\[0x0\]\[0x[0-9a-f]+\]", "c[0x0][P]", ln).split(";")[0].strip() for ln in lines]


def main():
    old = load(sys.argv[1])
    ok = True
    for name, (types, cst, opts) in JOBS.items():
        fn = name.split(":")[0]      # "kernel:tag": one of several launches of that kernel
        a = sass(getattr(old, fn), types, cst, opts)
        b = sass(getattr(new, fn), types, cst, opts)
        same = a == b
        ok &= same
        diff = sum(x != y for x, y in zip(a, b)) + abs(len(a) - len(b))
        print(f"{name}: {len(a)} / {len(b)} SASS instructions (old / new), "
              f"{'identical' if same else f'{diff} differ'} (parameter offsets masked)")
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
