"""Engine adapters: model preparation, vLLM engine and logits processors.

Import the submodules directly; this package imports nothing heavy on its own, so a
detection-only process never loads vLLM.
"""
