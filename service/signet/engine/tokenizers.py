"""The tokenizers detection can use, by the name keys give them.

A watermark lives in token ids, so text must be tokenized with the tokenizer of the
model that generated it. The served model's tokenizer is always here, under the
model's name; a key may name another one by the path of a local tokenizer folder,
loaded at start-up. A key naming anything else can still be tested with token_ids.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from signet.engine.model_store import ModelError, load_tokenizer
from signet.keys import KeyRegistry

logger = logging.getLogger(__name__)


class TokenizerCatalog:
    def __init__(self, served_name: str, served_tokenizer: Any) -> None:
        self.served_name = served_name
        self._tokenizers: dict[str, Any] = {served_name: served_tokenizer}

    def add_local(self, name: str) -> None:
        """Load ``name`` if it is a local tokenizer folder; otherwise leave it unavailable."""
        folder = Path(name).expanduser()
        if name in self._tokenizers or not folder.is_dir():
            return
        try:
            self._tokenizers[name] = load_tokenizer(folder)
        except (OSError, ValueError) as error:
            raise ModelError(f"cannot load the tokenizer in {folder}: {error}") from None
        logger.info("loaded tokenizer %s for detection", name)

    def resolve_name(self, name: str | None) -> str:
        """A key's tokenizer name; None means the served model's."""
        return self.served_name if name is None else name

    def get(self, name: str) -> Any | None:
        return self._tokenizers.get(name)

    def vocab_size(self, name: str) -> int | None:
        tokenizer = self._tokenizers.get(name)
        return None if tokenizer is None else len(tokenizer)


def load_tokenizers(model_dir: Path, keys: KeyRegistry) -> TokenizerCatalog:
    """The served model's tokenizer, and every local tokenizer folder a key names."""
    try:
        catalog = TokenizerCatalog(model_dir.name, load_tokenizer(model_dir))
    except (OSError, ValueError) as error:
        raise ModelError(f"cannot load the tokenizer of {model_dir}: {error}") from None
    for key_id in keys.key_ids:
        name = keys.get(key_id).tokenizer
        if name is not None:
            catalog.add_local(name)
    return catalog
