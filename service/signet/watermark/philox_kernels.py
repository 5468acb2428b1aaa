"""The numba kernels behind ``philox.py``: vLLM's Philox4x32-10 PRF, compiled.

Imported only by ``philox._kernels()``, on first use, never at import time: vLLM's CPU
worker scans every loaded module's globals while it starts (``register_kernels``) and
crashes on llvmlite's FFI objects ("'_lib_fn_wrapper' object has no attribute 'get'").
The engine-core process imports our logits processor, and so the schemes, before that
scan; numba must not be loaded by then.

The kernels are untyped on purpose: numba infers uint64 words and int64 arrays from
the callers in ``philox.py`` and compiles one specialisation, cached on disk.
"""

import numpy as np
from numba import njit

from signet.watermark.philox_constants import (
    CONTEXT_DOMAIN,
    PHILOX_M0,
    PHILOX_M1,
    PHILOX_W0,
    PHILOX_W1,
    TOKEN_DOMAIN,
    UINT32_MASK,
)

_MASK = np.uint64(UINT32_MASK)
_SHIFT_32 = np.uint64(32)
_M0, _M1 = np.uint64(PHILOX_M0), np.uint64(PHILOX_M1)
_W0, _W1 = np.uint64(PHILOX_W0), np.uint64(PHILOX_W1)
_CONTEXT_DOMAIN, _TOKEN_DOMAIN = np.uint64(CONTEXT_DOMAIN), np.uint64(TOKEN_DOMAIN)


@njit(cache=True, inline="always")
def _philox4x32_10(c0, c1, c2, c3, k0, k1):
    """Ten Philox4x32 rounds (Salmon et al. 2011) on 32-bit words held in uint64."""
    for _ in range(10):
        product_0 = c0 * _M0  # exact: both factors are below 2**32
        product_1 = c2 * _M1
        c0, c1, c2, c3 = (
            ((product_1 >> _SHIFT_32) ^ c1 ^ k0) & _MASK,
            product_1 & _MASK,
            ((product_0 >> _SHIFT_32) ^ c3 ^ k1) & _MASK,
            product_0 & _MASK,
        )
        k0 = (k0 + _W0) & _MASK
        k1 = (k1 + _W1) & _MASK
    return c0, c1, c2, c3


@njit(cache=True, inline="always")
def _context_word(contexts, row, position, index):
    if position < contexts.shape[1]:
        return np.uint64(contexts[row, position]) & _MASK  # -1 becomes 0xFFFFFFFF, as in vLLM
    return _MASK - np.uint64(index)


@njit(cache=True, inline="always")
def _context_state(key_low, key_high, contexts, row):
    width = contexts.shape[1]
    s0, s1, s2, s3 = _CONTEXT_DOMAIN, np.uint64(width), np.uint64(0), np.uint64(0)
    for offset in range(0, width, 4):
        s0, s1, s2, s3 = _philox4x32_10(
            s0 ^ _context_word(contexts, row, offset, 0),
            s1 ^ _context_word(contexts, row, offset + 1, 1),
            s2 ^ _context_word(contexts, row, offset + 2, 2),
            s3 ^ _context_word(contexts, row, offset + 3, 3),
            (key_low ^ np.uint64(offset)) & _MASK,
            key_high,
        )
    return s0, s1, s2, s3


@njit(cache=True, inline="always")
def _to_uniform(word):
    return np.float32((np.float64(word >> np.uint64(8)) + 1.0) / (2**24 + 1))


@njit(cache=True)
def pair_uniforms(key_low, key_high, contexts, tokens, output):
    for row in range(len(tokens)):
        s0, s1, s2, s3 = _context_state(key_low, key_high, contexts, row)
        token = np.uint64(tokens[row]) & _MASK
        words = _philox4x32_10(token >> np.uint64(2), s0, s1, s2, (key_low ^ s3) & _MASK, key_high ^ _TOKEN_DOMAIN)
        output[row] = _to_uniform(words[token & np.uint64(3)])


@njit(cache=True)
def vocabulary_uniforms(key_low, key_high, contexts, output):
    vocab_size = output.shape[1]
    for row in range(contexts.shape[0]):
        s0, s1, s2, s3 = _context_state(key_low, key_high, contexts, row)
        token_key = (key_low ^ s3) & _MASK
        for group in range((vocab_size + 3) // 4):
            words = _philox4x32_10(np.uint64(group), s0, s1, s2, token_key, key_high ^ _TOKEN_DOMAIN)
            for index in range(min(4, vocab_size - 4 * group)):
                output[row, 4 * group + index] = _to_uniform(words[index])
