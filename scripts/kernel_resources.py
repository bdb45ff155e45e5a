"""Offline sm_90 resource report (registers, spills, shared memory, barriers) of the PRISM prep kernel
with and without the solve, and of fla's kkt / solve_tril kernels: no GPU needed (Triton 3.6 ptxas).
Used for kernels/prism/NOTES.md (version 3 preparation).

    python scripts/kernel_resources.py "prep,64,1,8,0,0;prep,64,1,8,1,0;solve,64,64,8;kkt,64,64,64,8,3;merge,64,8,3"

Jobs are `;`-separated: prep,K,L,warps,solved,bwd[,BT] | solve,K,BT,warps | kkt,K,BT,BK,warps,stages |
merge,BT,warps,stages | prepw,K,warps[,BT] | prepu,K,L,BV,warps,bwd[,BT] | prepdv,K,BV,warps[,BT] (these three:
PREP_IMPL="split", prism_prep_w_kernel, prism_prep_u_kernel (bwd: no Sw) and prism_prep_dvloc_kernel) |
wy,K,warps[,BT] (phase C1: WY_IMPL="fused" kernel) | wy2c,K,BV,warps[,BT] | wy2e,K,warps[,BT] | wy2r,K,warps[,BT]
(WY_IMPL="split2": column, erase, read) | keys,K,L,warps[,BT] | key,K,BV,warps,first[,BT[,KIND[,last]]] | tail,K,warps,has_dr[,BT]
(phase C2: KEYS_IMPL="fused" kernel, "split" per-key kernel and tail) | o,K,L,warps[,BT] (the output kernel) |
h,K,L,BV,warps[,BT] (the state pass) | rows,K,warps,last[,BT[,PASS]] (KEYS_LOOP "rows") | cols,K,warps[,BT] |
vals,K,warps,last[,BT] (KEYS_LOOP "columns", "values") |
valrb,K,BS,warps,first,last[,BT] (KEYS_VALUES_BS: the per-key values launch in row blocks) |
colrb,K,BS,warps[,BT] (KEYS_COLUMNS_BS: the columns loop in row blocks).
K = V. One JSON line per job. KR_D16=1: the kernels that take D16 compiled with bf16 dots (DOT16, version 9). (Version 4
deleted the kernels of the jobs wye, wyr and key2: WY_IMPL="split" and KEYS_IMPL="split2"; NOTES.md.)

    python scripts/kernel_resources.py "prepw,64,8;prepu,64,3,32,4,0;prepu,64,3,32,4,1;prepdv,64,32,4;solve,64,64,8"
    python scripts/kernel_resources.py "wy,64,8;keys,64,3,8;key,64,64,8,0;tail,64,8,1"
    python scripts/kernel_resources.py "wy2c,64,32,4;wy2e,64,4;wy2r,64,4;wy2c,128,32,4;wy2e,128,8;wy2r,128,8"  # v4 WY

Pointer arguments are compiled 16-byte aligned, as launched (KR_ALIGN=0: unaligned, the method of the tables
written before the keys split; see ALIGN below).
"""
import os, sys, json, re, subprocess, tempfile, time
os.environ.pop("TRITON_INTERPRET", None)
import triton
from triton.compiler import ASTSource
from triton.backends.compiler import GPUTarget
from prismbench.kernels.prism import chunk as pc

BIN = os.path.join(os.path.dirname(triton.__file__), "backends/nvidia/bin")
TGT = GPUTarget("cuda", 90, 32)


# Pointer arguments are compiled as 16-byte aligned (tt.divisibility 16), as Triton's launcher specializes every
# torch tensor argument at run time (integer arguments here are all do_not_specialize, so no hint). Without it
# (KR_ALIGN=0, the method of the tables written before version 3's keys split) no load or store vectorizes: a
# [64, 64] tile then takes one 64-bit address per element, which inflated register counts and spills.
ALIGN = os.environ.get("KR_ALIGN", "1") != "0"


