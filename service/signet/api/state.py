"""What the routes share: settings, keys, tokenizer and (in embedded mode) the engine."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request

from signet.keys import KeyRegistry
from signet.settings import Settings


@dataclass
class ServiceState:
    settings: Settings
    keys: KeyRegistry
    tokenizer: Any  # transformers.PreTrainedTokenizerBase
    model_name: str
    engine: Any | None = None  # signet.engine.vllm_engine.VllmEngine; None in a detection-only process


def get_state(request: Request) -> ServiceState:
    return request.app.state.signet


StateDependency = Annotated[ServiceState, Depends(get_state)]
