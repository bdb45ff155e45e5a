"""Offline sm_90 resources of ONE program kind of the program_id(0)-branched PRISM kernel prism_bwd_key_kernel:
the kernel's source is copied with `i_p` made a constexpr, so the other branches are dropped at compile time,
and compiled through scripts/kernel_resources.py's key job (K = V = 64, chunk 64, bf16, 16-byte aligned
pointers). Used for kernels/prism/NOTES.md, "Version 4 preparation" (version 4 deleted the other such kernel,
prism_bwd_key2_kernel).

    BVS=64 python scripts/kernel_branch_resources.py prism_bwd_key_kernel 0,1,2 8,4
"""
import contextlib, io, json, os, sys
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
_argv, sys.argv = sys.argv, ["x", "tail,64,8,1"]
with contextlib.redirect_stdout(io.StringIO()):
    import kernel_resources as kr       # runs one small job on import (the script has no main guard)
sys.argv = _argv
from prismbench.kernels.prism import chunk as pc

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "gpu"))
from prism_key_diag import branch_kernel   # noqa: E402  (the same source copy the GPU diagnostic times)

name, parts, warps = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], [int(x) for x in sys.argv[3].split(",")]
assert name == "prism_bwd_key_kernel", "only prism_bwd_key_kernel is branched on program_id(0) now"
for P in parts:
    orig = getattr(pc, name)
    setattr(pc, name, branch_kernel(P))
    try:
        for w in warps:
            ck = kr.key(64, 64, int(os.environ.get("BVS", 64)), w, False)
            print(json.dumps(dict(kernel=name, part=P, warps=w, **kr.usage(ck))), flush=True)
    finally:
        setattr(pc, name, orig)