# KR_D16=1: compile the kernels that take D16 (version 9's DOT16: bf16 dots) with D16 = 1, as launched for bf16 inputs
# on a GPU; default 0 (version 8's tf32 dots).
D16 = int(os.environ.get("KR_D16", "0"))
# KR_KEYS_BF16: the per-key kinds' bf16 copies (chunk.py's KEYS_BF16, version 10; they need D16): "dh" (dH' read in
# bf16), "d" (STASH_D: D_l read from the values launch's bf16 store); default "dh,d" with KR_D16=1, else none.
KEYS_BF16 = tuple(x for x in os.environ.get("KR_KEYS_BF16", "dh,d" if D16 else "").split(",") if x)
# KR_FWD_STASH_D=1 (with KR_D16=1, L > 1): prep_u stores the extra keys' D_l in bf16 and the output kernel reads it
# (chunk.py's FWD_STASH_D, on since version 11); KR_FWD_SW=h (with the stash): their state write in the state pass,
# prep_u without Sw (chunk.py's FWD_SW). Defaults: chunk.py's.
FWD_STASH_D = os.environ.get("KR_FWD_STASH_D", "1" if D16 and pc.FWD_STASH_D else "0") == "1"
FWD_SW = os.environ.get("KR_FWD_SW", pc.FWD_SW)
# With KR_D16=1, the WY kernels as version 14 launches them at L > 1 (DOT16 "wy"): V1 in bf16 (KR_WY_V1_16, default
# chunk.py's WY_V1_16) and the erase kernel's dH' in bf16 (KR_DH16_WY, default chunk.py's DH16_WY, version 13).
WY_V1_16 = bool(D16) and os.environ.get("KR_WY_V1_16", "1" if pc.WY_V1_16 else "0") == "1"
DH16_WY = bool(D16) and os.environ.get("KR_DH16_WY", "1" if pc.DH16_WY else "0") == "1"
# With KR_D16=1, the forward's bf16 intermediates the WY kernels read (KR_FWD_16, default chunk.py's FWD_16, version 12:
# "tr", "w", "hs" of them).
FWD_16 = set(os.environ.get("KR_FWD_16", ",".join(pc.FWD_16)).split(",")) - {""} if D16 else set()


def _src(fn, signature, constexprs):
    if "D16" in fn.arg_names and "D16" not in signature:   # D16 placed where the kernel declares it
        names = list(signature)
        cst = {names[i[0]]: v for i, v in constexprs.items()}
        signature = dict(signature, D16="constexpr")
        cst["D16"] = D16
        order = [n for n in fn.arg_names if n in signature]
        signature = {n: signature[n] for n in order}
        constexprs = {(order.index(n),): v for n, v in cst.items()}
    attrs = {(i,): [["tt.divisibility", 16]] for i, (n, t) in enumerate(signature.items())
             if ALIGN and t.startswith("*")}
    return ASTSource(fn=fn, signature=signature, constexprs=constexprs, attrs=attrs)


def fwd_o(K, L, BT, warps):
    """prism_fwd_o_kernel (V1 in bf16 under D16, as prism_fwd_h stores it then)."""
    f32, dt = "*fp32", "*bf16"
    stash = FWD_STASH_D and L > 1
    sig = dict(q=dt, k=dt, v=dt, u=dt, p=dt, beta=dt, gc=f32, hs=f32, vnew=dt if D16 else f32,
               dd=dt if stash else "constexpr", o=dt, scale="fp32",
               T="i32", B="i32", H="i32", K="constexpr", V="constexpr", L="constexpr", BT="constexpr",
               BK="constexpr", BV="constexpr", PREC="constexpr", RAW="constexpr", STASH_D="constexpr")
    cst = dict(K=K, V=K, L=L, BT=BT, BK=K, BV=K, PREC="tf32", RAW=True, STASH_D=stash)
    if not stash:
        cst.update(dd=None)
    return _compile(pc.prism_fwd_o_kernel, sig, cst, warps)


def fwd_h(K, L, BT, BV, warps):
    """prism_fwd_h_kernel (the state pass; V1 in bf16 under D16). KR_FWD_SW=h: the extra keys' state write from the
    D_l stash (SW_D, chunk.py's FWD_SW="h") instead of prep_u's fp32 Sw."""
    f32, dt = "*fp32", "*bf16"
    sw_d = FWD_SW == "h" and L > 1
    sig = dict(k=dt, w=f32, ub=f32, sw="constexpr" if sw_d else f32, dd=dt if sw_d else "constexpr", gc=f32,
               h0="constexpr", hs_out=f32, vnew_out=dt if D16 else f32, ht_out="constexpr", T="i32", B="i32",
               H="i32", K="constexpr", V="constexpr", L="constexpr", BT="constexpr", BK="constexpr", BV="constexpr",
               USE_H0="constexpr", STORE_HT="constexpr", PREC="constexpr", SW_D="constexpr")
    cst = dict(K=K, V=K, L=L, BT=BT, BK=K, BV=BV, USE_H0=False, STORE_HT=False, PREC="tf32", SW_D=sw_d, h0=None,
               ht_out=None)
    cst.update({"sw" if sw_d else "dd": None})
    return _compile(pc.prism_fwd_h_kernel, sig, cst, warps)


