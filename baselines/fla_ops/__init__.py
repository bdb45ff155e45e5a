"""GLA and peer baselines through fla-core (GLA, Gated DeltaNet, Gated DeltaProduct, SDPA, PRISM on fla DPLR).

Installed as `prismbench.baselines.fla_ops`; `methods.py` registers the harness methods.

Example::

    >>> from prismbench.baselines.fla_ops import gla_naive, GLALayer
"""
from .dplr import expand_prism_to_dplr, prism_fla_dplr
from .gated_delta import (
    gated_delta_product_fp64,
    gdn_chunk,
    gdp_chunk,
    gdp_naive,
    make_gdn_inputs,
    make_gdp_inputs,
)
from .gla import GLALayer, GLAState, gla, gla_chunk, gla_naive, gla_recurrent, gla_recurrent_fp64, make_gla_inputs
from .sdpa import make_sdpa_inputs, sdpa_causal

__all__ = [
    "GLALayer", "GLAState", "gla", "expand_prism_to_dplr", "gated_delta_product_fp64", "gdn_chunk", "gdp_chunk", "gdp_naive",
    "gla_chunk", "gla_naive", "gla_recurrent", "gla_recurrent_fp64", "make_gdn_inputs", "make_gdp_inputs",
    "make_gla_inputs", "make_sdpa_inputs", "prism_fla_dplr", "sdpa_causal",
]
