"""Watermark schemes (scheme.py: the interface; registry.py: the schemes a keys file may name).

numpy and pydantic only at import: no web framework, no vLLM, and torch only inside the
generation-time transforms, since the API process detects without torch.
"""
