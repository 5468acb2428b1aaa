"""Signet: watermark LLM text on a vLLM engine and detect it with exact statistics."""

__version__ = "0.1.0"
