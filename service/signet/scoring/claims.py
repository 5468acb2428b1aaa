"""Claims of a sentence that a source does not support: the reasons reference mode gives.

A summary or an answer goes wrong against its source in a few recognisable ways: it names
someone or something the source does not, gives a number, date or quantity the source
does not give, adds or drops a negation, or runs on for several words with nothing from
the source. Each rule below finds one of these and says where (character offsets into the
sentence) and why.

Rules, not a parser. spaCy's English models are not on PyPI (they are release assets of
its GitHub repository, which these machines cannot reach), and the service holds no other
NER model; so entities are capitalised runs and acronyms, and numbers come from a regex
and a table of number words. What each rule sees:

- ``entity``: a run of capitalised words not at the start of the sentence, or a word with
  a capital after its first letter or a digit among letters (GMP, IPv6, McCarthy). It is
  supported when every one of its words occurs in the source, in any case.
- ``number``, ``date``, ``quantity``: a numeral ("1,024", "3.5"), a number word ("twelve",
  "forty-two"), a year (1000–2099) or a month or weekday name (dates), a number followed by
  a unit or "%" (quantities). Numbers compare by value: "12" is supported by "twelve".
- ``negation``: "not", "never", "n't", "no", "without", ... in the sentence but not in the
  source sentence it restates (the one sharing most content words, with at least
  ``MIN_ALIGNED_WORDS`` of them), or the other way round: the source sentence negates and
  the sentence does not.
- ``ngram``: at least ``MIN_RUN_BIGRAMS`` word pairs in a row that the source never uses,
  most of whose content words (at least three) it never uses either: a clause that the
  source does not contain in any wording.

Where a source sentence that the sentence restates has a number of the same kind, or a
name, that the sentence lacks in place of an unsupported one, the reason quotes it ("the
source says 1976"): a contradiction, not only an absence. The limits are the rules' own:
a lower-case name ("the python interpreter") is not an entity, a sentence's first word is
only checked when it is an acronym, and a rephrased negation ("fails to") is not one.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property, lru_cache
from typing import Literal

from signet.scoring.lexical import ngram_novelty, words
from signet.scoring.sentences import split_sentences

ClaimKind = Literal["entity", "number", "date", "quantity", "negation", "ngram"]
CLAIM_KINDS: tuple[ClaimKind, ...] = ("entity", "number", "date", "quantity", "negation", "ngram")

# A sentence restates a source sentence when they share at least this many content words:
# with fewer, a negation compared across them is noise.
MIN_ALIGNED_WORDS = 3
# A run of novel word pairs is a claim only when it is long and mostly new words: a faithful
# paraphrase also makes novel pairs ("relies on GMP for every computation"), in runs of its
# synonyms between the source's own words.
MIN_RUN_BIGRAMS = 6
MIN_RUN_ABSENT_WORDS = 3
MIN_RUN_ABSENT_SHARE = 0.6

# A letter may carry combining marks (a decomposed "ñ" is "n" and U+0303): they stay in its word.
_LETTERS = r"[^\W\d_](?:[^\W\d_]|[\u0300-\u036f])*"
_TOKEN = re.compile(rf"\d+(?:[.,:]\d+)*|{_LETTERS}(?:['’]{_LETTERS})*(?:-{_LETTERS})*|%", re.UNICODE)
# Enough for what a pipeline reads, and a bound on the response: a text of 100,000 numbers
# would otherwise list 100,000 claims.
MAX_CLAIMS_PER_SENTENCE = 16
_NEGATIONS = frozenset("not no never none nothing neither nor nobody nowhere cannot without".split())
_FUNCTION_WORDS = frozenset(
    """a an the and or but if then than that this these those there here of in on at to for from by with
    as is are was were be been being it its it's they them their he she his her we our you your i me my
    do does did done has have had can could will would shall should may might must so such not no also
    which who whom whose what when where why how all any each every some more most other into onto over
    under about after before between through during until while up down out off only just very one""".split()
)
_NUMBER_WORDS = {
    word: value
    for value, word in enumerate(
        "zero one two three four five six seven eight nine ten eleven twelve thirteen fourteen fifteen "
        "sixteen seventeen eighteen nineteen twenty".split()
    )
}
_NUMBER_WORDS.update({"thirty": 30, "forty": 40, "fifty": 50, "sixty": 60, "seventy": 70, "eighty": 80})
_NUMBER_WORDS.update({"ninety": 90, "hundred": 100, "thousand": 1000, "million": 10**6, "billion": 10**9})
_NUMBER_WORDS.update({"dozen": 12, "twice": 2, "half": 0.5, "double": 2, "triple": 3})
_NUMBER_WORDS.update(
    {"first": 1, "second": 2, "third": 3, "fourth": 4, "fifth": 5, "sixth": 6, "seventh": 7, "eighth": 8}
)
# "one" is a pronoun as often as a number ("the one that", "one can"), and "second" a unit
# or an ordinal: as words they are left out; as numerals they count.
_AMBIGUOUS_NUMBER_WORDS = frozenset({"one", "second", "half", "double"})
_DATE_WORDS = frozenset(
    """january february march april may june july august september october november december
    monday tuesday wednesday thursday friday saturday sunday""".split()
)
_UNITS = frozenset(
    """% percent per cent bit bits byte bytes kb mb gb tb kib mib gib kilobytes megabytes gigabytes ms
    millisecond milliseconds second seconds minute minutes hour hours day days week weeks month months
    year years km kilometres kilometers m metre metres meter meters cm mm mile miles kg g gram grams
    pound pounds times characters lines columns rows pages people users""".split()
)


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    start: int  # offset of its first character in the sentence
    end: int  # one past its last character
    text: str
    reason: str


@dataclass(frozen=True)
class _Token:
    start: int
    end: int
    text: str

    @cached_property
    def lower(self) -> str:
        """Lower-case and composed (NFC): a decomposed "José" is the source's "José"."""
        return unicodedata.normalize("NFC", self.text).lower()