def usage(ck):
    d = tempfile.mkdtemp()
    cub = os.path.join(d, "k.cubin"); open(cub, "wb").write(ck.asm["cubin"])
    ptx = os.path.join(d, "k.ptx"); open(ptx, "w").write(ck.asm["ptx"])
    r = subprocess.run([f"{BIN}/cuobjdump", "--dump-resource-usage", cub], capture_output=True, text=True).stdout
    m = re.search(r"REG:(\d+) STACK:(\d+) SHARED:(\d+) LOCAL:(\d+)", r)
    v = subprocess.run([f"{BIN}/ptxas", "-v", "-arch=sm_90a", ptx, "-o", os.path.join(d, "o.cubin")],
                       capture_output=True, text=True).stderr
    sp = re.search(r"(\d+) bytes spill stores, (\d+) bytes spill loads", v)
    sass = subprocess.run([f"{BIN}/cuobjdump", "-sass", cub], capture_output=True, text=True).stdout
    return dict(regs=int(m.group(1)), stack=int(m.group(2)), shared_static=int(m.group(3)),
                spill_st=int(sp.group(1)), spill_ld=int(sp.group(2)), shared=ck.metadata.shared,
                bar=len(re.findall(r"\bBAR\.SYNC|\bBAR\b", sass)))


def prep(K, L, BT, warps, solved, bwd=False):
    dt = "*bf16"
    sig = dict(k=dt, v=dt, u=dt, p=dt, beta=dt, g="*fp32", q=dt if bwd else "constexpr", do=dt if bwd else "constexpr",
               gc_out="*fp32", w_out="*fp32", ub_out="*fp32", sw_out="constexpr" if bwd else "*fp32", tr_out="*fp32",
               dvloc_out="*fp32" if bwd else "constexpr", scale="fp32", T="i32", B="i32", H="i32",
               K="constexpr", V="constexpr", L="constexpr", BT="constexpr", BK="constexpr", BV="constexpr",
               STORE_SW="constexpr", DVLOC="constexpr", PREC="constexpr", RAW="constexpr", SOLVED="constexpr")
    cst = dict(K=K, V=K, L=L, BT=BT, BK=K, BV=K, STORE_SW=not bwd, DVLOC=bwd, PREC="tf32", RAW=True, SOLVED=solved)
    if not bwd:
        cst.update(q=None, do=None, dvloc_out=None)
    else:
        cst.update(sw_out=None)
    names = list(sig)
    src = _src(fn=pc.prism_fwd_prep_kernel, signature=sig,
                    constexprs={(names.index(n),): v for n, v in cst.items()})
    return triton.compile(src, target=TGT, options=dict(num_warps=warps))


def solve(K, BT, warps):
    sig = dict(k="*bf16", beta="*bf16", g="*fp32", tr_out="*fp32", T="i32", H="i32", K="constexpr", BT="constexpr",
               BK="constexpr", PREC="constexpr", RAW="constexpr")
    cst = dict(K=K, BT=BT, BK=K, PREC="tf32", RAW=True)
    names = list(sig)
    src = _src(fn=pc.prism_fwd_solve_kernel, signature=sig, constexprs={(names.index(n),): v for n, v in cst.items()})
    return triton.compile(src, target=TGT, options=dict(num_warps=warps))


def prep_w(K, BT, warps):
    sig = dict(k="*bf16", beta="*bf16", g="*fp32", tr="*fp32", gc_out="*fp32", w_out="*fp32", T="i32", H="i32",
               K="constexpr", BT="constexpr", BK="constexpr", PREC="constexpr")
    cst = dict(K=K, BT=BT, BK=K, PREC="tf32")
    names = list(sig)
    src = _src(fn=pc.prism_prep_w_kernel, signature=sig, constexprs={(names.index(n),): v for n, v in cst.items()})
    return triton.compile(src, target=TGT, options=dict(num_warps=warps))


def prep_u(K, L, BT, BV, warps, bwd=False):
    """prism_prep_u_kernel; bwd: without Sw (the backward's prep). KR_FWD_SW=h (with the stash): the forward's
    prep_u without Sw (chunk.py's FWD_SW="h")."""
    dt = "*bf16"
    stash = FWD_STASH_D and L > 1 and not bwd
    no_sw = bwd or (stash and FWD_SW == "h")
    sig = dict(k=dt, v=dt, u=dt, p=dt, beta=dt, g="*fp32", tr="*fp32", ub_out="*fp32",
               sw_out="constexpr" if no_sw else "*fp32", gc_out="*fp32", w_out="*fp32",
               dd_out=dt if stash else "constexpr", T="i32", B="i32", H="i32",
               K="constexpr", V="constexpr", L="constexpr", BT="constexpr", BK="constexpr", BV="constexpr",
               STORE_SW="constexpr", PREC="constexpr", RAW="constexpr", STORE_W="constexpr", STORE_D="constexpr")
    cst = dict(K=K, V=K, L=L, BT=BT, BK=K, BV=BV, STORE_SW=not no_sw, PREC="tf32", RAW=True,
               STORE_W=os.environ.get("KR_STORE_W", "1") == "1", STORE_D=stash)
    if not stash:
        cst.update(dd_out=None)
    if no_sw:
        cst.update(sw_out=None)
    return _compile(pc.prism_prep_u_kernel, sig, cst, warps)


