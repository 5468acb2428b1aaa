"""vLLM's Philox4x32-10 watermark PRF, in numpy, bit for bit.

vLLM's Gumbel watermark (``vllm.v1.watermarking.prfs.philox.PhiloxPRF``) maps a
(context, token id) pair to a uniform in (0, 1). Detection must reproduce it exactly,
but the API process has no vLLM or torch, so this module re-implements it:

* The context (the previous ``width`` token ids, -1 for "no token") is absorbed four
  ids at a time: each block is XORed into a 4-word state started at
  ``(CONTEXT_DOMAIN, width, 0, 0)`` and the state is permuted by one Philox call keyed
  with ``(key_low ^ block_offset, key_high)``. A short last block is padded with
  ``UINT32_MASK - index`` so that, e.g., widths 3 and 4 never collide.
* A token id then selects word ``id & 3`` of Philox((id >> 2, s0, s1, s2)) keyed with
  ``(key_low ^ s3, key_high ^ TOKEN_DOMAIN)``: one Philox call serves four consecutive
  ids, which ``vocabulary_uniforms`` exploits (vLLM's CPU path computes it four times).
* A word becomes ``((word >> 8) + 1) / (2**24 + 1)`` rounded to float32: never 0 or 1.

vLLM works in int64 torch lanes and so splits its 32x32-bit products into 16-bit
halves. Here words live in uint64 arrays, where a 32x32-bit product is exact, so
``mulhilo32`` is one multiplication.
"""

from __future__ import annotations

import numpy as np

UINT32_MASK = 0xFFFFFFFF
PHILOX_M0 = 0xD2511F53
PHILOX_M1 = 0xCD9E8D57
PHILOX_W0 = 0x9E3779B9
PHILOX_W1 = 0xBB67AE85
CONTEXT_DOMAIN = 0x574D4358
TOKEN_DOMAIN = 0x574D544B
CONTEXT_BLOCK = 4  # Philox4x32 absorbs four 32-bit context ids per call
MAX_KEY = 2**64 - 1

_MASK = np.uint64(UINT32_MASK)
_SHIFT_32 = np.uint64(32)

Words = tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]


def key_words(key: int) -> tuple[int, int]:
    """The 64-bit watermark key as Philox's two 32-bit key words (low, high), like vLLM."""
    if not 0 <= key <= MAX_KEY:
        raise ValueError("Philox keys must fit in 64 bits")
    return key & UINT32_MASK, key >> 32


def as_words(values: np.ndarray) -> np.ndarray:
    """Integers as uint64 lanes holding their low 32 bits: -1 becomes 0xFFFFFFFF, as in vLLM."""
    return np.asarray(values, dtype=np.int64).astype(np.uint64) & _MASK


def mulhilo32(multiplier: int, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """High and low 32-bit halves of ``multiplier * values``; exact because both are < 2**32."""
    product = values * np.uint64(multiplier)
    return product >> _SHIFT_32, product & _MASK


def philox4x32_10(counter: Words, key: tuple[np.ndarray | int, np.ndarray | int]) -> Words:
    """Ten Philox4x32 rounds (Salmon et al. 2011) on uint64 lanes holding 32-bit words.

    Arrays broadcast against each other, so a per-row state meets per-token counters
    without being copied out to the full shape first.
    """
    counter_0, counter_1, counter_2, counter_3 = counter
    key_0, key_1 = (np.asarray(word, dtype=np.uint64) for word in key)
    for round_index in range(10):
        high_0, low_0 = mulhilo32(PHILOX_M0, counter_0)
        high_1, low_1 = mulhilo32(PHILOX_M1, counter_2)
        counter_0, counter_1, counter_2, counter_3 = (
            high_1 ^ counter_1 ^ key_0,
            low_1,
            high_0 ^ counter_3 ^ key_1,
            low_0,
        )
        if round_index != 9:
            key_0 = (key_0 + np.uint64(PHILOX_W0)) & _MASK
            key_1 = (key_1 + np.uint64(PHILOX_W1)) & _MASK
    return counter_0, counter_1, counter_2, counter_3


def context_state(key: int, contexts: np.ndarray) -> Words:
    """The 4-word Philox state after absorbing each row of ``contexts`` [..., width]."""
    key_low, key_high = key_words(key)
    contexts = as_words(contexts)
    width = contexts.shape[-1]
    prefix_shape = contexts.shape[:-1]
    state = tuple(np.full(prefix_shape, word, dtype=np.uint64) for word in (CONTEXT_DOMAIN, width, 0, 0))
    for offset in range(0, width, CONTEXT_BLOCK):
        block = [
            contexts[..., offset + index] if offset + index < width else np.uint64(UINT32_MASK - index)
            for index in range(CONTEXT_BLOCK)
        ]
        counter = tuple(word ^ block_word for word, block_word in zip(state, block, strict=True))
        state = philox4x32_10(counter, (key_low ^ offset, key_high))
    return state


def token_group_words(key: int, state: Words, groups: np.ndarray) -> Words:
    """The four output words for token ids ``4 * group + 0..3`` given a context state.

    ``state`` words have shape [..., 1] (or broadcast against ``groups``).
    """
    key_low, key_high = key_words(key)
    counter = (as_words(groups), state[0], state[1], state[2])
    return philox4x32_10(counter, (np.uint64(key_low) ^ state[3], key_high ^ TOKEN_DOMAIN))


def uint32_to_uniform(words: np.ndarray) -> np.ndarray:
    """A 32-bit word as float32 in (0, 1): its top 24 bits, shifted off 0 and 1 (vLLM's formula)."""
    mantissas = (words & _MASK) >> np.uint64(8)
    return ((mantissas.astype(np.float64) + 1.0) / (2**24 + 1)).astype(np.float32)


def uniform(key: int, contexts: np.ndarray, token_ids: np.ndarray) -> np.ndarray:
    """``PhiloxPRF(key).uniform(contexts, token_ids)``: float32 of shape
    ``broadcast(contexts.shape[:-1] + (1,), token_ids.shape)``."""
    state = tuple(word[..., np.newaxis] for word in context_state(key, contexts))
    tokens = as_words(token_ids)
    output_shape = np.broadcast_shapes(state[0].shape, tokens.shape)
    words = token_group_words(key, state, tokens >> np.uint64(2))
    word_index = tokens & np.uint64(3)
    selected = words[0]
    for index in range(1, 4):
        selected = np.where(word_index == index, words[index], selected)
    return uint32_to_uniform(np.broadcast_to(selected, output_shape))


def vocabulary_uniforms(key: int, contexts: np.ndarray, vocabulary_size: int) -> np.ndarray:
    """``uniform(key, contexts, arange(vocabulary_size))`` with one Philox call per four ids.

    Returns float32 [..., vocabulary_size] for contexts [..., width].
    """
    state = tuple(word[..., np.newaxis] for word in context_state(key, contexts))
    num_groups = -(-vocabulary_size // 4)
    words = token_group_words(key, state, np.arange(num_groups))
    # Word j of group g belongs to token 4 g + j: interleave the four words in token order.
    interleaved = np.stack(np.broadcast_arrays(*words), axis=-1)
    interleaved = interleaved.reshape(*interleaved.shape[:-2], 4 * num_groups)
    return uint32_to_uniform(interleaved[..., :vocabulary_size])
