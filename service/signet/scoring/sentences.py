"""Sentence spans of a text, for per-sentence scores (SelfCheckGPT).

A sentence ends after a run of ``.``, ``!`` or ``?`` (with any closing quotes or brackets
right after it) that is followed by whitespace or the end of the text, after CJK full
stops (``。！？``, which need no space), and at a blank line (paragraphs, list blocks and
headings without final punctuation). Each span is trimmed of surrounding whitespace and
indexes the original text: ``text[span.start:span.end] == span.text``.

Limits, by design of a dependency-free regex: abbreviations and initials followed by a
space end a sentence ("e.g. this", "Dr. Smith", "J. R. R. Tolkien"); a single newline
inside a paragraph does not, so one-item-per-line lists without punctuation stay one
sentence; decimals ("3.14"), versions ("v1.2.3"), URLs and ellipses without a following
space ("wait...what") do not split. SelfCheckGPT uses spaCy's parser, which knows
abbreviations; scores over our spans are comparable but not identical to the paper's.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_SENTENCE_END = re.compile(r"""[.!?]+["'”’»)\]]*(?=\s|$)|[。！？]+[」』”’）]*""")
_BLANK_LINE = re.compile(r"\n[^\S\n]*\n")


@dataclass(frozen=True)
class SentenceSpan:
    start: int  # index of the sentence's first character in the text
    end: int  # one past its last character
    text: str  # text[start:end]


def split_sentences(text: str) -> list[SentenceSpan]:
    """The text's sentences in order; none for an empty or all-whitespace text."""
    if not isinstance(text, str):
        raise ValueError(f"text must be a string, got {type(text).__name__}")
    cuts = {match.end() for match in _SENTENCE_END.finditer(text)}
    cuts.update(match.start() for match in _BLANK_LINE.finditer(text))
    cuts.add(len(text))
    spans = []
    start = 0
    for cut in sorted(cuts):
        piece = text[start:cut]
        stripped = piece.strip()
        if stripped:
            first = start + (len(piece) - len(piece.lstrip()))
            spans.append(SentenceSpan(start=first, end=first + len(stripped), text=stripped))
        start = cut
    return spans
