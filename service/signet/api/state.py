"""What the routes share: settings, keys, tokenizer and (in embedded mode) the engine."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request

from signet.engine.model_store import model_vocab_size
from signet.engine.tokenizers import TokenizerCatalog, load_tokenizers
from signet.keys import KeyRegistry
from signet.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    keys: KeyRegistry
    tokenizers: TokenizerCatalog
    engine: Any | None = None  # signet.engine.vllm_engine.VllmEngine; None in a detection-only process

    @classmethod
    def load(cls, settings: Settings, model_dir: Path, keys_file: Path) -> ServiceState:
        """Keys and tokenizers for ``model_dir``, without an engine: what detection needs."""
        keys = KeyRegistry.load(keys_file, model_vocab_size(model_dir))
        return cls(settings, keys, load_tokenizers(model_dir, keys))

    @property
    def model_name(self) -> str:
        return self.tokenizers.served_name

    @property
    def tokenizer(self) -> Any:  # transformers.PreTrainedTokenizerBase
        """The served model's tokenizer."""
        return self.tokenizers.get(self.tokenizers.served_name)


def get_state(request: Request) -> ServiceState:
    return request.app.state.signet


StateDependency = Annotated[ServiceState, Depends(get_state)]
