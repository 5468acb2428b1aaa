"""Text normalisation before tokenizing: undo cheap attacks on a watermark.

An attacker who swaps Latin letters for look-alike Cyrillic or Greek ones, inserts
zero-width characters, or doubles spaces changes the token ids and so the evidence,
while a reader sees the same text (lm-watermarking's ``normalizers.py`` anticipates
the same attacks). Each step is optional per key: normalising text that was
generated without these characters changes nothing, but a key whose generator
emitted such characters on purpose must not fold them.

Every step keeps a map from each output character to the input character it came
from, so spans found in the normalised text are reported in the caller's text.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass
from typing import Literal

import numpy as np

NormalizationStep = Literal["nfc", "homoglyphs", "whitespace"]

# Look-alikes of Latin letters (Unicode confusables, the subset attackers use in
# practice: Cyrillic and Greek letters, dashes and quotes).
_HOMOGLYPHS = {
    # Cyrillic
    "а": "a", "в": "B", "е": "e", "к": "k", "м": "M", "н": "H", "о": "o", "р": "p", "с": "c",
    "т": "T", "у": "y", "х": "x", "ѕ": "s", "і": "i", "ј": "j", "ԁ": "d", "ԛ": "q", "ԝ": "w",
    "ɡ": "g", "һ": "h", "ӏ": "l", "А": "A", "В": "B", "Е": "E", "К": "K", "М": "M", "Н": "H",
    "О": "O", "Р": "P", "С": "C", "Т": "T", "Х": "X", "У": "Y", "Ѕ": "S", "І": "I", "Ј": "J",
    # Greek
    "α": "a", "ο": "o", "ρ": "p", "ν": "v", "τ": "t", "ι": "i", "κ": "k", "υ": "u",
    "Α": "A", "Β": "B", "Ε": "E", "Ζ": "Z", "Η": "H", "Ι": "I", "Κ": "K", "Μ": "M", "Ν": "N",
    "Ο": "O", "Ρ": "P", "Τ": "T", "Υ": "Y", "Χ": "X",
    # Punctuation look-alikes
    "‐": "-", "‑": "-", "‒": "-", "–": "-", "—": "-", "−": "-", "＇": "'", "‘": "'", "’": "'",
    "“": '"', "”": '"', "＂": '"',
}  # fmt: skip
_ZERO_WIDTH = {"\u200b", "\u200c", "\u200d", "\u2060", "\ufeff", "\u00ad"}
_SPACE_RUN = re.compile(r"[^\S\n]+")  # runs of whitespace other than newlines


@dataclass(frozen=True)
class NormalizedText:
    text: str
    source_offsets: np.ndarray  # int64 [len(text) + 1]: input offset of each character, plus the end

    @classmethod
    def identity(cls, text: str) -> NormalizedText:
        return cls(text, np.arange(len(text) + 1, dtype=np.int64))

    def source_span(self, start: int, end: int) -> tuple[int, int]:
        """The input characters a [start, end) span of the normalised text came from.

        The span runs up to where the next output character came from, so it covers
        what was folded into its last character (combining marks) or dropped after it.
        """
        return int(self.source_offsets[start]), int(self.source_offsets[max(end, start)])


def normalize(text: str, steps: list[NormalizationStep] | tuple[NormalizationStep, ...]) -> NormalizedText:
    result = NormalizedText.identity(text)
    for step in steps:
        result = _STEPS[step](result)
    return result


def _rebuild(pieces: list[tuple[str, int]], source: NormalizedText) -> NormalizedText:
    """Join (output piece, index in ``source.text``) pairs, chaining the offset maps."""
    text = "".join(piece for piece, _ in pieces)
    offsets = np.empty(len(text) + 1, dtype=np.int64)
    position = 0
    for piece, origin in pieces:
        offsets[position : position + len(piece)] = source.source_offsets[origin]
        position += len(piece)
    offsets[-1] = source.source_offsets[-1]
    return NormalizedText(text, offsets)


def _nfc(source: NormalizedText) -> NormalizedText:
    if unicodedata.is_normalized("NFC", source.text):
        return source
    # Compose each base character with the combining marks after it, so every output
    # character still points at the base character it started from.
    pieces: list[tuple[str, int]] = []
    start = 0
    text = source.text
    for index in range(1, len(text) + 1):
        if index == len(text) or unicodedata.combining(text[index]) == 0:
            composed = unicodedata.normalize("NFC", text[start:index])
            pieces.extend((character, start) for character in composed)
            start = index
    return _rebuild(pieces, source)


def _homoglyphs(source: NormalizedText) -> NormalizedText:
    pieces = [
        ("" if character in _ZERO_WIDTH else _HOMOGLYPHS.get(character, character), index)
        for index, character in enumerate(source.text)
    ]
    return _rebuild(pieces, source)


def _whitespace(source: NormalizedText) -> NormalizedText:
    """Collapse runs of spaces and tabs to one space; strip trailing spaces on lines."""
    pieces: list[tuple[str, int]] = []
    position = 0
    for match in _SPACE_RUN.finditer(source.text):
        pieces.extend(_characters(source.text, position, match.start()))
        at_line_end = match.end() == len(source.text) or source.text[match.end()] == "\n"
        if not at_line_end and match.start() != 0:
            pieces.append((" ", match.start()))
        position = match.end()
    pieces.extend(_characters(source.text, position, len(source.text)))
    return _rebuild(pieces, source)


def _characters(text: str, start: int, end: int) -> list[tuple[str, int]]:
    return [(text[index], index) for index in range(start, end)]


_STEPS = {"nfc": _nfc, "homoglyphs": _homoglyphs, "whitespace": _whitespace}
