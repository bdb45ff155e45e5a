"""Where does GLA fail at the probing suite's shapes (width 16, one head: K = V = 16, float32)?

The accuracy suite's GPU test hit `CUDA error: misaligned address` in the gla mixer (ci preset: T=32,
B=32, one head of 16 channels, float32, eager). A CUDA error poisons the process, so each case runs in
its own subprocess with CUDA_LAUNCH_BLOCKING=1 (the traceback then names the failing launch).
    python3 scripts/gpu/gla_small_head_diag.py            # all cases, a line each
Set TRITON_CACHE_AUTOTUNING=1 (scripts/gpu/setup.sh does) so a case's autotuning is kept for the next.
"""
import os
import subprocess
import sys

CASES = {  # cheapest first: fla autotunes chunk_gla's kernels per new shape, which took > 60 s at K=16 (2026-11-25)
    "fused_recurrent_fwd_T32_K16_fp32": "fr32", "fused_recurrent_fwd_T128_K16_fp32": "fr128",
    "fused_recurrent_fwdbwd_T128_K16_fp32": "frbwd128", "accuracy_mixer_auto_T128_D16": "mixer128",
    "chunk_fwdbwd_T128_K16_fp32": "chunk", "chunk_fwdbwd_T32_K16_fp32": "chunk32",
    "layer_train_eval_T32_D16": "layer32", "layer_train_eval_T128_D16": "layer128",
    "chunk_fwdbwd_T128_K16_bf16": "chunkbf16", "chunk_fwdbwd_T128_K32_fp32": "chunkK32",
}
CASE_TIMEOUT = float(os.environ.get("GLA_DIAG_CASE_TIMEOUT", "240"))


def case(name: str) -> None:
    import torch
    import torch.nn.functional as F
    from fla.ops.gla import chunk_gla, fused_recurrent_gla

    torch.manual_seed(0)
    T = 32 if name in ("chunk32", "fr32", "layer32") else 128
    if name == "mixer128" or name.startswith("layer"):
        # the accuracy suite's tiny model: "mixer128" as the gla mixer is built now (backend "auto": fused_recurrent
        # at D=16), "layer*" forced onto chunk_gla (what failed on 2026-11-25)
        _train_tiny(T, "auto" if name == "mixer128" else "chunk")
        return
    K = 32 if name == "chunkK32" else 16
    dt = torch.bfloat16 if name == "chunkbf16" else torch.float32
    B, H = 32, 1
    mk = lambda *s: torch.randn(*s, device="cuda", dtype=dt).requires_grad_()  # noqa: E731
    q, k, v = mk(B, T, H, K), mk(B, T, H, K), mk(B, T, H, K)
    gk = F.logsigmoid(torch.randn(B, T, H, K, device="cuda")).div(16).to(dt).requires_grad_()
    if name.startswith("fr"):
        o, _ = fused_recurrent_gla(q, k, v, gk)
        if name.startswith("frbwd"):
            o.sum().backward()
    else:
        o, _ = chunk_gla(q, k, v, gk)
        o.sum().backward()
    torch.cuda.synchronize()


def _train_tiny(T: int, backend: str) -> None:
    import torch

    from prismbench.accuracy.model import TinyLM

    m = TinyLM(64, 16, "gla", device="cuda", mixer_kwargs={"backend": backend}).cuda()
    print("backend:", m.backend)
    x = torch.randint(0, 64, (32, T), device="cuda")
    for _ in range(3):
        m(x).sum().backward()
    m.eval()
    with torch.no_grad():
        m(x)
    torch.cuda.synchronize()


if __name__ == "__main__":
    if len(sys.argv) > 1:
        case(sys.argv[1])
        sys.exit(0)
    env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1")
    for label, arg in CASES.items():
        try:
            r = subprocess.run([sys.executable, __file__, arg], env=env, capture_output=True, text=True, timeout=CASE_TIMEOUT)
            lines = [ln for ln in (r.stdout + r.stderr).splitlines() if ln.strip()]
            tail = lines[-6:] if r.returncode else [ln for ln in lines if ln.startswith("backend:")]
            print(f"[gla-diag] {label}: {'ok' if r.returncode == 0 else 'FAIL rc=%d' % r.returncode}", flush=True)
            for ln in tail:
                print(f"    {ln[:300]}", flush=True)
        except subprocess.TimeoutExpired:
            print(f"[gla-diag] {label}: timeout", flush=True)
