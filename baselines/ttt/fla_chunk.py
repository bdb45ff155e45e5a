"""fla `chunk_ttt_linear` (mini-batch 16), corrected to compute TTT-Linear's mini-batch form.

fla's op differs from the reference layer (SPEC section 3); this wrapper applies what can be
applied from outside the op:

* `scale=1.0` (fla otherwise scales q by 1/sqrt(K));
* read-out `q + LN(Zq)` instead of fla's `Zq + norm(Zq)`: we call `ChunkTTTLinearFunction`
  (which returns the pre-norm read-out Zq), apply the per-head LN (gamma, beta, eps) with fla's
  fused `group_norm` (the kernel fla's own `norm_residual` uses) and add q;
* the learned initial state W0 `[H, D, D]`, b0 `[H, D]` is passed as fla's initial_state /
  initial_state_bias (expanded over the batch, so dW0/db0 collect over it).

What cannot be corrected from outside: fla's step size varies per row only. Row t's read-out uses
eta_t for every token s <= t of its mini-batch and the state update uses the mini-batch's last eta
(`naive.ttt_linear_minibatch(eta_mode="row")`); the reference layer's mini-batch form scales each
token's gradient by its own eta_s. Both are mini-batch 16 models, different from the per-token
(mini-batch 1) `ttt-loop` / `ttt-triton`: results must say "mini-batch 16".

On the CPU, or for float64 inputs, the same computation runs through `naive.ttt_linear_minibatch`
(eta_mode="row"), which equals fla's pure-PyTorch reference `fla.ops.ttt.naive.chunk_ttt_linear_ref`
(checked in tests/baselines/test_ttt.py) but keeps float64 and returns the corrected read-out.

Example::

    >>> x = make_ttt_inputs(B=2, T=64, H=4, D=64, device="cuda", dtype=torch.bfloat16, requires_grad=True)
    >>> o = ttt_linear_fla_chunk(**x)       # [2, 64, 4, 64]
"""
from __future__ import annotations

import torch

from .naive import EPS_EXACT, FLA_MINI_BATCH, check_ttt_inputs, ttt_linear_minibatch

__all__ = ["ttt_linear_fla_chunk", "FLA_CHUNK_SIZES"]

#: mini-batch sizes fla's kernels accept
FLA_CHUNK_SIZES = (16, 32, 64)


def ttt_linear_fla_chunk(q, k, v, eta, gamma, beta, W0, b0, eps: float = EPS_EXACT,
                         mini_batch_size: int = FLA_MINI_BATCH) -> torch.Tensor:
    """Mini-batch TTT-Linear through fla `chunk_ttt_linear`'s kernels (CUDA) or its dual form (CPU/fp64).

    Args:
        q, k, v: `[B, T, H, D]`, D <= 128.
        eta: `[B, T, H]` step sizes (fla's per-row convention, see the module docstring).
        gamma, beta: `[H, D]` LN weight/bias; W0 `[H, D, D]`, b0 `[H, D]` initial state.
        mini_batch_size: 16 (default), 32 or 64.

    Returns:
        o `[B, T, H, D]` = q + LN(Zq) in q.dtype.

    Example::

        >>> x = make_ttt_inputs(B=1, T=40, H=2, D=16)     # CPU: runs the dual form
        >>> ttt_linear_fla_chunk(**x).shape
        torch.Size([1, 40, 2, 16])
    """
    B, T, H, D = check_ttt_inputs(q, k, v, eta, gamma, beta, W0, b0, who="ttt_linear_fla_chunk")
    if mini_batch_size not in FLA_CHUNK_SIZES:
        raise ValueError(f"ttt_linear_fla_chunk: mini_batch_size={mini_batch_size} not in {FLA_CHUNK_SIZES}")
    if q.device.type != "cuda" or q.dtype == torch.float64:
        return ttt_linear_minibatch(q, k, v, eta, gamma, beta, W0, b0, mini_batch_size=mini_batch_size,
                                    eta_mode="row", eps=eps)[0]
    if D > 128:
        raise ValueError(f"ttt_linear_fla_chunk: D={D} > 128 (fla chunk_ttt_linear's limit)")
    from fla.modules.layernorm import group_norm
    from fla.ops.ttt.chunk import ChunkTTTLinearFunction

    # fla's kernels take the LN weight/bias and the step sizes in q's dtype (its backward kernel carries the
    # LN weight through a loop in that dtype: float32 parameters beside bf16 activations, as under autocast,
    # fail to compile); a no-op when the inputs already share q's dtype
    gamma, beta, eta = gamma.to(q.dtype), beta.to(q.dtype), eta.to(q.dtype)
    h0 = W0.float().unsqueeze(0).expand(B, H, D, D)
    hb0 = b0.float().view(1, H, 1, D).expand(B, H, 1, D)
    # ChunkTTTLinearFunction.apply(q, k, v, w, b, chunk_size, eta, scale, eps, h0, hb0,
    #                              output_final_state, cu_seqlens, cu_seqlens_cpu) -> (Zq, hT, hbT)
    Z, _, _ = ChunkTTTLinearFunction.apply(q, k, v, gamma, beta, mini_batch_size, eta.unsqueeze(-1), 1.0, eps,
                                           h0, hb0, False, None, None)
    # per-head LN of Zq with fla's fused group norm (the kernel fla's own norm_residual uses), then + q
    ln = group_norm(Z.reshape(B, T, H * D), weight=gamma.reshape(-1), bias=beta.reshape(-1), eps=eps,
                    num_groups=H)
    return q + ln.view(B, T, H, D)
