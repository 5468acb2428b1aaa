"""A text's fingerprint: its pieces, each small enough for the sentence-embedding model to
read whole.

all-MiniLM-L6-v2 reads at most 256 word pieces and ignores the rest, so a long text is
cut at sentence ends into pieces of at most ``PIECE_WORDS`` words (about 160 word
pieces), each embedded on its own. A generation of a few hundred tokens is one or two
pieces; a rewording of it is compared piece by piece, and its best piece decides.
"""

from __future__ import annotations

import re

# all-MiniLM-L6-v2's vectors: the registry's stores are sized by it before the model loads.
FINGERPRINT_DIMENSION = 384
PIECE_WORDS = 120
# No piece is shorter than this, wherever it falls: a short sentence is topped up with the
# words that follow it, and a short last piece is joined to the one before (so a piece has at
# most 159 words, about 210 word pieces, still under the model's 256). A short sentence on
# its own ("Let me know if you have any other questions!", "Here is the code:") is
# boilerplate, outside the null's domain (fitted on paragraphs of 100-600 characters): as a
# piece of its own it matched another text's closing line at similarity 0.87, a false match.
MIN_PIECE_WORDS = 40
# A text is fingerprinted by its first MAX_PIECES pieces (about 3,800 words): the cost of
# recording a generation is bounded by MAX_PIECES forward passes of the embedding model.
MAX_PIECES = 32

_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|\n\s*\n")


def pieces(text: str, piece_words: int = PIECE_WORDS, max_pieces: int = MAX_PIECES) -> list[str]:
    """``text`` in pieces of whole sentences, each at most ``piece_words`` words; at most
    ``max_pieces`` of them, from the start. A sentence that does not fit ends the piece
    before it, unless that piece is still short (under a third of ``piece_words``, at most
    MIN_PIECE_WORDS): then it is cut, and its first words fill the piece. A short last piece
    is joined to the one before. Linear in the text's length."""
    shortest = max(1, min(MIN_PIECE_WORDS, piece_words // 3))  # never an empty piece
    found: list[list[str]] = []
    current: list[str] = []
    for sentence in _SENTENCE_END.split(text):
        words = sentence.split()
        start = 0
        while start < len(words) and len(found) <= max_pieces:
            room = piece_words - len(current)
            if room == 0 or (len(current) >= shortest and len(words) - start > room):
                found.append(current)
                current = []
                continue
            current.extend(words[start : start + room])
            start += room
        if len(found) > max_pieces:
            break
    if current:
        found.append(current)
    if len(found) > 1 and len(found[-1]) < shortest:
        found[-2:] = [found[-2] + found[-1]]
    return [" ".join(words) for words in found[:max_pieces]]