def prep_dvloc(K, BT, BV, warps):
    sig = dict(q="*bf16", k="*bf16", g="*fp32", do="*bf16", dvloc_out="*fp32", scale="fp32", T="i32", H="i32",
               K="constexpr", V="constexpr", BT="constexpr", BK="constexpr", BV="constexpr", PREC="constexpr",
               RAW="constexpr")
    cst = dict(K=K, V=K, BT=BT, BK=K, BV=BV, PREC="tf32", RAW=True)
    names = list(sig)
    src = _src(fn=pc.prism_prep_dvloc_kernel, signature=sig,
                    constexprs={(names.index(n),): v for n, v in cst.items()})
    return triton.compile(src, target=TGT, options=dict(num_warps=warps))


def _compile(fn, sig, cst, warps):
    names = list(sig)
    src = _src(fn=fn, signature=sig, constexprs={(names.index(n),): v for n, v in cst.items()})
    opts = dict(num_warps=warps)
    if os.environ.get("KR_STAGES"):        # software pipelining depth (num_stages launch option)
        opts["num_stages"] = int(os.environ["KR_STAGES"])
    if os.environ.get("KR_MAXNREG"):       # a register cap, as the `maxnreg` launch option sets it
        opts["maxnreg"] = int(os.environ["KR_MAXNREG"])
    return triton.compile(src, target=TGT, options=opts)


def keys(K, L, BT, warps):
    """prism_bwd_keys_kernel (KEYS_IMPL="fused": the whole l >= 2 loop unrolled inside)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, k=dt, v=dt, u=dt, p=dt, beta=dt, gc=f32, dhs=f32, do=dt, dy=f32, dqp=f32, dkp=f32, dbp=f32,
               dgp=f32, dq=dt, dk=dt, dv=dt, du=dt, dp=dt, dbeta=dt, dg=f32, scale="fp32", T="i32", B="i32", H="i32",
               K="constexpr", V="constexpr", L="constexpr", BT="constexpr", BK="constexpr", BV="constexpr",
               PREC="constexpr", RAW="constexpr")
    cst = dict(K=K, V=K, L=L, BT=BT, BK=K, BV=K, PREC="tf32", RAW=True)
    return _compile(pc.prism_bwd_keys_kernel, sig, cst, warps)


def key(K, BT, BV, warps, first, kind=-1, last=False):
    """prism_bwd_key_kernel (one extra key per launch; l is a runtime argument). kind -1: the three program kinds
    branched on program_id(0) (KEYS_IMPL="split"); 0, 1, 2: that kind alone (KEYS_IMPL="kinds"). last: the l = 1
    launch with the tail fused (KEYS_TAIL="fused", version 7)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, k=dt, v=dt, u=dt, p=dt, beta=dt, gc=f32, dhs=dt if "dh" in KEYS_BF16 else f32, do=dt, dy=f32,
               dqp=f32, dkp=f32, dbp=f32, dgp=f32, drp=f32, dk=dt, dp=dt, dbeta=dt, dq=dt, dv=dt, du=dt, dd=dt,
               dbv=f32, scale="fp32", T="i32", B="i32", H="i32", l="i32", K="constexpr", V="constexpr", BT="constexpr",
               BK="constexpr", BV="constexpr", FIRST="constexpr", PREC="constexpr", RAW="constexpr", KIND="constexpr",
               LAST="constexpr", STASH_D="constexpr", NV="constexpr")
    cst = dict(K=K, V=K, BT=BT, BK=K, BV=BV, FIRST=first, PREC="tf32", RAW=True, KIND=kind, LAST=last,
               STASH_D="d" in KEYS_BF16, NV=2 if kind == 2 and BV < K else 1)
    sig = {n: sig[n] for n in pc.prism_bwd_key_kernel.arg_names if n in sig}
    return _compile(pc.prism_bwd_key_kernel, sig, {n: v for n, v in cst.items() if n in sig}, warps)