@dataclass(frozen=True)
class _Sentence:
    text: str
    tokens: list[_Token]
    content: frozenset[str]  # stems of content words
    negations: list[_Token]
    numbers: list[tuple[str, float | str, _Token]]  # (kind, value, token)
    entities: list[tuple[str, list[_Token]]]  # (text, its tokens)


@dataclass(frozen=True)
class SourceFacts:
    """What the rules look up in a source, gathered once for all of a text's sentences."""

    words: frozenset[str]  # every word and its stem, lower-case
    values: frozenset[float | str]  # every number's value; month and weekday names
    bigrams: frozenset[tuple[str, str]]
    sentences: list[_Sentence]

    def lacks(self, token: _Token) -> bool:
        """Whether the source never uses this word, in any case or with another ending."""
        return token.lower not in self.words and _stem(token.text) not in self.words


def _tokens(text: str) -> list[_Token]:
    return [_Token(match.start(), match.end(), match.group()) for match in _TOKEN.finditer(text)]


def content_word_spans(text: str) -> list[tuple[int, int, str]]:
    """The words of ``text`` the rules weigh, function words left out, as (start, end, stem):
    numbers ("1,280"), words with their apostrophes and hyphens ("isn't", "forty-two"), "%"."""
    return [(token.start, token.end, _stem(token.text)) for token in _tokens(text) if _is_content(token)]


# A text repeats its words: 266,000 stems of a 100,000-character source took 1.1 s uncached.
# Bounded: the words come from callers.
@lru_cache(maxsize=65536)
def _stem(word: str) -> str:
    """A light suffix strip, so "libraries" meets "library" and "compiled" "compile"."""
    word = unicodedata.normalize("NFC", word).lower().replace("’", "'")
    if word.endswith("'s"):
        word = word[:-2]
    for suffix, replacement in (("ies", "y"), ("ing", ""), ("ed", ""), ("es", ""), ("s", ""), ("ly", "")):
        if word.endswith(suffix) and len(word) - len(suffix) >= 3:
            return word[: -len(suffix)] + replacement
    return word


def _is_content(token: _Token) -> bool:
    return token.lower not in _FUNCTION_WORDS and not _is_negation(token)


def _is_negation(token: _Token) -> bool:
    lower = token.lower.replace("’", "'")
    return lower in _NEGATIONS or lower.endswith("n't")


