"""GPU smoke check of the fla-core baselines (baselines/fla_ops): every cuda method runs fwd and fwd+bwd.

For each method at a small shape (default B=2, T=256, H=4, K=V=64, bf16): forward, error of the output vs
the method's float64 reference (same inputs cast to float64, on the same device), then fwd+bwd with a
fixed random cotangent and the error of every input gradient; fla's backward refusal is recorded as
"unsupported: ...". Each record is one JSON line, written as soon as it is known, so a run cut short by
its time limit keeps what it did (fla's first calls autotune, which is slow).

Usage::

    PYTHONUNBUFFERED=1 python scripts/gpu/fla_ops_smoke.py --out $OUT/fla_ops_smoke.jsonl
    python scripts/gpu/fla_ops_smoke.py --device cpu          # the CPU-capable methods only
"""
from __future__ import annotations

import argparse
import json
import time
import traceback

import torch

from prismbench.registry import Shape, Unsupported, get

# (method, L) in the order they run: cheapest and most important first, DPLR (long autotune) last
PLAN = [("sdpa", 1), ("gla-fla-chunk", 1), ("gla-fla-recurrent", 1), ("gdn-fla-chunk", 1),
        ("gdp-fla-chunk", 2), ("prism-fla-dplr", 2), ("gdp-fla-chunk", 3), ("prism-fla-dplr", 1),
        ("gla-naive", 1), ("gdn-naive", 1)]


def rel(a: torch.Tensor, b: torch.Tensor) -> float:
    a, b = a.double(), b.double()
    if torch.isnan(a).any():
        return float("nan")
    return ((a - b).norm() / b.norm().clamp_min(1e-300)).item()


def run_point(name: str, L: int, shape: Shape, mode: str, seed: int = 0) -> dict:
    m = get(name)
    s = shape.with_(L=L)
    rec = {"method": name, "L": L if m.uses_L else None, "mode": mode, "dtype": str(s.dtype), "B": s.B,
           "T": s.T, "H": s.H, "K": s.K, "V": s.V, "reference": m.reference}
    why = m.unsupported_reason(s, mode)
    if why:
        return {**rec, "status": "unsupported", "reason": why}
    x = m.make_inputs(s, seed)
    t0 = time.perf_counter()
    try:
        if mode == "fwd":
            with torch.no_grad():
                o = m.fn(x, s)
        else:
            o = m.fn(x, s)
            do = torch.randn(o.shape, generator=torch.Generator().manual_seed(seed + 1)).to(o.device, o.dtype)
            (o * do).sum().backward()
        if s.device.type == "cuda":
            torch.cuda.synchronize()
    except Unsupported as e:
        return {**rec, "status": "unsupported", "reason": f"unsupported: {e}",
                "first_call_s": round(time.perf_counter() - t0, 2)}
    rec["first_call_s"] = round(time.perf_counter() - t0, 2)
    if m.reference is None:
        return {**rec, "status": "ok"}
    ref = get(m.reference)
    s64 = s.with_(dtype=torch.float64)
    x64 = {k: v.detach().double().requires_grad_(mode == "fwdbwd") for k, v in x.items()}
    if mode == "fwd":
        with torch.no_grad():
            o64 = ref.fn(x64, s64)
        rec["rel_err"] = {"o": rel(o, o64)}
    else:
        o64 = ref.fn(x64, s64)
        (o64 * do.double()).sum().backward()
        rec["rel_err"] = {"o": rel(o.detach(), o64.detach())}
        for k in x:
            if x[k].grad is None:
                rec["rel_err"]["d" + k] = None
            else:
                rec["rel_err"]["d" + k] = rel(x[k].grad, x64[k].grad)
    errs = [v for v in rec["rel_err"].values() if v is not None]
    rec["max_rel_err"] = max(errs) if errs else None
    rec["status"] = "ok" if errs and all(e == e for e in errs) else "nan"
    return rec