def key_values_rb(K, BT, BS, warps, first, last=False):
    """prism_bwd_key_values_rb_kernel (KEYS_VALUES_BS: the per-key values launch split by row blocks of BS rows)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, k=dt, v=dt, u=dt, p=dt, beta=dt, gc=f32, dhs=dt if "dh" in KEYS_BF16 else f32, do=dt, dy=f32,
               drp=f32, dp=dt, dbeta=dt, dv=dt, du=dt, dd=dt, scale="fp32", T="i32", B="i32", H="i32", l="i32",
               K="constexpr", V="constexpr", BT="constexpr", BS="constexpr", BK="constexpr", BV="constexpr",
               FIRST="constexpr", PREC="constexpr", RAW="constexpr", LAST="constexpr", STASH_D="constexpr")
    cst = dict(K=K, V=K, BT=BT, BS=BS, BK=K, BV=K, FIRST=first, PREC="tf32", RAW=True, LAST=last,
               STASH_D="d" in KEYS_BF16)
    sig = {n: sig[n] for n in pc.prism_bwd_key_values_rb_kernel.arg_names if n in sig}
    return _compile(pc.prism_bwd_key_values_rb_kernel, sig, cst, warps)


def key_columns_rb(K, BT, BS, warps):
    """prism_bwd_key_columns_rb_kernel (KEYS_COLUMNS_BS: the columns loop in row blocks of BS rows; the D_l stash)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, k=dt, beta=dt, gc=f32, dhs=dt if "dh" in KEYS_BF16 else f32, do=dt, dy=f32, dk=dt, dd=dt,
               scale="fp32", T="i32", B="i32", H="i32", L="i32", K="constexpr", V="constexpr", BT="constexpr",
               BS="constexpr", BK="constexpr", BV="constexpr", PREC="constexpr", RAW="constexpr")
    cst = dict(K=K, V=K, BT=BT, BS=BS, BK=K, BV=K, PREC="tf32", RAW=True)
    sig = {n: sig[n] for n in pc.prism_bwd_key_columns_rb_kernel.arg_names if n in sig}
    return _compile(pc.prism_bwd_key_columns_rb_kernel, sig, cst, warps)


def key_rows(K, L, BT, warps, last, pas=0):
    """prism_bwd_key_rows_kernel (KEYS_LOOP "rows": every key's rows programs in one launch; L a runtime argument,
    given for the record)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, k=dt, v=dt, u=dt, p=dt, beta=dt, gc=f32, dhs=dt if "dh" in KEYS_BF16 else f32, do=dt, dy=f32,
               dqp=f32, dkp=f32, dbp=f32, dgp=f32, dq=dt, dk=dt, dbeta=dt, dd=dt, scale="fp32", T="i32", B="i32",
               H="i32", L="i32", K="constexpr", V="constexpr", BT="constexpr", BK="constexpr", BV="constexpr",
               PREC="constexpr", RAW="constexpr", LAST="constexpr", STASH_D="constexpr", PASS="constexpr")
    cst = dict(K=K, V=K, BT=BT, BK=K, BV=K, PREC="tf32", RAW=True, LAST=last, STASH_D="d" in KEYS_BF16, PASS=pas)
    sig = {n: sig[n] for n in pc.prism_bwd_key_rows_kernel.arg_names if n in sig}
    cst = {n: v for n, v in cst.items() if n in sig}
    return _compile(pc.prism_bwd_key_rows_kernel, sig, cst, warps)


def key_loop(name, K, BT, warps, last):
    """prism_bwd_key_columns_kernel / prism_bwd_key_values_kernel (KEYS_LOOP "columns" / "values")."""
    f32, dt = "*fp32", "*bf16"
    fn = pc.prism_bwd_key_columns_kernel if name == "cols" else pc.prism_bwd_key_values_kernel
    sig = dict(q=dt, k=dt, v=dt, u=dt, p=dt, beta=dt, gc=f32, dhs=dt if "dh" in KEYS_BF16 else f32, do=dt, dy=f32,
               drp=f32, dk=dt, dp=dt, dbeta=dt, dv=dt, du=dt, dd=dt, scale="fp32", T="i32", B="i32", H="i32", L="i32",
               K="constexpr", V="constexpr", BT="constexpr", BK="constexpr", BV="constexpr", PREC="constexpr",
               RAW="constexpr", LAST="constexpr", STASH_D="constexpr")
    cst = dict(K=K, V=K, BT=BT, BK=K, BV=K, PREC="tf32", RAW=True, LAST=last, STASH_D="d" in KEYS_BF16)
    sig = {n: sig[n] for n in fn.arg_names if n in sig}
    return _compile(fn, sig, {n: v for n, v in cst.items() if n in sig}, warps)


def keys_tail(K, BT, warps, has_dr):
    """prism_bwd_keys_tail_kernel (KEYS_IMPL="split"; has_dr: L > 1)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, v=dt, u=dt, p=dt, beta=dt, dy=f32, dqp=f32, dkp=f32, dbp=f32, dgp=f32,
               drp=f32 if has_dr else "constexpr", dq=dt, dk=dt, dv=dt, du=dt, dp=dt, dbeta=dt, dg=f32, scale="fp32",
               T="i32", H="i32", K="constexpr", V="constexpr", BT="constexpr", BK="constexpr", BV="constexpr",
               HAS_DR="constexpr")
    cst = dict(K=K, V=K, BT=BT, BK=K, BV=K, HAS_DR=has_dr)
    if not has_dr:
        cst.update(drp=None)
    return _compile(pc.prism_bwd_keys_tail_kernel, sig, cst, warps)