def _number_value(token: _Token) -> float | str | None:
    lower = token.lower
    if lower[0].isdigit():
        plain = lower.replace(",", "") if re.fullmatch(r"\d{1,3}(,\d{3})+", lower) else lower
        try:
            return float(plain)
        except ValueError:
            return plain  # a version or a time: 3.0.1, 10:30
    if lower in _NUMBER_WORDS and lower not in _AMBIGUOUS_NUMBER_WORDS:
        return float(_NUMBER_WORDS[lower])
    parts = lower.split("-")
    if len(parts) == 2 and all(part in _NUMBER_WORDS for part in parts):
        return float(_NUMBER_WORDS[parts[0]] + _NUMBER_WORDS[parts[1]])  # forty-two
    return None


def _numbers(tokens: list[_Token]) -> list[tuple[str, float | str, _Token]]:
    found = []
    for index, token in enumerate(tokens):
        if token.lower in _DATE_WORDS and (token.text[0].isupper()):
            found.append(("date", token.lower, token))
            continue
        value = _number_value(token)
        if value is None:
            continue
        following = tokens[index + 1].lower if index + 1 < len(tokens) else ""
        if isinstance(value, float) and value.is_integer() and 1000 <= value <= 2099 and token.text.isdigit():
            kind = "date"
        elif following in _UNITS:
            kind = "quantity"
        else:
            kind = "number"
        found.append((kind, value, token))
    return found


def _is_name_like(token: _Token, first: bool) -> bool:
    text = token.text
    if not text[0].isalpha() or text.lower() in _DATE_WORDS:
        return False
    inner_capital = any(char.isupper() for char in text[1:])
    has_digit = any(char.isdigit() for char in text)
    if inner_capital or (has_digit and text[0].isalpha()):
        return True  # GMP, IPv6, McCarthy: names wherever they stand
    return text[0].isupper() and not first and text.lower() != "i"


def _joins(previous: _Token, gap: str) -> bool:
    """Whether a name runs on across this gap: a space, or an initial's full stop (Martin E. Hellman)."""
    return gap == " " or (gap == ". " and len(previous.text) == 1)


def _entities(tokens: list[_Token], text: str) -> list[tuple[str, list[_Token]]]:
    """Runs of name-like tokens, separated only by spaces; the first token of the sentence
    (and of a clause after a colon) counts only as an acronym."""
    entities, run = [], []
    for index, token in enumerate(tokens):
        first = index == 0 or text[tokens[index - 1].end : token.start].strip() in (":", '"', "“", "(")
        if _is_name_like(token, first) and (not run or _joins(run[-1], text[run[-1].end : token.start])):
            run.append(token)
            continue
        if run:
            entities.append(run)
        run = [token] if _is_name_like(token, first) else []
    if run:
        entities.append(run)
    return [(text[run[0].start : run[-1].end], run) for run in entities]


def _sentence(text: str) -> _Sentence:
    tokens = _tokens(text)
    content = frozenset(_stem(token.text) for token in tokens if _is_content(token))
    return _Sentence(
        text=text,
        tokens=tokens,
        content=content,
        negations=[token for token in tokens if _is_negation(token)],
        numbers=_numbers(tokens),
        entities=_entities(tokens, text),
    )


_ENDS_WITH_INITIAL = re.compile(r"(?:^|\s)[A-Z]\.$")


def _rejoin_initials(sentences: list[str]) -> list[str]:
    """Join pieces that a sentence splitter cut after an initial ("Martin E." / "Hellman ...").
    Linear: each piece's own end is tested, and a run of pieces is joined once."""
    runs: list[list[str]] = []
    for text in sentences:
        if runs and _ENDS_WITH_INITIAL.search(runs[-1][-1][-3:]):
            runs[-1].append(text)
        else:
            runs.append([text])
    return [" ".join(run) for run in runs]


