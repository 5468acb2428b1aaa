"""The keyed PRF: one definition on Python ints, numpy and torch, and uniform output."""

import numpy as np
import torch

from signet.watermark.prf import WORD_MASK, PrfKey, context_seed, mix32, token_hash, uniform_word

RANDOM = np.random.default_rng(20261130)


def _words(count: int) -> np.ndarray:
    edges = np.array([0, 1, 0xFFFF, 0x10000, WORD_MASK - 1, WORD_MASK], dtype=np.int64)
    return np.concatenate([edges, RANDOM.integers(0, 1 << 32, count, dtype=np.int64)])


def test_mix32_agrees_on_python_numpy_and_torch():
    words = _words(100_000)
    from_numpy = mix32(words)
    from_torch = mix32(torch.from_numpy(words)).numpy()
    from_python = np.array([mix32(int(word)) for word in words[:2_000]], dtype=np.int64)
    np.testing.assert_array_equal(from_numpy, from_torch)
    np.testing.assert_array_equal(from_numpy[:2_000], from_python)


def test_mix32_stays_in_32_bits_and_is_a_bijection():
    words = np.unique(_words(1_000_000))
    mixed = mix32(words)
    assert mixed.min() >= 0 and mixed.max() <= WORD_MASK
    assert len(np.unique(mixed)) == len(words)  # a bijection never collides


def test_uniform_word_is_uniform_over_contexts_and_tokens():
    # 400k (context, token) pairs: the fraction below gamma * 2**32 is Binomial(n, gamma) / n.
    # Bound of 5 standard deviations: false-failure probability about 6e-7.
    key = PrfKey.from_secret(b"uniformity-test-secret", b"test")
    contexts = RANDOM.integers(0, 49_152, 400_000)
    tokens = RANDOM.integers(0, 49_152, 400_000)
    words = uniform_word(context_seed(key, [contexts]), token_hash(key, tokens))
    for gamma in (0.1, 0.25, 0.5):
        fraction = np.mean(words < round(gamma * 2**32))
        assert abs(fraction - gamma) < 5 * np.sqrt(gamma * (1 - gamma) / len(words))


def test_keys_from_different_secrets_or_domains_differ():
    base = PrfKey.from_secret(b"secret-one-secret-one", b"kgw")
    assert PrfKey.from_secret(b"secret-one-secret-one", b"kgw") == base
    assert PrfKey.from_secret(b"secret-two-secret-two", b"kgw") != base
    assert PrfKey.from_secret(b"secret-one-secret-one", b"other") != base


def test_key_repr_hides_the_words():
    key = PrfKey.from_secret(b"repr-test-secret-value", b"kgw")
    assert str(key.context_initial) not in repr(key)
    assert "redacted" in repr(key)