def layer_check(device: torch.device) -> list[dict]:
    from prismbench.baselines.fla_ops import GLALayer

    out = []
    torch.manual_seed(0)
    modes = ("chunk", "fused_recurrent") if device.type == "cuda" else ("naive",)
    base = GLALayer(hidden_size=256, num_heads=4).to(device)
    x = torch.randn(2, 100, 256, device=device)
    ref_layer = GLALayer(hidden_size=256, num_heads=4, mode="naive").to(device).double()
    ref_layer.load_state_dict(base.state_dict())
    with torch.no_grad():
        y64 = ref_layer(x.double())[0]
    for mode in modes:
        layer = GLALayer(hidden_size=256, num_heads=4, mode=mode).to(device)
        layer.load_state_dict(base.state_dict())
        y, st = layer(x, output_final_state=True)
        y.sum().backward()
        out.append({"method": f"GLALayer[{mode}]", "status": "ok", "rel_err": {"y": rel(y.detach(), y64)},
                    "state": list(st.recurrent.shape)})
    return out


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dtype", default="bfloat16")
    ap.add_argument("--B", type=int, default=2)
    ap.add_argument("--T", type=int, default=256)
    ap.add_argument("--H", type=int, default=4)
    ap.add_argument("--K", type=int, default=64)
    ap.add_argument("--V", type=int, default=64)
    ap.add_argument("--budget-s", type=float, default=260.0, help="stop starting new points after this")
    ap.add_argument("--out", default=None)
    a = ap.parse_args()
    dev = torch.device(a.device)
    shape = Shape(B=a.B, T=a.T, H=a.H, K=a.K, V=a.V, L=1, dtype=getattr(torch, a.dtype), device=dev)
    fh = open(a.out, "w") if a.out else None

    def emit(rec):
        line = json.dumps(rec)
        print(line, flush=True)
        if fh:
            fh.write(line + "\n")
            fh.flush()

    import triton

    import fla

    info = {"torch": torch.__version__, "triton": triton.__version__, "fla": getattr(fla, "__version__", "?"),
            "device": torch.cuda.get_device_name() if dev.type == "cuda" else "cpu"}
    try:
        from fla.utils import IS_NVIDIA_HOPPER, TRITON_ABOVE_3_4_0, TRITON_ABOVE_3_7_1
        info.update(hopper=IS_NVIDIA_HOPPER, triton_ge_3_4_0=TRITON_ABOVE_3_4_0, triton_ge_3_7_1=TRITON_ABOVE_3_7_1)
    except ImportError:
        pass
    try:
        import tilelang  # noqa: F401  (an fla backend that would take over the refused backward)
        info["tilelang"] = True
    except ImportError:
        info["tilelang"] = False
    emit({"info": info})
    start = time.perf_counter()
    for name, L in PLAN:
        for mode in ("fwd", "fwdbwd"):
            if time.perf_counter() - start > a.budget_s:
                emit({"method": name, "L": L, "mode": mode, "status": "skipped", "reason": "smoke time budget"})
                continue
            try:
                rec = run_point(name, L, shape, mode)
            except Exception as e:  # record and go on, as the runner does
                rec = {"method": name, "L": L, "mode": mode, "status": "error",
                       "error": f"{type(e).__name__}: {e}"[:2000], "trace": traceback.format_exc()[-3000:]}
            rec["t_s"] = round(time.perf_counter() - start, 1)
            emit(rec)
    if time.perf_counter() - start < a.budget_s:
        try:
            for rec in layer_check(dev):
                emit(rec)
        except Exception as e:
            emit({"method": "GLALayer", "status": "error", "error": f"{type(e).__name__}: {e}"[:2000],
                  "trace": traceback.format_exc()[-3000:]})
    emit({"done": True, "total_s": round(time.perf_counter() - start, 1)})


if __name__ == "__main__":
    main()
