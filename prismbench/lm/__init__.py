"""Model-level training throughput (issue 10): a small causal LM whose mixer is any registered layer,
`prismbench train-throughput`, and its figures.

Example::

    >>> from prismbench.lm import LM_CONFIGS, build_lm, count_parameters
    >>> lm = build_lm("gla", LM_CONFIGS["tiny"], device="cpu")
    >>> count_parameters(lm) > 0
    True
"""
from prismbench.lm.mixers import LM_MIXERS, MODEL_ORDER, build_lm, model_state_size, resolve_models
from prismbench.lm.model import LM_CONFIGS, CausalLM, LMConfig, count_parameters, get_config

__all__ = ["LM_CONFIGS", "LM_MIXERS", "MODEL_ORDER", "CausalLM", "LMConfig", "build_lm", "count_parameters",
           "get_config", "model_state_size", "resolve_models"]