def source_facts(source_sentences: list[str]) -> SourceFacts:
    """The source's words, values, word pairs and sentences (as a sentence splitter gave them)."""
    sentences = [_sentence(text) for text in _rejoin_initials(source_sentences)]
    words, bigrams = set(), set()
    for sentence in sentences:
        lowered = [token.lower for token in sentence.tokens]
        words.update(lowered)
        words.update(_stem(word) for word in lowered)
        bigrams.update(zip(lowered, lowered[1:], strict=False))
    values = {value for sentence in sentences for _, value, _ in sentence.numbers}
    return SourceFacts(frozenset(words), frozenset(values), frozenset(bigrams), sentences)


class _Alignment:
    """The source sentences a sentence restates (sharing at least MIN_ALIGNED_WORDS content
    words), most shared words first: found in one pass over the source, then searched by kind."""

    def __init__(self, sentence: _Sentence, facts: SourceFacts) -> None:
        shared = [(len(sentence.content & candidate.content), index) for index, candidate in enumerate(facts.sentences)]
        ranked = sorted((-count, index) for count, index in shared if count >= MIN_ALIGNED_WORDS)
        self.sentences = [facts.sentences[index] for _, index in ranked]

    def best(self) -> _Sentence | None:
        return self.sentences[0] if self.sentences else None

    def first_with(self, wanted: Callable[[_Sentence], list[str]]) -> list[str]:
        """``wanted`` of the most similar restated sentence where it is not empty."""
        for candidate in self.sentences:
            if found := wanted(candidate):
                return found
        return []


def _excerpt(text: str, limit: int = 80) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


def _number_claims(sentence: _Sentence, facts: SourceFacts, alignment: _Alignment) -> list[Claim]:
    """Numbers the source lacks; the reason quotes the restated sentence's own number of the
    kind that the sentence lacks, the first for the first unsupported one, and so on."""
    claims = []
    stated = {value for _, value, _ in sentence.numbers}
    alternatives: dict[str, list[str]] = {}
    for kind, value, token in sentence.numbers:
        if value in facts.values:
            continue
        if kind not in alternatives:
            alternatives[kind] = alignment.first_with(
                lambda candidate, kind=kind: [t.text for k, v, t in candidate.numbers if k == kind and v not in stated]
            )
        instead = alternatives[kind]
        if instead:
            reason = f"the source says {_excerpt(instead.pop(0), 40)} where it states this"
        else:
            reason = f"the {kind} {_excerpt(token.text, 40)} does not occur in the source"
        claims.append(Claim(kind, token.start, token.end, token.text, reason))
    return claims


def _entity_claims(sentence: _Sentence, facts: SourceFacts, alignment: _Alignment) -> list[Claim]:
    """Names with a word the source lacks; the reason pairs them in order with the restated
    sentence's names of which the sentence uses no word."""
    claims = []
    used = {_stem(token.text) for token in sentence.tokens}
    instead = alignment.first_with(
        lambda candidate: [
            name for name, tokens in candidate.entities if not any(_stem(t.text) in used for t in tokens)
        ]
    )
    for text, tokens in sentence.entities:
        missing = [t.text for t in tokens if facts.lacks(t)]
        if not missing:
            continue
        if instead:
            reason = f"the source names {_excerpt(instead.pop(0), 40)} where it states this"
        else:
            reason = f"{_excerpt(', '.join(missing), 60)} does not occur in the source"
        claims.append(Claim("entity", tokens[0].start, tokens[-1].end, text, reason))
    return claims


def _negation_claims(sentence: _Sentence, restated: _Sentence | None) -> list[Claim]:
    if restated is None or bool(sentence.negations) == bool(restated.negations):
        return []
    if sentence.negations:
        token = sentence.negations[0]
        reason = f"the source states it without a negation: “{_excerpt(restated.text)}”"
        return [Claim("negation", token.start, token.end, token.text, reason)]
    # The source negates: point at the sentence's word that the source's negation governs.
    negation = restated.negations[0]
    after = [t for t in restated.tokens if t.start > negation.start and t.lower not in _FUNCTION_WORDS]
    target = next((t for t in sentence.tokens if after and _stem(t.text) == _stem(after[0].text)), None)
    start, end = (target.start, target.end) if target else (0, len(sentence.text))
    reason = f"the source negates this: “{_excerpt(restated.text)}”"
    return [Claim("negation", start, end, sentence.text[start:end], reason)]


