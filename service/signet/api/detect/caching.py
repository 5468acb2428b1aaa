"""Keys and values of the /detect result cache.

A key is an HMAC-SHA256, keyed with the keys file's fingerprint secret, of a canonical
JSON document of everything a response depends on. Texts and token ids enter it only as
digests and keys only as their fingerprints, so a key name in Redis reveals neither what
was tested nor any secret; keyed, so that whoever reads Redis cannot confirm a guessed
text either (the document's other fields are easy to guess, and fingerprints sit in
queued jobs). The document names this format and the service's version: a release that
changes a statistic or the response's shape starts from an empty cache rather than
reading old results.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Sequence

import numpy as np
from pydantic import ValidationError

import signet
from signet.api.detect.protocol import DetectResponse
from signet.cache.detection import DetectionCache
from signet.keys import KeyRegistry

logger = logging.getLogger(__name__)

CACHE_FORMAT = "signet /detect result v1"


def text_digest(text: str) -> str:
    # surrogatepass: a JSON body may hold a lone surrogate ("\ud800"), which plain UTF-8 refuses
    return hashlib.sha256(text.encode("utf-8", "surrogatepass")).hexdigest()


def token_ids_digest(token_ids: Sequence[int]) -> str:
    # Requests hold ids in [0, 2**31): four little-endian bytes each encode them unambiguously.
    return hashlib.sha256(np.asarray(token_ids, dtype="<u4").tobytes()).hexdigest()


def cache_key(keys: KeyRegistry, document: dict[str, object]) -> str:
    """The keyed digest of ``document`` (JSON-able, holding no secret or text) with this format."""
    versioned = {"format": CACHE_FORMAT, "version": signet.__version__, **document}
    canonical = json.dumps(versioned, sort_keys=True, separators=(",", ":"), ensure_ascii=True, allow_nan=False)
    return keys.keyed_digest(CACHE_FORMAT.encode("ascii"), canonical.encode("ascii"))


def cached_response(cache: DetectionCache, key: str) -> DetectResponse | None:
    value = cache.get(key)
    if value is None:
        return None
    try:
        response = DetectResponse.model_validate_json(value)
    except ValidationError:
        # Not what this version writes (another version of the response's shape would
        # have another key, so a damaged entry): recompute and overwrite it.
        logger.warning("a cached /detect result could not be read; recomputing it")
        return None
    return response.model_copy(update={"cached": True})


def store(cache: DetectionCache, key: str, response: DetectResponse) -> None:
    cache.put(key, response.model_dump_json().encode())
