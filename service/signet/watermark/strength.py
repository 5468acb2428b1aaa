"""How hard a key's secret is to guess: a conservative estimate of its entropy, in bits.

Anyone holding one watermarked text can test guesses of a key offline (run the detector
with the guess), so a key is only as strong as its secret is hard to guess. The estimate
sees one value, not how it was chosen, so it errs low: start-up warns below
``MIN_SECRET_BITS``, and a false warning costs less than a missed weak key.
"""

from __future__ import annotations

import math
import string
from collections import Counter

# 2**64 guesses is out of reach: at hashcat's published rate of about 2e10 SHA-256 digests
# a second on one current GPU, it takes 30 years; 2**40 takes a minute.
MIN_SECRET_BITS = 64

# The character classes a text secret draws from, with their sizes.
_CLASSES: tuple[tuple[frozenset[str], int], ...] = (
    (frozenset(string.ascii_lowercase), 26),
    (frozenset(string.ascii_uppercase), 26),
    (frozenset(string.digits), 10),
    (frozenset(string.punctuation + " "), 33),
)
_CLASSIFIED = frozenset().union(*(members for members, _ in _CLASSES))
# Any other character counts as one more class of this size: a guesser who knows the
# secret is non-ASCII still has to cover a script's worth of letters.
_OTHER_CLASS_SIZE = 64


def integer_bits(value: int) -> int:
    """An integer key's bit length, rounded up to whole bytes.

    Integer keys are drawn as a number of random bytes: a random 64-bit key is shorter
    than 64 bits half the time, and rounding keeps it from a false warning (it still
    warns one key in 256). A chosen number such as 42 (6 bits, so 8) stays far below.
    """
    return 8 * math.ceil(value.bit_length() / 8)


def text_bits(text: str) -> float:
    """A text secret's length times the smaller of two per-character entropies.

    The first is log2 of the size of the character classes it uses (lower case, upper
    case, digits, ASCII punctuation, other): the search space of a random string of
    those classes. The second is the entropy of its own character frequencies, which
    catches repetition ("0000000000000000" holds 0 bits, not 53). Dictionary words are
    not recognised: a sentence of common words is overrated.
    """
    if not text:
        return 0.0
    pool = sum(size for members, size in _CLASSES if any(character in members for character in text))
    if any(character not in _CLASSIFIED for character in text):
        pool += _OTHER_CLASS_SIZE
    counts = Counter(text).values()
    frequencies_entropy = -sum(count / len(text) * math.log2(count / len(text)) for count in counts)
    return len(text) * min(math.log2(pool), frequencies_entropy)
