"""Input builder shared by every PRISM method (reference, torch, triton, fla-DPLR)."""
from __future__ import annotations

import torch
import torch.nn.functional as F

from prismbench.inputs import as_leaves, seeded_normal
from prismbench.registry import Inputs, Shape


def make_prism_inputs(shape: Shape, seed: int) -> Inputs:
    """Random valid PRISM kernel inputs for `shape` (all leaves require grad).

    q [B,T,H,K]; k [L,B,T,H,K] (L2-normalised per key); v, u [B,T,H,V]; p [L,B,T,H,V] (gains);
    beta [L,B,T,H] in (0, 1); g [B,T,H] = log alpha <= 0, kept in float32 (decays need the range).
    """
    B, T, H, K, V, L = shape.B, shape.T, shape.H, shape.K, shape.V, shape.L
    rnd = seeded_normal(seed)
    x = {
        "q": rnd(B, T, H, K),
        "k": F.normalize(rnd(L, B, T, H, K), dim=-1),
        "v": rnd(B, T, H, V),
        "u": rnd(B, T, H, V),
        "p": rnd(L, B, T, H, V),
        "beta": torch.sigmoid(rnd(L, B, T, H)),
        # alpha in roughly (0.6, 1): log-sigmoid of a shifted normal, as a trained decay gate sits
        "g": F.logsigmoid(rnd(B, T, H) + 2.0),
    }
    return as_leaves(x, shape, keep_fp32=("g",))


def prism_state_size(shape: Shape) -> int:
    """Floats of recurrent state per sequence: H * K * V."""
    return shape.H * shape.K * shape.V
