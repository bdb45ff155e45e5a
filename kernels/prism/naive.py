"""PyTorch references for the PRISM recurrence: a token loop and the chunked form (SPEC sections 1-2).

Per head, with the state `h` of shape K x V (fla's column convention) and `alpha_t = exp(g_t)`:

    delta = prism_solver(v, u, p)                                         # [L, B, T, H, V]
    h_t = alpha_t (I - beta1_t k1_t k1_t^T) h_{t-1} + sum_l beta_l,t k_l,t delta_l,t^T
    o_t = h_t^T (scale * q_t)

Forgetting is rank 1 and reuses the first key; writing is rank L (`prism_write_term`).

- `naive_recurrent_prism`: the token loop, in the widest dtype of its inputs (the tests and the
  harness pass float64); the ground truth for everything else.
- `chunk_prism_torch`: the chunked form (SPEC 2, merged `V1 = U + D_1`), any chunk size and any T,
  autograd through it; float32 at least inside. It is the CPU fast path, the GPU fallback, and in
  float64 the reference for the Triton kernel (equal to the loop to ~1e-15).
- `check_prism_inputs`: the shape and value checks shared by every backend (the Triton wrapper too).
"""
from __future__ import annotations

from typing import Optional

import torch
import torch.nn.functional as F

from prismbench.kernels.prism.solver import prism_solver

__all__ = ["check_prism_inputs", "prism_write_term", "naive_recurrent_prism", "chunk_prism_torch",
           "chunk_gated_delta_rule_torch"]


def _shape(t: torch.Tensor) -> tuple:
    return tuple(t.shape)


def check_prism_inputs(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    p: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    initial_state: Optional[torch.Tensor] = None,
    *,
    check_values: bool = True,
) -> tuple[int, int, int, int, int, int]:
    """Check PRISM kernel inputs; return `(B, T, H, K, V, L)`.

    Args:
        q: queries `[B, T, H, K]`.
        k: keys `[L, B, T, H, K]` (k[0] is also the erase key).
        v: values `[B, T, H, V]`.
        u: anchor slice `[B, T, H, V]`.
        p: solver gains `[L, B, T, H, V]`.
        beta: step sizes `[L, B, T, H]`.
        g: log-decay `[B, T, H]` (log alpha; must be finite).
        initial_state: optional `[B, H, K, V]`.
        check_values: also check that `g` is finite (one device-to-host sync on a GPU; skipped while
            the current CUDA stream is capturing a graph).

    Raises:
        ValueError naming the argument and its shape or value: wrong rank, mismatched B/T/H/K/V/L,
        L < 1, T < 1, a non-floating tensor, tensors on different devices, non-finite `g`.

    Example::

        >>> B, T, H, K, V, L = 2, 5, 3, 4, 6, 2
        >>> x = dict(q=torch.randn(B, T, H, K), k=torch.randn(L, B, T, H, K), v=torch.randn(B, T, H, V),
        ...          u=torch.randn(B, T, H, V), p=torch.randn(L, B, T, H, V), beta=torch.rand(L, B, T, H),
        ...          g=-torch.rand(B, T, H))
        >>> check_prism_inputs(**x)
        (2, 5, 3, 4, 6, 2)
    """
    named = {"q": q, "k": k, "v": v, "u": u, "p": p, "beta": beta, "g": g}
    if initial_state is not None:
        named["initial_state"] = initial_state
    for name, t in named.items():
        if not isinstance(t, torch.Tensor):
            raise ValueError(f"{name} must be a torch.Tensor, got {type(t).__name__}")
        if not t.is_floating_point():
            raise ValueError(f"{name} must be a floating tensor, got dtype {t.dtype}")
    if q.dim() != 4:
        raise ValueError(f"q must be [B, T, H, K], got q.shape={_shape(q)}")
    B, T, H, K = q.shape
    if T < 1:
        raise ValueError(f"q: T = q.shape[1] = {T} must be >= 1")
    if k.dim() != 5:
        raise ValueError(f"k must be [L, B, T, H, K], got k.shape={_shape(k)}")
    L = k.shape[0]
    if L < 1:
        raise ValueError(f"k: L = k.shape[0] = {L} must be >= 1 (k.shape={_shape(k)})")
    if k.shape[1:4] != (B, T, H):
        raise ValueError(f"k.shape={_shape(k)} does not match q's [B, T, H] = {(B, T, H)}: expected [L, B, T, H, K]")
    if k.shape[4] != K:
        raise ValueError(f"k: K = k.shape[4] = {k.shape[4]} does not match q's K = q.shape[3] = {K}")
    if v.dim() != 4 or v.shape[:3] != (B, T, H):
        raise ValueError(f"v must be [B, T, H, V] with [B, T, H] = {(B, T, H)}, got v.shape={_shape(v)}")
    V = v.shape[3]
    if u.shape != v.shape:
        raise ValueError(f"u.shape={_shape(u)} must equal v.shape={_shape(v)}")
    if p.shape != (L, B, T, H, V):
        raise ValueError(f"p must be [L, B, T, H, V] = {(L, B, T, H, V)}, got p.shape={_shape(p)}")
    if beta.shape != (L, B, T, H):
        raise ValueError(f"beta must be [L, B, T, H] = {(L, B, T, H)}, got beta.shape={_shape(beta)}")
    if g.shape != (B, T, H):
        raise ValueError(f"g must be [B, T, H] = {(B, T, H)}, got g.shape={_shape(g)}")
    if initial_state is not None and initial_state.shape != (B, H, K, V):
        raise ValueError(
            f"initial_state must be [B, H, K, V] = {(B, H, K, V)}, got initial_state.shape={_shape(initial_state)}"
        )
    dev = q.device
    for name, t in named.items():
        if t.device != dev:
            raise ValueError(f"{name} is on {t.device} but q is on {dev}: all inputs must share one device")
    # the value check syncs with the host, which a CUDA graph capture forbids: skipped while capturing
    capturing = g.is_cuda and torch.cuda.is_current_stream_capturing()
    if check_values and not capturing and not bool(torch.isfinite(g).all()):
        bad = (~torch.isfinite(g)).nonzero()[0].tolist()
        raise ValueError(f"g (log-decay) must be finite, got g[{', '.join(map(str, bad))}]={g[tuple(bad)].item()}")
    return B, T, H, K, V, L