def wy(K, BT, warps):
    """prism_bwd_wy_kernel (phase C1)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, k=dt, beta=dt, gc=f32, hs=f32, dhs=f32, do=dt, dv1=f32, w=f32, ub=f32, tr=f32, dqp=f32, dbp=f32,
               dgp=f32, scale="fp32", T="i32", H="i32", K="constexpr", V="constexpr", BT="constexpr", BK="constexpr",
               BV="constexpr", PREC="constexpr", RAW="constexpr")
    cst = dict(K=K, V=K, BT=BT, BK=K, BV=K, PREC="tf32", RAW=True)
    return _compile(pc.prism_bwd_wy_kernel, sig, cst, warps)


def wy2_cols(K, BT, BV, warps):
    """prism_bwd_wy2_cols_kernel (WY_IMPL="split2", first kernel; BV = its column block of V)."""
    f32 = "*fp32"
    b16 = "*bf16"
    sig = dict(tr=b16 if "tr" in FWD_16 else f32, hs=b16 if "hs" in FWD_16 else f32, w=b16 if "w" in FWD_16 else f32,
               ub=f32, dv1=f32, v1=b16 if WY_V1_16 else f32, T="i32", H="i32",
               K="constexpr", V="constexpr",
               BT="constexpr", BK="constexpr", BV="constexpr", PREC="constexpr")
    return _compile(pc.prism_bwd_wy2_cols_kernel, sig, dict(K=K, V=K, BT=BT, BK=K, BV=BV, PREC="tf32"), warps)


def wy2_erase(K, BT, warps):
    """prism_bwd_wy2_erase_kernel (WY_IMPL="split2", second kernel)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(k=dt, beta=dt, gc=f32, hs=dt if "hs" in FWD_16 else f32, dhs=dt if DH16_WY else f32, dy=f32, v1=dt if WY_V1_16 else f32, w=f32,
               dbp=f32, dgp=f32, T="i32", H="i32",
               K="constexpr", V="constexpr", BT="constexpr", BK="constexpr", BV="constexpr", PREC="constexpr",
               RAW="constexpr")
    return _compile(pc.prism_bwd_wy2_erase_kernel, sig, dict(K=K, V=K, BT=BT, BK=K, BV=K, PREC="tf32", RAW=True), warps)


def wy2_read(K, BT, warps):
    """prism_bwd_wy2_read_kernel (WY_IMPL="split2", third kernel)."""
    f32, dt = "*fp32", "*bf16"
    sig = dict(q=dt, k=dt, gc=f32, hs=dt if "hs" in FWD_16 else f32, do=dt, v1=dt if WY_V1_16 else f32, w=f32, dqp=f32, dgp=f32, scale="fp32",
               T="i32",
               H="i32", K="constexpr", V="constexpr", BT="constexpr", BK="constexpr", BV="constexpr",
               PREC="constexpr", RAW="constexpr")
    return _compile(pc.prism_bwd_wy2_read_kernel, sig, dict(K=K, V=K, BT=BT, BK=K, BV=K, PREC="tf32", RAW=True), warps)


def inner(f):
    while not isinstance(f, triton.runtime.jit.JITFunction):
        f = f.fn
    return f


def fla_kkt(K, BT, BK, warps, stages):
    from fla.ops.common.chunk_scaled_dot_kkt import chunk_scaled_dot_kkt_fwd_kernel as kern
    sig = dict(k="*bf16", g="*fp32", beta="*bf16", A="*fp32", cu_seqlens="constexpr", chunk_indices="constexpr",
               T="i32", H="constexpr", HV="constexpr", K="constexpr", BT="constexpr", BK="constexpr",
               IS_VARLEN="constexpr", USE_G="constexpr")
    cst = dict(cu_seqlens=None, chunk_indices=None, H=16, HV=16, K=K, BT=BT, BK=BK, IS_VARLEN=False, USE_G=True)
    names = list(sig)
    src = _src(fn=inner(kern), signature=sig, constexprs={(names.index(n),): v for n, v in cst.items()})
    return triton.compile(src, target=TGT, options=dict(num_warps=warps, num_stages=stages))


