"""Baselines (TTT, GLA and peers through fla-core), installed as `prismbench.baselines`."""
