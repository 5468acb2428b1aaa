"""What both of vLLM's watermark processors share: how a request names its key, and the
key registry an engine-core process loads for itself.

The processors (``logits_processors.py`` for vLLM's V1 model runner, ``logits_processors_v2.py``
for Model Runner V2) run in the engine-core process, so each loads the key registry from the
path passed in ``additional_config``; a request names only its ``key_id`` (in
``SamplingParams.extra_args``). Secrets never cross a process boundary. Nothing here imports vLLM.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from signet.keys import KeyRegistry

# Names shared with the engine (engine/vllm_engine.py), which passes them to the processors
# across vLLM's process boundary.
WATERMARK_KEY_ID_ARG = "signet_watermark_key_id"  # in SamplingParams.extra_args
KEYS_FILE_CONFIG = "signet_keys_file"  # in VllmConfig.additional_config


def load_registry(vllm_config: Any) -> KeyRegistry | None:
    """The registry named by the engine's ``additional_config``; None when it names none."""
    keys_file = (vllm_config.additional_config or {}).get(KEYS_FILE_CONFIG)
    model_config = getattr(vllm_config, "model_config", None)
    vocab_size = model_config.get_vocab_size() if model_config is not None else None
    return KeyRegistry.load(Path(keys_file), vocab_size) if keys_file else None


def watermark_key_id(params: Any) -> str | None:  # params: vllm.SamplingParams, or None
    """The key a request asks for; None: not watermarked."""
    return (params.extra_args or {}).get(WATERMARK_KEY_ID_ARG) if params is not None else None


def check_key_id(params: Any) -> None:
    """vLLM's ``validate_params``: a key id, when given, is a string."""
    key_id = watermark_key_id(params)
    if key_id is not None and not isinstance(key_id, str):
        raise ValueError(f"{WATERMARK_KEY_ID_ARG} must be a string")


def require_key(registry: KeyRegistry | None, key_id: str) -> None:
    if registry is None:
        raise RuntimeError("a watermarked request reached an engine started without a key registry")
    registry.get(key_id)  # raises UnknownKeyError