def _compute_dtype(*ts: Optional[torch.Tensor], at_least: Optional[torch.dtype] = None) -> torch.dtype:
    dt = at_least
    for t in ts:
        if t is not None:
            dt = t.dtype if dt is None else torch.promote_types(dt, t.dtype)
    return dt


def _check_scale(scale: Optional[float], K: int) -> float:
    if scale is None:
        return K ** -0.5
    scale = float(scale)
    if not (scale == scale and abs(scale) != float("inf")):
        raise ValueError(f"scale must be finite, got scale={scale}")
    return scale


def prism_write_term(k: torch.Tensor, beta: torch.Tensor, delta: torch.Tensor) -> torch.Tensor:
    """The write term `B_t = sum_l beta_l,t k_l,t delta_l,t^T` of every token (rank L for generic inputs).

    Args:
        k: keys `[L, B, T, H, K]`.
        beta: step sizes `[L, B, T, H]`.
        delta: solver deltas `[L, B, T, H, V]` (`prism_solver(v, u, p)`).

    Returns:
        `[B, T, H, K, V]`.

    Example::

        >>> k, d = torch.randn(3, 1, 2, 1, 8), torch.randn(3, 1, 2, 1, 8)
        >>> torch.linalg.matrix_rank(prism_write_term(k, torch.rand(3, 1, 2, 1), d)[0, 0, 0]).item()
        3
    """
    return torch.einsum("lbthk,lbth,lbthv->bthkv", k, beta, delta)


