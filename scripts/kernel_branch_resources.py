"""Offline sm_90 resources of each program kind of the per-key backward kernel prism_bwd_key_kernel compiled alone
(KIND = 0 rows, 1 columns, 2 values; KEYS_IMPL="kinds") or branched on program_id(0) (KIND = -1, KEYS_IMPL="split"),
through scripts/kernel_resources.py's key job (K = V = 64, chunk 64, bf16, 16-byte aligned pointers). Used for
kernels/prism/NOTES.md.

    BVS=64 python scripts/kernel_branch_resources.py prism_bwd_key_kernel -1,0,1,2 8,4
"""
import contextlib, io, json, os, sys
os.environ.pop("TRITON_INTERPRET", None)
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
_argv, sys.argv = sys.argv, ["x", "tail,64,8,1"]
with contextlib.redirect_stdout(io.StringIO()):
    import kernel_resources as kr       # runs one small job on import (the script has no main guard)
sys.argv = _argv

name, parts, warps = sys.argv[1], [int(x) for x in sys.argv[2].split(",")], [int(x) for x in sys.argv[3].split(",")]
assert name == "prism_bwd_key_kernel", "only prism_bwd_key_kernel has program kinds"
for P in parts:
    for w in warps:
        last = os.environ.get("LAST") == "1"
        ck = kr.key(64, 64, int(os.environ.get("BVS", 64)), w, False, kind=P, last=last)
        print(json.dumps(dict(kernel=name, part=P, warps=w, last=last, **kr.usage(ck))), flush=True)
