"""Offline sm_90 resources of ONE program kind of the program_id(0)-branched PRISM kernel prism_bwd_key_kernel:
the kernel's source is copied with `i_p` made a constexpr, so the other branches are dropped at compile time,
and compiled through scripts/kernel_resources.py's key job (K = V = 64, chunk 64, bf16, 16-byte aligned
pointers). Used for kernels/prism/NOTES.md, "Version 4 preparation" (version 4 deleted the other such kernel,
prism_bwd_key2_kernel).

    BVS=64 python scripts/kernel_branch_resources.py prism_bwd_key_kernel 0,1,2 8,4
"""
import contextlib, importlib.util, inspect, io, json, os, sys, tempfile
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
_argv, sys.argv = sys.argv, ["x", "tail,64,8,1"]
with contextlib.redirect_stdout(io.StringIO()):
    import kernel_resources as kr       # runs one small job on import (the script has no main guard)
sys.argv = _argv
from prismbench.kernels.prism import chunk as pc

HEAD = ("import triton\nimport triton.language as tl\nfrom prismbench.kernels.prism.chunk import *\n"
        "from prismbench.kernels.prism.chunk import _decays, _key_delta, _key_dk_cols, _cols, _rows, _vec, "
        "_state, _raw, _gmat, _gelu, _gelu_grad\n")

name, parts, warps = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], [int(x) for x in sys.argv[3].split(",")]
src = inspect.getsource(getattr(pc, name).fn)
line = "i_p, i_t, i_bh = tl.program_id(0), tl.program_id(1), tl.program_id(2)"
assert line in src
d = tempfile.mkdtemp()
for P in parts:
    fn = os.path.join(d, f"m_{name}_{P}.py")
    open(fn, "w").write(HEAD + src.replace(line, f"i_t, i_bh = tl.program_id(1), tl.program_id(2)\n"
                                                 f"    i_p: tl.constexpr = {P}"))
    spec = importlib.util.spec_from_file_location(f"m{P}", fn)
    m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)
    orig = getattr(pc, name)
    setattr(pc, name, getattr(m, name))
    try:
        for w in warps:
            ck = kr.key(64, 64, int(os.environ.get("BVS", 64)), w, False)
            print(json.dumps(dict(kernel=name, part=P, warps=w, **kr.usage(ck))), flush=True)
    finally:
        setattr(pc, name, orig)
