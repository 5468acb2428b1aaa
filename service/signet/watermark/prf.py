"""A keyed counter-based pseudo-random function over token ids.

Every function here is written with the operators ``^ >> & * +`` only, so the same
code runs on Python ints, numpy int64 or uint32 arrays and torch int64 tensors, and
all agree bit for bit. That is what makes "green" one definition for generation (torch,
a whole vocabulary at once) and detection (numpy, one value per token).

Values are unsigned 32-bit words. In int64 lanes, multiplication is split into 16-bit
halves so no intermediate exceeds 2**49: signed overflow never happens, on any backend
(vLLM's Philox PRF uses the same trick). numpy uint32 arrays multiply directly, since
unsigned arithmetic wraps mod 2**32 by definition: about 6x faster on a CPU, which is
what the CPU logits processor uses.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

WORD_MASK = 0xFFFFFFFF
WORD_RANGE = 1 << 32

# Multipliers of Chris Wellons' "lowbias32" integer hash (hash-prospector), a
# bijection on 32-bit words with a measured avalanche bias of about 0.17%.
_MULTIPLIER_1 = 0x7FEB352D
_MULTIPLIER_2 = 0x846CA68B

Words = TypeVar("Words")  # int, numpy int64/uint32 array or torch int64 tensor


def _multiply_low32(values: Words, multiplier: int) -> Words:
    """(values * multiplier) mod 2**32 without overflowing signed 64-bit lanes."""
    if getattr(values, "dtype", None) == np.uint32:
        return values * np.uint32(multiplier)
    low = (values & 0xFFFF) * multiplier
    high = ((values >> 16) * (multiplier & 0xFFFF)) << 16
    return (low + high) & WORD_MASK


def mix32(values: Words) -> Words:
    """A bijective 32-bit mixer: every input bit flips each output bit with p ~ 1/2."""
    values = values ^ (values >> 16)
    values = _multiply_low32(values, _MULTIPLIER_1)
    values = values ^ (values >> 15)
    values = _multiply_low32(values, _MULTIPLIER_2)
    return values ^ (values >> 16)


@dataclass(frozen=True, repr=False)
class PrfKey:
    """Three 32-bit words derived from a watermark secret; never printed."""

    context_initial: int
    context_final: int
    token: int

    @classmethod
    def from_secret(cls, secret: bytes, domain: bytes) -> PrfKey:
        # A separate domain per scheme keeps one secret from yielding related keys.
        digest = hashlib.blake2b(secret, digest_size=16, person=domain[:16]).digest()
        words = [int.from_bytes(digest[i : i + 4], "little") for i in range(0, 16, 4)]
        return cls(context_initial=words[0], context_final=words[1], token=words[2] ^ words[3])

    def __repr__(self) -> str:
        return "PrfKey(<redacted>)"


def context_seed(key: PrfKey, context: list[Words]) -> Words:
    """Seed for one position from its previous tokens, oldest first.

    ``context`` holds one entry per context token; each entry may be a scalar or an
    array of such tokens for many positions at once.
    """
    seed = key.context_initial
    for token in context:
        seed = mix32(seed ^ (token & WORD_MASK))
    return mix32(seed ^ key.context_final)


def token_hash(key: PrfKey, tokens: Words) -> Words:
    return mix32(tokens ^ key.token)


def uniform_word(seed: Words, hashed_tokens: Words) -> Words:
    """A uniform 32-bit word for each (context seed, candidate token) pair."""
    return mix32(seed ^ hashed_tokens)