def fla_merge(BT, warps, stages):
    import importlib; st = importlib.import_module("fla.ops.utils.solve_tril")
    kern = st.merge_16x16_to_64x64_inverse_kernel if BT == 64 else st.merge_16x16_to_32x32_inverse_kernel
    sig = dict(A="*fp32", Ai="*fp32", cu_seqlens="constexpr", chunk_indices="constexpr", T="i32", H="constexpr",
               BT="constexpr", USE_TMA="constexpr", IS_VARLEN="constexpr", DOT_PRECISION="constexpr")
    cst = dict(cu_seqlens=None, chunk_indices=None, H=16, BT=BT, USE_TMA=False, IS_VARLEN=False, DOT_PRECISION="ieee")
    names = list(sig)
    src = _src(fn=inner(kern), signature=sig, constexprs={(names.index(n),): v for n, v in cst.items()})
    return triton.compile(src, target=TGT, options=dict(num_warps=warps, num_stages=stages))


if len(sys.argv) != 2:
    sys.exit(__doc__)
jobs = sys.argv[1]
rows = []
for spec in jobs.split(";"):
    kind, *a = spec.split(",")
    a = [int(x) if x.lstrip("-").isdigit() else x for x in a]
    t = time.time()
    try:
        if kind == "prep":
            K, L, warps, solved, bwd = a[:5]
            BT = a[5] if len(a) > 5 else (64 if K <= 64 else 32)
            ck = prep(K, L, BT, warps, bool(solved), bool(bwd))
            r = dict(kernel=f"prep{'_bwd' if bwd else ''}", K=K, L=L, BT=BT, warps=warps, solved=bool(solved))
        elif kind == "prepw":
            K, warps = a[:2]
            BT = a[2] if len(a) > 2 else (64 if K <= 64 else 32)
            ck = prep_w(K, BT, warps); r = dict(kernel="prep_w", K=K, BT=BT, warps=warps)
        elif kind == "prepu":
            K, L, BV, warps, bwd = a[:5]
            BT = a[5] if len(a) > 5 else (64 if K <= 64 else 32)
            ck = prep_u(K, L, BT, BV, warps, bool(bwd))
            r = dict(kernel=f"prep_u{'_bwd' if bwd else ''}", K=K, L=L, BT=BT, BV=BV, warps=warps)
        elif kind == "prepdv":
            K, BV, warps = a[:3]
            BT = a[3] if len(a) > 3 else (64 if K <= 64 else 32)
            ck = prep_dvloc(K, BT, BV, warps); r = dict(kernel="prep_dvloc", K=K, BT=BT, BV=BV, warps=warps)
        elif kind == "keys":      # keys,K,L,warps[,BT]: prism_bwd_keys_kernel (KEYS_IMPL="fused")
            K, L, warps = a[:3]
            BT = a[3] if len(a) > 3 else (64 if K <= 64 else 32)
            ck = keys(K, L, BT, warps); r = dict(kernel="keys_fused", K=K, L=L, BT=BT, warps=warps)
        elif kind == "key":       # key,K,BV,warps,first[,BT[,KIND[,last]]]: prism_bwd_key_kernel (KIND -1: "split";
            # KIND 2 with BV < K: the values launch on column blocks, KEYS_VALUES_BV)
            K, BV, warps, first = a[:4]
            BT = a[4] if len(a) > 4 else (64 if K <= 64 else 32)
            P = a[5] if len(a) > 5 else -1
            last = bool(a[6]) if len(a) > 6 else False
            ck = key(K, BT, BV, warps, bool(first), kind=P, last=last)
            r = dict(kernel="key", K=K, BT=BT, BV=BV, warps=warps, first=bool(first), KIND=P, last=last)
        elif kind == "valrb":     # valrb,K,BS,warps,first,last[,BT]: prism_bwd_key_values_rb_kernel (KEYS_VALUES_BS)
            K, BS, warps, first, last = a[:5]
            BT = a[5] if len(a) > 5 else (64 if K <= 64 else 32)
            ck = key_values_rb(K, BT, BS, warps, bool(first), bool(last))
            r = dict(kernel="key_values_rb", K=K, BT=BT, BS=BS, warps=warps, first=bool(first), last=bool(last))
        elif kind == "colrb":     # colrb,K,BS,warps[,BT]: prism_bwd_key_columns_rb_kernel (KEYS_COLUMNS_BS)
            K, BS, warps = a[:3]
            BT = a[3] if len(a) > 3 else (64 if K <= 64 else 32)
            ck = key_columns_rb(K, BT, BS, warps)
            r = dict(kernel="key_columns_rb", K=K, BT=BT, BS=BS, warps=warps)
        elif kind == "rows":      # rows,K,warps,last[,BT[,PASS]]: prism_bwd_key_rows_kernel (KEYS_LOOP "rows"; PASS 1
            # or 2: one pass of it, KEYS_ROWS_SPLIT)
            K, warps, last = a[:3]
            BT = a[3] if len(a) > 3 else (64 if K <= 64 else 32)
            pas = a[4] if len(a) > 4 else 0
            ck = key_rows(K, 3, BT, warps, bool(last), pas)
            r = dict(kernel="key_rows", K=K, BT=BT, warps=warps, last=bool(last), PASS=pas)
        elif kind in ("cols", "vals"):   # cols,K,warps[,BT] | vals,K,warps,last[,BT]: KEYS_LOOP columns / values
            K, warps = a[:2]
            last = bool(a[2]) if kind == "vals" else False
            rest = a[3:] if kind == "vals" else a[2:]
            BT = rest[0] if rest else (64 if K <= 64 else 32)
            ck = key_loop(kind, K, BT, warps, last)
            r = dict(kernel=f"key_{kind}_loop", K=K, BT=BT, warps=warps, last=last)
        elif kind == "o":         # o,K,L,warps[,BT]: prism_fwd_o_kernel
            K, L, warps = a[:3]
            BT = a[3] if len(a) > 3 else (64 if K <= 64 else 32)
            ck = fwd_o(K, L, BT, warps); r = dict(kernel="o", K=K, L=L, BT=BT, warps=warps)
        elif kind == "h":         # h,K,L,BV,warps[,BT]: prism_fwd_h_kernel (the state pass)
            K, L, BV, warps = a[:4]
            BT = a[4] if len(a) > 4 else (64 if K <= 64 else 32)
            ck = fwd_h(K, L, BT, BV, warps)
            r = dict(kernel="h", K=K, L=L, BT=BT, BV=BV, warps=warps, fwd_sw=FWD_SW)
        elif kind == "tail":      # tail,K,warps,has_dr[,BT]: prism_bwd_keys_tail_kernel (KEYS_IMPL="split")
            K, warps, has_dr = a[:3]
            BT = a[3] if len(a) > 3 else (64 if K <= 64 else 32)
            ck = keys_tail(K, BT, warps, bool(has_dr))
            r = dict(kernel="keys_tail", K=K, BT=BT, warps=warps, has_dr=bool(has_dr))
        elif kind == "wy":        # wy,K,warps[,BT]: prism_bwd_wy_kernel
            K, warps = a[:2]
            BT = a[2] if len(a) > 2 else (64 if K <= 64 else 32)
            ck = wy(K, BT, warps); r = dict(kernel="wy", K=K, BT=BT, warps=warps)
        elif kind == "wy2c":      # wy2c,K,BV,warps[,BT]: WY_IMPL="split2" column kernel
            K, BV, warps = a[:3]
            BT = a[3] if len(a) > 3 else (64 if K <= 64 else 32)
            ck = wy2_cols(K, BT, BV, warps); r = dict(kernel="wy2_cols", K=K, BT=BT, BV=BV, warps=warps)
        elif kind in ("wy2e", "wy2r"):   # wy2e|wy2r,K,warps[,BT]: WY_IMPL="split2" erase / read kernels
            K, warps = a[:2]
            BT = a[2] if len(a) > 2 else (64 if K <= 64 else 32)
            ck = (wy2_erase if kind == "wy2e" else wy2_read)(K, BT, warps)
            r = dict(kernel="wy2_erase" if kind == "wy2e" else "wy2_read", K=K, BT=BT, warps=warps)
        elif kind == "solve":
            K, BT, warps = a
            ck = solve(K, BT, warps); r = dict(kernel="own_solve", K=K, BT=BT, warps=warps)
        elif kind == "kkt":
            K, BT, BK, warps, stages = a
            ck = fla_kkt(K, BT, BK, warps, stages); r = dict(kernel="fla_kkt", K=K, BT=BT, BK=BK, warps=warps, stages=stages)
        elif kind == "merge":
            BT, warps, stages = a
            ck = fla_merge(BT, warps, stages); r = dict(kernel="fla_solve_tril_merge", BT=BT, warps=warps, stages=stages)
        r.update(usage(ck), D16=D16)
    except Exception as e:
        r = dict(spec=spec, error=repr(e)[:400])
    r["sec"] = round(time.time() - t, 1)
    print(json.dumps(r), flush=True)
