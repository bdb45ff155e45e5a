"""prismbench: a benchmark harness for PRISM (arXiv 2602.10796) against TTT, GLA and peers."""
__version__ = "0.1.0"