def _ngram_claims(sentence: _Sentence, facts: SourceFacts) -> list[Claim]:
    """Maximal runs of word pairs the source never uses, with two content words it lacks."""
    tokens = sentence.tokens
    claims, run_start = [], None
    for index in range(len(tokens)):
        novel = index + 1 < len(tokens) and (tokens[index].lower, tokens[index + 1].lower) not in facts.bigrams
        if novel and run_start is None:
            run_start = index
        if not novel and run_start is not None:
            claims.extend(_run_claim(sentence, facts, run_start, index))
            run_start = None
    return claims


def _run_claim(sentence: _Sentence, facts: SourceFacts, first: int, last: int) -> list[Claim]:
    """The run of tokens first..last (inclusive): last - first word pairs, all novel."""
    if last - first < MIN_RUN_BIGRAMS:
        return []
    run = sentence.tokens[first : last + 1]
    absent = [t.text for t in run if t.lower not in _FUNCTION_WORDS and facts.lacks(t)]
    content = [t for t in run if t.lower not in _FUNCTION_WORDS]
    if len(absent) < MIN_RUN_ABSENT_WORDS or len(absent) < MIN_RUN_ABSENT_SHARE * len(content):
        return []
    text = sentence.text[run[0].start : run[-1].end]
    reason = f"{len(run)} words the source never puts together, with {', '.join(absent[:3])} absent from it"
    return [Claim("ngram", run[0].start, run[-1].end, text, reason)]


def unsupported_claims(sentence_text: str, facts: SourceFacts) -> list[Claim]:
    """The claims of one sentence that the source does not support, in order of position, at
    most MAX_CLAIMS_PER_SENTENCE. One pass over the source's sentences (``_Alignment``)."""
    return _claims(_sentence(sentence_text), facts)


def _claims(sentence: _Sentence, facts: SourceFacts) -> list[Claim]:
    alignment = _Alignment(sentence, facts)
    claims = [
        *_entity_claims(sentence, facts, alignment),
        *_number_claims(sentence, facts, alignment),
        *_negation_claims(sentence, alignment.best()),
        *_ngram_claims(sentence, facts),
    ]
    return sorted(claims, key=lambda claim: (claim.start, claim.end))[:MAX_CLAIMS_PER_SENTENCE]


def unsupported_word_share(sentence_text: str, facts: SourceFacts) -> float:
    """Share of the sentence's content words (stems) that the source never uses, in [0, 1]."""
    return _word_share(_sentence(sentence_text), facts)


def _word_share(sentence: _Sentence, facts: SourceFacts) -> float:
    content = [token for token in sentence.tokens if _is_content(token)]
    if not content:
        return 0.0
    return sum(facts.lacks(token) for token in content) / len(content)


@dataclass(frozen=True)
class ReferenceCheck:
    """A text's sentences checked against a source: what the reasons and the risk read."""

    claims: list[list[Claim]]  # per sentence, offsets into the sentence
    novelty: list[float]  # per sentence: share of its word pairs the source never uses
    unsupported_words: list[float]  # per sentence: unsupported_word_share


def check_against_source(sentences: list[str], source: str) -> ReferenceCheck:
    """Every sentence's claims, word-pair novelty and unsupported content words."""
    source_sentences = [span.text for span in split_sentences(source)] or [source]
    facts = source_facts(source_sentences)
    evidence = [words(text) for text in source_sentences]
    tokens = [words(text) for text in sentences]
    scored = [index for index, sentence_tokens in enumerate(tokens) if sentence_tokens]
    novelty = [0.0] * len(sentences)  # a sentence of punctuation alone has no word pair to be new
    if scored:
        for index, value in zip(scored, ngram_novelty([tokens[i] for i in scored], evidence, n=2), strict=True):
            novelty[index] = float(value)
    parsed = [_sentence(text) for text in sentences]  # tokenized once for the claims and the word share
    return ReferenceCheck(
        claims=[_claims(sentence, facts) for sentence in parsed],
        novelty=novelty,
        unsupported_words=[_word_share(sentence, facts) for sentence in parsed],
    )
