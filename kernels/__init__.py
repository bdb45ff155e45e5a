"""Triton kernels and their references, installed as `prismbench.kernels`."""
