"""Watermark algorithms: pure numpy/torch, no web framework and no vLLM."""