def naive_recurrent_prism(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    p: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Token-loop reference of the PRISM recurrence.

    Computes in the widest dtype of its inputs (float64 in the tests and as the harness reference);
    autograd flows through it (no in-place updates).

    Args:
        q: queries `[B, T, H, K]`.
        k: keys `[L, B, T, H, K]`, L2-normalised; k[0] is also the erase key.
        v: values `[B, T, H, V]`.
        u: anchor slice `[B, T, H, V]` (residual seed r1 = v - u).
        p: solver gains `[L, B, T, H, V]`.
        beta: step sizes `[L, B, T, H]` in (0, 1); beta[0] is also the erase strength.
        g: log-decay `[B, T, H]` (alpha = exp(g)).
        scale: query scale; default `K ** -0.5`.
        initial_state: `[B, H, K, V]`; default zeros.
        output_final_state: also return the state after the last token.

    Returns:
        o: `[B, T, H, V]` in q.dtype.
        final_state: `[B, H, K, V]` in the compute dtype, or None.

    Example::

        >>> B, T, H, K, V, L = 1, 6, 2, 4, 4, 2
        >>> o, h = naive_recurrent_prism(torch.randn(B, T, H, K, dtype=torch.float64),
        ...     F.normalize(torch.randn(L, B, T, H, K, dtype=torch.float64), dim=-1),
        ...     *torch.randn(2, B, T, H, V, dtype=torch.float64), torch.randn(L, B, T, H, V, dtype=torch.float64),
        ...     torch.rand(L, B, T, H, dtype=torch.float64), -torch.rand(B, T, H, dtype=torch.float64),
        ...     output_final_state=True)
        >>> o.shape, h.shape
        (torch.Size([1, 6, 2, 4]), torch.Size([1, 2, 4, 4]))
    """
    B, T, H, K, V, L = check_prism_inputs(q, k, v, u, p, beta, g, initial_state)
    cd = _compute_dtype(q, k, v, u, p, beta, g, initial_state)
    out_dtype = q.dtype
    scale = _check_scale(scale, K)
    q, k, v, u, p, beta, g = (t.to(cd) for t in (q, k, v, u, p, beta, g))
    delta = prism_solver(v, u, p)                      # [L, B, T, H, V]
    bk = beta[..., None] * k                           # beta_l k_l, [L, B, T, H, K]
    alpha = g.exp()                                    # [B, T, H]
    ak1 = (alpha * beta[0])[..., None] * k[0]          # alpha beta1 k1, [B, T, H, K]
    qs = q * scale
    if initial_state is None:
        h = q.new_zeros(B, H, K, V)
    else:
        h = initial_state.to(cd)
    outs = []
    for t in range(T):
        # h <- alpha h - (alpha beta1 k1)(k1^T h) + sum_l (beta_l k_l) delta_l^T; written so that
        # autograd keeps one K x V tensor per token (h itself) for the backward pass.
        kh = torch.einsum("bhk,bhkv->bhv", k[0, :, t], h)                # k1^T h, [B, H, V]
        write = torch.einsum("lbhk,lbhv->bhkv", bk[:, :, t], delta[:, :, t])
        h = alpha[:, t, :, None, None] * h - ak1[:, t, :, :, None] * kh[:, :, None, :] + write
        outs.append(torch.einsum("bhk,bhkv->bhv", qs[:, t], h))
    o = torch.stack(outs, 1)
    return o.to(out_dtype), (h if output_final_state else None)


def chunk_prism_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    u: torch.Tensor,
    p: torch.Tensor,
    beta: torch.Tensor,
    g: torch.Tensor,
    scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """Chunked PRISM in PyTorch (SPEC section 2, merged `V1 = U + D_1` form); autograd through it.

    Inside a chunk of C tokens with incoming state `h` (per head; `b` = chunk-local cumsum of g,
    `G_ti = exp(b_t - b_i)` formed only for i <= t, `e_t = exp(b_C - b_t)`, `D_l = diag(beta_l) Delta_l`):

        A   = diag(beta1) (M< . G . K1 K1^T),  Tr = (I + A)^-1            (unit lower triangular solve)
        W   = Tr diag(beta1 exp(b)) K1,  Ub = Tr (D_1 - diag(beta1) sum_{l>=2} (M< . G . K1 K_l^T) D_l)
        V1  = Ub - W h                                                   (fla's v_new; = D_1 at L=1 write side)
        O   = diag(exp(b)) Q h + (M<= . G . Q K1^T) V1 + sum_{l>=2} (M<= . G . Q K_l^T) D_l
        h' = exp(b_C) h + (diag(e) K1)^T V1 + sum_{l>=2} (diag(e) K_l)^T D_l

    with Q = scale * q. W, Ub and the l >= 2 blocks are state-free and computed for all chunks at once;
    only `h -> (V1, h')` runs chunk after chunk. A partial last chunk is padded with zero keys, step
    sizes and g = 0 (exact). At L = 1 this is the gated delta rule's chunked form with v = delta^(1).

    Args:
        q: queries `[B, T, H, K]`.
        k: keys `[L, B, T, H, K]`, L2-normalised; k[0] is also the erase key.
        v: values `[B, T, H, V]`.
        u: anchor slice `[B, T, H, V]`.
        p: solver gains `[L, B, T, H, V]`.
        beta: step sizes `[L, B, T, H]`.
        g: log-decay `[B, T, H]`.
        scale: query scale; default `K ** -0.5`.
        initial_state: `[B, H, K, V]`; default zeros.
        output_final_state: also return the state after the last token.
        chunk_size: tokens per chunk C (any C >= 1; T need not be a multiple).

    Returns:
        o: `[B, T, H, V]` in q.dtype.
        final_state: `[B, H, K, V]` in the compute dtype (float32, or float64 for float64 inputs), or None.

    Example::

        >>> B, T, H, K, V, L = 1, 50, 2, 8, 8, 3
        >>> x = dict(q=torch.randn(B, T, H, K), k=F.normalize(torch.randn(L, B, T, H, K), dim=-1),
        ...          v=torch.randn(B, T, H, V), u=torch.randn(B, T, H, V), p=torch.randn(L, B, T, H, V),
        ...          beta=torch.rand(L, B, T, H), g=-torch.rand(B, T, H))
        >>> o, _ = chunk_prism_torch(**x, chunk_size=16)
        >>> torch.allclose(o, naive_recurrent_prism(**x)[0], atol=1e-4)
        True
    """
    B, T, H, K, V, L = check_prism_inputs(q, k, v, u, p, beta, g, initial_state)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got chunk_size={chunk_size!r}")
    cd = _compute_dtype(q, k, v, u, p, beta, g, initial_state, at_least=torch.float32)
    delta = prism_solver(v.to(cd), u.to(cd), p.to(cd))                    # [L, B, T, H, V]
    d = beta.to(cd)[..., None] * delta                                      # D_l rows, [L, B, T, H, V]
    return _chunk_from_writes(q, k, d, beta, g, _check_scale(scale, K), initial_state, output_final_state,
                              chunk_size, cd)


def chunk_gated_delta_rule_torch(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    g: torch.Tensor,
    beta: torch.Tensor,
    scale: Optional[float] = None,
    initial_state: Optional[torch.Tensor] = None,
    output_final_state: bool = False,
    chunk_size: int = 64,
) -> tuple[torch.Tensor, Optional[torch.Tensor]]:
    """The gated delta rule (Gated DeltaNet), chunked in PyTorch: PRISM at L = 1 with its delta given.

        h_t = exp(g_t) (I - beta_t k_t k_t^T) h_{t-1} + beta_t k_t v_t^T,   o_t = h_t^T (scale q_t)

    Same arguments and layout as fla's `chunk_gated_delta_rule` (`q, k [B, T, H, K]`, `v [B, T, H, V]`,
    `g, beta [B, T, H]`, k L2-normalised by the caller); the intra-chunk inverse is one triangular solve, so
    it launches far fewer kernels than fla's PyTorch reference (a row loop per chunk). Exact against fla's
    token loop (tests/kernels/test_prism_reference.py). Autograd through it; float32 compute at least.
    """
    for name, t, dims in (("q", q, 4), ("k", k, 4), ("v", v, 4), ("g", g, 3), ("beta", beta, 3)):
        if not isinstance(t, torch.Tensor) or t.dim() != dims:
            raise ValueError(f"{name} must be a {dims}-d tensor, got {name}.shape={_shape(t)}")
    B, T, H, K = q.shape
    if k.shape != q.shape or v.shape[:3] != (B, T, H) or g.shape != (B, T, H) or beta.shape != (B, T, H):
        raise ValueError(f"expected q, k [B, T, H, K], v [B, T, H, V], g, beta [B, T, H]; got q {_shape(q)}, "
                         f"k {_shape(k)}, v {_shape(v)}, g {_shape(g)}, beta {_shape(beta)}")
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size must be an int >= 1, got chunk_size={chunk_size!r}")
    cd = _compute_dtype(q, k, v, g, beta, initial_state, at_least=torch.float32)
    d = (beta.to(cd)[..., None] * v.to(cd))[None]                          # [1, B, T, H, V]
    return _chunk_from_writes(q, k[None], d, beta[None], g, _check_scale(scale, K), initial_state,
                              output_final_state, chunk_size, cd)


def _chunk_from_writes(q, k, d, beta, g, scale, initial_state, output_final_state, chunk_size, cd):
    """The chunked recurrence of `chunk_prism_torch` given the write rows `d = beta * delta` `[L, B, T, H, V]`."""
    L, B, T, H, V = d.shape
    K = q.shape[-1]
    out_dtype = q.dtype
    C = chunk_size
    N = -(-T // C)
    pad = N * C - T

    def chunks(x: torch.Tensor, lead: int) -> torch.Tensor:
        # [*lead, B, T, H, *rest] -> [*lead, B, H, N, C, *rest], zero-padded in T
        x = x.to(cd).movedim(lead + 2, lead + 1)                           # [*lead, B, H, T, *rest]
        if pad:
            rest = x.dim() - (lead + 3)
            x = F.pad(x, (0, 0) * rest + (0, pad))
        return x.reshape(*x.shape[: lead + 2], N, C, *x.shape[lead + 3:])

    qc = chunks(q, 0) * scale                                               # [B, H, N, C, K]
    kc = chunks(k, 1)                                                       # [L, B, H, N, C, K]
    dc = chunks(d, 1)                                                       # [L, B, H, N, C, V]
    b1 = chunks(beta[0], 0)                                                 # [B, H, N, C]
    bcum = chunks(g, 0).cumsum(-1)                                          # [B, H, N, C], log gamma
    k1 = kc[0]

    ones = torch.ones(C, C, dtype=torch.bool, device=q.device)
    m_le = torch.tril(ones)
    m_lt = torch.tril(ones, -1)
    diff = bcum[..., :, None] - bcum[..., None, :]                          # b_t - b_i
    G = torch.where(m_le, torch.exp(torch.where(m_le, diff, torch.zeros_like(diff))), torch.zeros_like(diff))
    G_lt = G.masked_fill(~m_lt, 0)
    gamma = bcum.exp()                                                      # [B, H, N, C]
    e = torch.exp(bcum[..., -1:] - bcum)                                    # gamma_C / gamma_t
    gamma_C = bcum[..., -1].exp()                                           # [B, H, N]

    A = b1[..., :, None] * G_lt * (k1 @ k1.transpose(-1, -2))              # [B, H, N, C, C]
    rhs_u = dc[0]
    o_extra = torch.zeros_like(dc[0])
    s_extra = torch.zeros(B, H, N, K, V, dtype=cd, device=q.device)
    for l in range(1, L):
        rhs_u = rhs_u - b1[..., None] * ((G_lt * (k1 @ kc[l].transpose(-1, -2))) @ dc[l])
        o_extra = o_extra + (G * (qc @ kc[l].transpose(-1, -2))) @ dc[l]
        s_extra = s_extra + (e[..., None] * kc[l]).transpose(-1, -2) @ dc[l]
    rhs_w = (b1 * gamma)[..., None] * k1
    eye = torch.eye(C, dtype=cd, device=q.device)
    X = torch.linalg.solve_triangular(eye + A, torch.cat([rhs_w, rhs_u], -1), upper=False, unitriangular=True)
    W, Ub = X[..., :K], X[..., K:]                                          # [B,H,N,C,K], [B,H,N,C,V]
    k1e_t = (e[..., None] * k1).transpose(-1, -2)                           # [B, H, N, K, C]

    h = torch.zeros(B, H, K, V, dtype=cd, device=q.device) if initial_state is None else initial_state.to(cd)
    h_starts, v_new = [], []
    for n in range(N):
        h_starts.append(h)
        v1 = Ub[:, :, n] - W[:, :, n] @ h                                   # [B, H, C, V]
        v_new.append(v1)
        h = gamma_C[:, :, n, None, None] * h + k1e_t[:, :, n] @ v1 + s_extra[:, :, n]
    hs = torch.stack(h_starts, 2)                                           # [B, H, N, K, V]
    v1 = torch.stack(v_new, 2)                                              # [B, H, N, C, V]
    o = gamma[..., None] * (qc @ hs) + (G * (qc @ k1.transpose(-1, -2))) @ v1 + o_extra
    o = o.reshape(B, H, N * C, V)[:, :, :T].transpose(1, 2)                # [B, T, H, V]
    return o.to(out_dtype), (h if output_final_state else None)
