"""Labelled sets for reference-mode consistency: is a text supported by its source? (issue 21)

Writes two JSON Lines files to tests/data/scoring/, from the human passages of
tests/data/corpus/human.jsonl (Debian documentation) and nothing else: no network, no model.

- ``reference_answers.jsonl``: a knowledge window (2-4 sentences of a passage), a question and
  a short answer, faithful or hallucinated, like HaluEval's QA items;
- ``reference_summaries.jsonl``: a passage and an abstractive summary of 2-3 of its sentences,
  faithful or with one error, like HaluEval's summaries.

Both labels of a passage are reworded the same way (bench/rewording.py's synonyms and phrase
swaps, with names, numbers, code and terms of art kept, and fronted conditions moved to the
end), so a faithful text has words and word pairs the source lacks and rewording alone does
not give the label away. The errors reuse the
rules of tests/data/scoring/build_sets.py where they fit (number, negation, same-passage entity)
and add swaps and spans from other passages. tests/data/scoring/SOURCES.md describes the
files and their limits.

    PYTHONPATH=. .venv/bin/python -m bench.reference_sets            # writes both files, prints counts
    PYTHONPATH=. .venv/bin/python -m bench.reference_sets --show 3   # and 3 examples of each kind

Needs Debian's mythes-en-us thesaurus (``apt-get install -y mythes-en-us``). Deterministic:
each item draws from its own ``random.Random`` seeded with the seed, the file and the passage
id, passages are ordered by a SHA-1 and the output is sorted, so two runs write the same bytes.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench.rewording import (
    PHRASES,
    STOPWORDS,
    TOKEN,
    Thesaurus,
    fix_articles,
    join_sentences,
    match_case,
    synonym_forms,
)
from tests.data.scoring import build_sets as rules

SEED = 20250321
HERE = rules.HERE  # tests/data/scoring
ANSWERS_PATH = HERE / "reference_answers.jsonl"
SUMMARIES_PATH = HERE / "reference_summaries.jsonl"
ITEMS_PER_FILE = 300  # half faithful, half hallucinated: one of each per passage
FIT_SHARE = 60  # percent of passages whose hash puts them in "fit"; the rest are "test"

# The share of content words that get a synonym. Answers are short spans a reader checks against
# one sentence: a moderate rate keeps them recognisable. Summaries paraphrase more, as people do.
ANSWER_RATE = 0.6
SUMMARY_RATE = 0.7

# A summary keeps at most this much of its source (passages: 600-1200 characters, median about
# 1080): it must leave things out, as a summary does.
MAX_SUMMARY_CHARS = 420

ANSWER_KINDS = ("entity_swap", "number", "negation", "extrinsic")
SUMMARY_KINDS = ("entity_swap", "number", "negation", "extrinsic_sentence", "intrinsic_swap")

# ---------------------------------------------------------------------------------------------
# Rewording that keeps the facts
# ---------------------------------------------------------------------------------------------

# Words whose first thesaurus meaning is another sense, for which a swap reads as a different
# claim or as nonsense: terms of art ("string": "twine", "thread": "yarn", "kernel": "meat",
# "server": "waiter", "property": "place", "decode": "decrypt"), units and quantities ("days":
# "years", "credentials": "credential", "higher": "high") and words of another part of speech
# ("inside": "wrong", "except": "demur", "outside": "right", "raised": "up", "giving": "big").
# Found by reading the tally of the swaps made over every corpus sentence at rate 1.0 (its 400 most
# frequent) and of those in the written sets (all of them). They stay as they are; inflections
# follow the base (strings, threads).
KEEP = frozenset(
    """
    absolute abstract access accessible according actual address adjust affected afterwards alert alike
    anonymous appear applied applies apply approach arbitrary argument array arrow assigning attached attribute
    auto automatic automatically back backward backwards badness base basic become becomes behind better binary
    binding bit blank block branch break bridge buffer build bundle byte cache calculate calculated call
    callable called caller calling care case category certain chain change character characteristics check child
    choice choose circumstances class cleanup cleared client close closed cluster code column come command
    commit common compare compilation compile complete completely components compressed compression concept
    condition configuration configured connected consider consume content contents continue controlled
    conversion coordinates copy correspond corresponding course covered crack credentials current cursor
    customized cycle daemon damaged dash day days deal decode default define defined delay depressed descend
    describe described descriptor destination destroyed details device diagnoses dictionary direct directory
    disk display documented domain dots double driver dumb dummy easily easy effect efficient element empty
    enclosed encode encoding entropy entry equal equals equivalent error evaluate event exact except exception
    executable execute executed execution exist exit expected expression extended extensive extra fail false
    fast field file filled final fit fix fixes flag flavour float focus following font form formal format
    framework free full fully function functional future general giving global going group halt handle handler
    happen hard hash header heap helper high higher host hour hours humans identified identify ignore image
    implementation implemented implied imported improved inclusive indeed independent index indicate inevitably
    inherited inside installation instance instead integer intended intention interest interface interpretation
    interpreted interpreter introduced invalid invoke invoked involved isolated italic item jiffy job keep
    keeping kernel key kill label leading level library likely limit line link list literal load locale located
    lock log logarithm logical long longer look loop macro main maintenance major make makes management
    manipulation map mark match matching mean meaning means memory menu message method mind minus minute minutes
    mode modified module month months mount multiplication named near negative network news none normal note
    nothing null number object occur offset open operating option ordinary original otherwise output outside
    package packet page parent partially partition partly pass passed password patch path pattern peer pending
    percent percentage physical pipe place plain please plus pointer port positional practical practice
    preceding precise prepared prepares present preserved previous primary print private privileged process
    program project promoted prompt property provided public pull purpose push question queue quit quits raised
    range read ready real realized receive received reconstruct record refer reference refinement register
    registry regular relative release remove repeats reported repository request require resolution resolve
    respective respectively result return right root routine row run running saved scheduled score screen script
    search second seconds section select selection send separate server service session set setting shared shell
    short sign signal simplified simply size slash slow socket software sort source space special specific split
    stack standard start starting statement status step stop stream string structure subsequent substitution
    successful supported swap switch symbolic system table tabs tag take takes target task terminal terminated
    test thread trace trailing translation treated tree trivial true trying type unchanged uncommitted
    understand understood unique unlike unused upgrade user valid value variable variant version virtual wait
    waiting watch week weeks window working write year years
    """.split()
)

# Better synonyms for frequent words whose thesaurus entry misleads or yields a non-word by rule
# ("specified": "nominative", "created": "maked", "added": "ADHDed", "stored": "shoped"), or that
# have one good synonym among bad ones ("available": "accessible", not "open" or "easy"). Exact
# forms: an entry here wins over the thesaurus and is not inflected again.
DOMAIN_SYNONYMS = {
    "specified": ("given", "stated"),
    "specify": ("state", "give"),
    "specifies": ("states", "gives"),
    "create": ("make", "generate"),
    "creates": ("makes", "generates"),
    "created": ("made", "generated"),
    "creating": ("making", "generating"),
    "added": ("appended", "included"),
    "stored": ("kept", "saved"),
    "allow": ("permit", "let"),
    "allows": ("permits", "lets"),
    "allowed": ("permitted",),
    "performed": ("done", "carried out"),
    "removed": ("deleted", "dropped"),
    "contains": ("holds", "includes"),
    "contain": ("hold", "include"),
    "containing": ("holding", "including"),
    "provides": ("supplies", "offers"),
    "provide": ("supply", "offer"),
    "multiple": ("several",),
    "different": ("distinct",),
    "single": ("lone", "sole"),
    "useful": ("helpful", "handy"),
    "documentation": ("manual", "docs"),
    "explicitly": ("expressly",),
    "exactly": ("precisely",),
    "typically": ("usually", "commonly"),
    "listed": ("enumerated",),
    "occurs": ("happens",),
    "separated": ("split", "divided"),
    "immediately": ("directly",),
    "represent": ("stand for",),
    "represents": ("stands for",),
    "improve": ("enhance",),
    "data": ("information",),
    "information": ("details", "info"),
    "available": ("accessible",),
    "possible": ("feasible",),
    "results": ("outcomes",),
    "ensure": ("guarantee",),
    "previous": ("former", "prior"),
    # frequent words the thesaurus offers nothing usable for
    "works": ("functions", "operates"),
    "includes": ("contains", "comprises"),  # not "include": "you must include the version"
    "example": (),  # "the example program" is no "instance program"; "for example" is still swapped
    "part": ("portion",),  # the thesaurus's "component" misreads "part of a request"
    "parts": ("portions",),
    "generate": ("produce", "create"),
    "generated": ("produced", "created"),
    "produce": ("generate", "create"),
    "avoid": ("prevent",),
    "prevent": ("stop",),
    "prevents": ("stops",),
    "modify": ("change", "alter"),
    "delete": ("remove", "erase"),
    "deleted": ("removed", "erased"),
    "designed": ("meant", "intended"),
    "simple": ("plain", "basic"),
    "depends": ("relies",),
    "consists": ("is made up",),
    "supplied": ("provided", "given"),
    "appended": ("added",),
    "adding": ("appending",),
    "give": ("provide", "supply"),
    "enabled": ("activated", "turned on"),  # not "enable" or "disable": systemctl's command names
    "disabled": ("deactivated", "turned off"),
    "similar": ("comparable",),  # not "corresponding": "is corresponding to a pipe"
    "copied": ("duplicated",),
    "preferred": ("favoured",),
    "shown": ("displayed",),
    "guaranteed": ("assured",),
    "faster": ("quicker",),
    "various": ("diverse",),
    "gets": ("obtains", "receives"),
    "get": ("obtain",),
    "application": ("program",),
    "applications": ("programs",),
}

# A token whose core holds one of these is code, a path, a number or markup: kept as it is.
_CODE_CHARACTERS = re.compile(r"[\d_./:$<>=@#\\{}\[\]()*%&+|~^`]|^-")
_QUOTED = re.compile(
    r"\u2018[^\u2019]*\u2019|\u201c[^\u201d]*\u201d|(?<![\w'])'[^'\n]+'(?!\w)|(?<!\w)\"[^\"\n]+\"|`[^`\n]+`"
)
_FRONTED = re.compile(
    r"^(If|When|Whenever|Unless|Once|After|Before|While|Until|Although|Because|Since|In|For|On|With|By|At|From|Under"
    r"|During) ([^,;:]+), ([^,;:]+)\.$"
)
_MARKERS = set("example instance addition particular contrast short general fact practice this that such other".split())
_NEGATION_WORDS = re.compile(r"\b(?:not|no|never|nor|neither|none|nothing|cannot|\w+n['\u2019]t)\b", re.IGNORECASE)
_LEADING, _TRAILING = "([\"'\u2018\u201c", ".,;:!?)]\"'\u2019\u201d"


@dataclass(frozen=True)
class Rewording:
    """The thesaurus with KEEP removed and DOMAIN_SYNONYMS laid over it; the corpus's words; and a
    tally of the swaps made, for review."""

    thesaurus: Thesaurus
    corpus_words: frozenset[str]
    swaps: Counter[tuple[str, str]]

    @classmethod
    def load(cls) -> Rewording:
        base = Thesaurus.load()
        entries = {word: synonyms for word, synonyms in base.entries.items() if word not in KEEP}
        entries.update(DOMAIN_SYNONYMS)
        return cls(Thesaurus(entries), rules.vocabulary(), Counter())

    def kept(self, token: str, first: bool) -> bool:
        """Whether a whitespace token must stay: code, a name, a hyphenated compound (round-floor,
        edge-triggered) or a term of art. Negations are stop words, which only the phrase table
        touches, and it keeps them ("does not" -> "doesn't"). A capitalised first word is an ordinary
        word when the corpus uses it in lower case."""
        core = token.lstrip(_LEADING).rstrip(_TRAILING)
        if not core or _CODE_CHARACTERS.search(core) or "-" in core:
            return True
        if any(c.isupper() for c in core[1:]) or (
            core[0].isupper() and (not first or core.lower() not in self.corpus_words)
        ):
            return True
        return bool(_base_forms(core.lower()) & KEEP)

    def synonym(self, word: str, rng: random.Random) -> str:
        """A synonym the Debian documentation itself uses somewhere: the thesaurus's rarer words
        ("sophistic", "oftenness", "primitively") read as another claim or as noise, and so do
        rule-made forms that are no words ("maked", "shoped"); lower case (no proper nouns: "add":
        "ADHD"). DOMAIN_SYNONYMS are taken as they are."""
        lower = word.lower()
        if lower.endswith("ing") and lower not in DOMAIN_SYNONYMS and self.thesaurus.synonyms(lower):
            return word  # its own entry is the noun ("supplying": "provision", "spelling": "orthography")
        forms = synonym_forms(self.thesaurus, word)
        if lower not in DOMAIN_SYNONYMS:
            forms = [form for form in forms if form == form.lower() and form in self.corpus_words]
        if not forms:
            return word
        choice = match_case(word, rng.choice(forms))
        self.swaps[lower, choice.lower()] += 1
        return choice

    def substitute(self, free: str, rng: random.Random, rate: float) -> str:
        """rewording.substitute on a stretch with nothing to keep, with each phrase swapped at
        ``rate`` too. Left alone: "and", whose "as well as" fits two nouns but not two clauses
        ("x is evaluated as well as the value is returned"); "that is", which here mostly means
        "i.e." ("line-based -- that's, every line"); "because of" ("since of")."""

        def replace(match: re.Match[str]) -> str:
            text = match.group(0)
            if match.group("phrase"):
                key = " ".join(text.lower().split())
                after = match.string[match.end() :].lstrip()
                if key in ("and", "that is") or (key == "because" and after.startswith("of ")) or rng.random() >= rate:
                    return text
                if match.string[match.end() : match.end() + 1] in "'\u2019" and match.end() < len(match.string):
                    return text  # part of a contraction: "can’t" is not "may’t"
                return match_case(text, PHRASES[key])
            if match.string[match.end() : match.end() + 1] in "'\u2019" and match.end() < len(match.string):
                return text
            if len(text) < 4 or text.lower() in STOPWORDS or rng.random() >= rate:
                return text
            return self.synonym(text, rng)

        return TOKEN.sub(replace, free)

    def fronted_last(self, sentence: str) -> str:
        """A fronted condition or phrase moved to the end: "If wc is WEOF, it returns WEOF." ->
        "It returns WEOF if wc is WEOF." Word order and word pairs change, the meaning does not.
        Only with one comma in the sentence (else the comma may sit inside a list), not for
        discourse markers ("For example," "In addition,"), and the new first word is capitalised
        only if it is an English word or a hyphenated compound (not "bc" or "errno")."""
        match = _FRONTED.match(sentence)
        if not match or sentence.count(",") != 1 or match.group(2).split()[0].lower() in _MARKERS:
            return sentence
        opener, phrase, main = match.groups()
        if main.split()[0].lower() in _CONNECTIVES - {"then"}:
            return sentence  # "..., so the archive may be invoked": a clause that must stay second
        if opener.lower() in _PREPOSITIONS and (
            len(phrase.split()) > 5 or _AUXILIARY.search(phrase) or "there" in phrase
        ):
            return sentence  # "Under OS/2 and NT there are calls that ...": a clause, not a phrase
        main = re.sub(r"^then\s+", "", main)  # "If X, then Y" -> "Y if X"
        first = main.split()[0]
        english = first in STOPWORDS or any(f in KEEP or f in self.thesaurus.entries for f in _base_forms(first))
        if re.fullmatch(r"[a-z]+(?:-[a-z]+)+", first) or (first.isalpha() and first.islower() and english):
            main = first.capitalize() + main[len(first) :]
        return f"{main} {opener.lower()} {phrase}."

    def sentence(self, sentence: str, rng: random.Random, rate: float) -> str:
        """Reword one sentence, leaving quoted strings and kept tokens exactly as they are; half
        the time a fronted condition or phrase goes to the end first."""
        if rng.random() < 0.5:
            sentence = self.fronted_last(sentence)
        pieces: list[str] = []
        free_start = 0
        for start, end in _kept_spans(sentence, self.kept):
            pieces += [self.substitute(sentence[free_start:start], rng, rate), sentence[start:end]]
            free_start = end
        pieces.append(self.substitute(sentence[free_start:], rng, rate))
        return fix_articles("".join(pieces))

    def text(self, sentences: list[str], rng: random.Random, rate: float, shuffle: bool) -> str:
        """Reword sentences, maybe shuffle them, and pair some with semicolons (as rewording.reword)."""
        sentences = list(sentences)
        if shuffle:
            rng.shuffle(sentences)
        return join_sentences([self.sentence(s, rng, rate) for s in sentences], self.thesaurus)


def _base_forms(word: str) -> set[str]:
    """The word and the bases a plain -s, -es, -ies, -ed, -d, -ing or -ly may come from."""
    forms = {word}
    for suffix, replacements in (("ies", ("y",)), ("es", ("",)), ("s", ("",)), ("ed", ("", "e")),
                                 ("d", ("",)), ("ing", ("", "e")), ("ly", ("",))):  # fmt: skip
        if word.endswith(suffix) and len(word) > len(suffix) + 2:
            forms |= {word[: -len(suffix)] + replacement for replacement in replacements}
    return forms


def _kept_spans(sentence: str, kept: Callable[[str, bool], bool]) -> list[tuple[int, int]]:
    quoted = [match.span() for match in _QUOTED.finditer(sentence)]
    spans = list(quoted)
    for match in re.finditer(r"\S+", sentence):
        inside = any(a <= match.start() < b or a < match.end() <= b for a, b in quoted)
        if not inside and kept(match.group(), not sentence[: match.start()].strip()):
            spans.append(match.span())
    merged: list[tuple[int, int]] = []  # a token may hold a quote: require('bar'),
    for start, end in sorted(spans):
        if merged and start < merged[-1][1]:
            merged[-1] = (merged[-1][0], max(end, merged[-1][1]))
        else:
            merged.append((start, end))
    return merged


# ---------------------------------------------------------------------------------------------
# Facts: names, numbers and their corruptions
# ---------------------------------------------------------------------------------------------

# A capitalised word or acronym (Linux, GNU, POSIX, CMake) not first in its sentence, that the
# corpus never writes in lower case. build_sets' terms() leaves these out of same-passage swaps
# (XML / SAX came out related); a term from another passage that this one never names is
# unsupported whatever its relation.
_CAPITALISED = re.compile(r"(?<![\w.:'\u2018/+<$@%\-])[A-Z][A-Za-z0-9]*(?![\w'\u2019(:\-]|\.\w)")
_NUMBER = re.compile(rf"(?<![\w.])\d+(?:\.\d+)*(?![\w])|\b(?:{'|'.join(rules.ONES[2:13])})\b", re.IGNORECASE)
_VERSION = re.compile(r"(?<![\w.\-/])(\d+)\.(\d+)(?:\.(\d+))?(?![\w\-/]|\.\d)")
_CONTENT_WORD = re.compile(r"[A-Za-z]{4,}")


def entities(text: str) -> list[tuple[str, str]]:
    """(kind, term): build_sets' terms (man-page references, options, calls, quoted terms,
    identifiers, runs of capitalised words) and single capitalised words or acronyms."""
    found = rules.terms(text)
    seen = {term for _, term in found}
    for sentence in re.split(r"(?<=[.!?;])\s+", text):
        for match in _CAPITALISED.finditer(sentence):
            word = match.group()
            if sentence[: match.start()].strip("\"'\u2018\u201c([ ") == "" or word in seen:
                continue
            if len(word) >= 2 and word.lower() not in rules.vocabulary() and word.lower() not in rules._STOP:
                found.append(("word", word))
                seen.add(word)
    return sorted(found, key=lambda item: text.find(item[1]))


def bare(term: str) -> str:
    """The name inside a term: 'sed' -> sed, printf(3) -> printf, open() -> open, --quiet -> --quiet."""
    return re.sub(r"\(\w*\)$", "", term.strip("'\"`\u2018\u2019\u201c\u201d"))


def mentions(source: str, term: str) -> bool:
    """Whether the source names the term (its bare name as a whole word, any case)."""
    name = bare(term)
    return bool(name) and re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", source, re.IGNORECASE) is not None


def numbers(text: str) -> set[str]:
    return {match.group().lower() for match in _NUMBER.finditer(text)}


def content_words(text: str) -> set[str]:
    return {word.lower() for word in _CONTENT_WORD.findall(text)} - rules._STOP - STOPWORDS


def overlap(text: str, sentences: list[str]) -> float:
    """The largest share of the text's content words that one of the sentences holds."""
    words = content_words(text)
    return max((len(words & content_words(s)) / len(words) for s in sentences), default=0.0) if words else 1.0


def has_fact(text: str) -> bool:
    return bool(numbers(text) or entities(text))


Edit = tuple[str, str, str]  # (corrupted text, old, new)


def swap_entity(text: str, passage: str, donors: list[str], rng: random.Random) -> Edit | None:
    """A term of the text (not one of a list or an example) replaced everywhere by a term of the
    same kind and shape from a nearby passage that this passage never names and that shares no
    four letters in a row with any of its terms (printf / sprintf are kin). The likeliest
    stand-ins first: the same first letter, a similar length, the nearest passage (EILSEQ ->
    EINVAL rather than POSIX); one of the best three is drawn."""
    passage_terms = [term for _, term in entities(passage)]
    for kind, old in entities(text):
        if rules._an_example(old, text):
            continue
        candidates = {
            new: (bare(new)[:1].lower() != bare(old)[:1].lower(), abs(len(new) - len(old)), rank)
            for rank, donor in reversed(list(enumerate(donors))) for donor_kind, new in entities(donor)
            if donor_kind == kind and rules.shape(new) == rules.shape(old) and not mentions(passage, new)
            and not any(rules.related(new, term) for term in passage_terms)
        }  # fmt: skip
        if candidates:
            new = rng.choice(sorted(candidates, key=lambda term: (candidates[term], term))[:3])
            corrupted = rules.whole(old).sub(lambda _: new, text)  # noqa: B023  (used at once)
            if corrupted != text:
                return corrupted, old, new
    return None


def change_number(text: str, passage: str) -> Edit | None:
    """build_sets' integer rule (counts, years; not bounds, versions or identifiers), else one
    version or decimal (3.11, 0.5) with its last part raised to a value the passage never names."""
    if edit := rules.corrupt_number(text, passage):
        return edit
    for match in _VERSION.finditer(text):
        if rules._a_bound(text, match.start(), match.end()) or text.count(match.group()) > 1:
            continue
        parts = [part for part in match.groups() if part is not None]
        for step in (1, 2, 3):
            new = ".".join([*parts[:-1], str(int(parts[-1]) + step)])
            if new not in passage:
                return text[: match.start()] + new + text[match.end() :], match.group(), new
    return None


def flip_negation(sentences: list[str], insert_first: bool) -> Edit | None:
    """build_sets' main-clause negation rule, in the due direction first."""
    for insert in (insert_first, not insert_first):
        if edit := rules.corrupt_negation(sentences, insert=insert):
            return edit
    return None


# ---------------------------------------------------------------------------------------------
# Passages
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Passage:
    id: str
    document: str
    text: str  # build_sets.cut_source: whole sentences, at most 1200 characters
    sentences: list[str]
    split: str


def split_of(passage_id: str) -> str:
    """Whole passages go to one split, by a hash of the id alone (not the seed): a passage keeps
    its split when the seed or the rules change."""
    return "fit" if int(hashlib.sha256(passage_id.encode()).hexdigest(), 16) % 100 < FIT_SHARE else "test"


def load_passages() -> tuple[list[Passage], list[str]]:
    """Corpus passages not used by summaries.jsonl, cut as build_sets cuts them; and the skips."""
    used = {row["source_id"] for row in read_jsonl(HERE / "summaries.jsonl")}
    passages, skipped = [], []
    for row in read_jsonl(rules.CORPUS):
        if row["id"] in used:
            skipped.append(f"{row['id']}: in summaries.jsonl")
            continue
        cut = rules.cut_source(row["text"])
        if cut is None:
            skipped.append(f"{row['id']}: under 3 sentences or 400 characters")
            continue
        passages.append(Passage(row["id"], row["source"], cut[0], cut[1], split_of(row["id"])))
    return passages, skipped


def read_jsonl(path: Path) -> list[dict]:
    with open(path, encoding="utf-8") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def neighbours(passages: list[Passage], count: int = 8) -> dict[str, list[Passage]]:
    """For each passage, the nearest ones by shared content words (Jaccard): same split, another
    document. Donors of swapped terms and foreign spans, so they come from a similar topic and no
    text crosses the fit / test line."""
    words = {p.id: content_words(p.text) for p in passages}
    nearest = {}
    for passage in passages:
        others = [o for o in passages if o.split == passage.split and o.document != passage.document]
        others.sort(key=lambda o: (-len(words[o.id] & words[passage.id]) / len(words[o.id] | words[passage.id]), o.id))
        nearest[passage.id] = others[:count]
    return nearest


def ordered(passages: list[Passage], name: str) -> list[Passage]:
    return sorted(passages, key=lambda p: hashlib.sha1(f"{SEED}:{name}:{p.id}".encode()).hexdigest())


def item_rng(name: str, passage: Passage) -> random.Random:
    return random.Random(f"{SEED}:{name}:{passage.id}")  # a str seed is hashed with SHA-512: stable


# A sentence that starts like this leans on the one before it: it is not moved first.
_LEANS_BACK = re.compile(
    r"^(?:it|its|this|these|that|those|they|their|them|such|he|she|his|her|here|there|otherwise|however|also|then"
    r"|thus|therefore|hence|so|but|and|or|instead|likewise|similarly|both|either|neither|again|further|moreover"
    r"|(?:in|for|as|after|because of|with|unlike|like) (?:this|that|these|those|such|addition|particular|example"
    r"|instance|either|both|a result|the latter|the former|it|them))\b",
    re.IGNORECASE,
)
_CONTINUES = set("and or nor then".split())
_CONNECTIVES = set("otherwise then else however thus therefore hence also instead and or but so".split())
_PREPOSITIONS = set("in on for to with by from at of about under over during without within through".split())
_NOT_AFTER = set("unless except if when whenever only provided but although though while until before after so".split())


def answer_spans(sentence: str) -> list[str]:
    """Short answers from a sentence: the whole of it if 4-20 words, else the longest start that
    ends at a comma or semicolon, has 4-20 words and is a whole claim: no condition left behind
    ("X is kept, unless Y"), no list cut short ("A, B, and C"; "three timestamps: the access
    timestamp"), no subject without its verb ("Outside the C locale, search ..., can be slow").
    A sentence that opens with a condition or phrase ("If X, Y") is not cut at all."""
    words = sentence.split()
    if rules._inside_quotes(sentence):
        return []  # a quotation the sentence splitter cut open
    if 4 <= len(words) <= 20:
        return [sentence]
    if words[0].lower() in rules._SUBORDINATORS | _NOT_AFTER | _PREPOSITIONS:
        return []  # "In order to make modules available to the REPL," is no claim
    cuts = []
    for match in re.finditer(r"[,;]\s+(\w+)", sentence):
        start, following = sentence[: match.start()], match.group(1).lower()
        if following in _NOT_AFTER or following in _CONTINUES or _AUXILIARY.fullmatch(following):
            continue  # a condition, the rest of a list, or the verb of which the start is the subject
        if start.split()[-1].lower() in _CONNECTIVES:
            continue  # "if x is true, its value is returned; otherwise" ends on a word that needs more
        if 4 <= len(start.split()) <= 20 and ":" not in start and not rules._inside_quotes(start):
            cuts.append(start + ".")
    return cuts[-1:]


# ---------------------------------------------------------------------------------------------
# The items
# ---------------------------------------------------------------------------------------------


@dataclass
class Pair:
    """One passage's faithful and hallucinated item, before they are numbered."""

    passage: Passage
    source: str
    question: str | None
    faithful: str
    hallucinated: str
    kind: str
    changed: list[str]


_AUXILIARY = re.compile(r"\b(?:is|are|was|were|can|cannot|must|may|might|should|will|would|does|do|has|have)\b")
_VERBS = set("returns takes sets gets uses calls contains makes gives means needs".split())
_PRONOUNS = set("it its this these that those they there he she one we you i such".split())


def subject_of(span: str) -> str | None:
    """The words before the span's first auxiliary verb, when they look like a subject: 1-6
    words, no comma, not a pronoun or an opening condition or phrase ("Empty strings are ..."
    -> "empty strings"; "The error is ..." -> "the error")."""
    match = _AUXILIARY.search(span)
    words = span[: match.start()].split() if match else []
    if not 1 <= len(words) <= 6 or re.search(r"[,:;()]", span[: match.start()]):
        return None
    first = words[0].lower()
    if first in _PRONOUNS or first in rules._SUBORDINATORS | _NOT_AFTER | _PREPOSITIONS:
        return None
    if {word.lower() for word in words[1:]} & (rules._SUBORDINATORS | _VERBS):
        return None  # "The resources that 'time'", "The list of buffers returns": not a subject
    if (len(words[0]) == 1 or words[0][1:].islower()) and first in rules.vocabulary() | {"a"}:
        words[0] = first  # an ordinary word, lower case inside the question
    return " ".join(words)


def question_about(span: str, window: str, passage: Passage, avoid: str | None) -> str | None:
    """The question "What does the text say about X?": X the answer's subject, else a term of
    the answer (with at least two letters), else the passage's subject from its id; never the
    term an error replaces; None when none of them is in the window."""
    candidates = [subject_of(span)]
    candidates += [term for _, term in entities(span) if len(re.findall(r"[A-Za-z]", bare(term))) >= 2]
    subject = re.sub(r"^(man|info|py|pyref|pod|node|pip|debian)-|-\d+$", "", passage.id)
    subject = re.sub(r"\.\d\w*$|^(api|topics|contributing)-|-(README|NEWS)$", "", subject)
    candidates += [subject, subject.replace("-", " ")]
    for candidate in candidates:
        if not candidate or (avoid and avoid.lower() in candidate.lower()):
            continue
        if candidate in window or mentions(window, candidate):
            return f"What does the text say about {candidate}?"
    return None


def foreign_span(passage: Passage, donors: list[Passage], answers: bool, rng: random.Random) -> str | None:
    """A span (answers) or whole sentence (summaries) of a nearby passage that this one does not
    support: it names a number or term the passage never names and shares under 40% of its
    content words with each of the passage's sentences. One of the three closest to the passage's
    topic (the most shared words) is drawn: a plausible claim, not a non sequitur."""
    found = []
    for donor in donors:
        for sentence in donor.sentences:
            if not rules.good_sentence(sentence) or _LEANS_BACK.match(sentence) or rules._inside_quotes(sentence):
                continue
            for span in answer_spans(sentence) if answers else [sentence]:
                new_facts = [t for _, t in entities(span) if not mentions(passage.text, t)]
                new_numbers = numbers(span) - numbers(passage.text)
                if (new_facts or new_numbers) and (shared := overlap(span, passage.sentences)) < 0.4:
                    found.append((-shared, span))
    return rng.choice(sorted(found)[:3])[1] if found else None


def due_kinds(kinds: tuple[str, ...], counts: Counter[str]) -> list[str]:
    """The least used kind first, ties in the listed order: a cycle that moves on past a kind
    that does not apply to a passage."""
    return sorted(kinds, key=lambda kind: (counts[kind], kinds.index(kind)))


def make_answer(passage: Passage, donors: list[Passage], counts: Counter[str], rewording: Rewording) -> Pair | str:
    rng = item_rng("answers", passage)
    spans = [(i, span) for i, s in enumerate(passage.sentences) if rules.good_sentence(s)
             for span in answer_spans(s) if has_fact(span)]  # fmt: skip
    if not spans:
        return "no sentence with a name or number gives a 4-20 word answer"
    rng.shuffle(spans)
    donor_texts = [d.text for d in donors]
    for kind in due_kinds(ANSWER_KINDS, counts):
        for index, span in spans:
            edit: Edit | None = None
            if kind == "entity_swap":
                edit = swap_entity(span, passage.text, donor_texts, rng)
            elif kind == "number":
                edit = change_number(span, passage.text)
            elif kind == "negation":
                edit = flip_negation([span], insert_first=counts[kind] % 2 == 0)
            else:
                foreign = foreign_span(passage, donors, True, rng)
                edit = (foreign, span, foreign) if foreign else None
            if edit is None:
                continue
            corrupted, old, new = edit
            assert corrupted != span, (passage.id, kind, span)
            length = min(rng.randint(2, 4), len(passage.sentences))  # the window holds the answer's sentence
            start = rng.randint(max(0, index - length + 1), min(index, len(passage.sentences) - length))
            window = " ".join(passage.sentences[start : start + length])
            assert span.rstrip(".") in window, (passage.id, span)
            question = question_about(span, window, passage, old if kind == "entity_swap" else None)
            faithful = rewording.sentence(span, rng, ANSWER_RATE)
            hallucinated = rewording.sentence(corrupted, rng, ANSWER_RATE)
            return Pair(passage, window, question, faithful, hallucinated, kind, [old, new])
    return "no error applies to its answers"


def drop_aside(sentence: str) -> str:
    """A summary may leave out a parenthesis of two or more words or a ", which ...," clause."""
    shorter = re.sub(r"\s*\([^()]*\s[^()]*\)", "", sentence)
    shorter = re.sub(r", which [^,;()]+,", "", shorter)
    return shorter if len(shorter.split()) >= 6 else sentence


def make_summary(passage: Passage, donors: list[Passage], counts: Counter[str], rewording: Rewording) -> Pair | str:
    rng = item_rng("summaries", passage)
    length = rng.choice((2, 3))
    good = [rules.good_sentence(s) and not rules._inside_quotes(s) for s in passage.sentences]
    windows = [
        passage.sentences[i : i + n] for n in (length, 5 - length) for i in range(len(passage.sentences) - n + 1)
        if all(good[i : i + n]) and len(" ".join(passage.sentences[i : i + n])) <= MAX_SUMMARY_CHARS
    ]  # fmt: skip
    if not windows:
        return f"no 2-3 consecutive whole prose sentences within {MAX_SUMMARY_CHARS} characters"
    first_length = len(windows[0])
    windows = [w for w in windows if len(w) == first_length]
    rng.shuffle(windows)
    asides = rng.random() < 0.4
    for kind in due_kinds(SUMMARY_KINDS, counts):
        for window in windows:
            sentences = [drop_aside(s) for s in window] if asides else list(window)
            summary = " ".join(sentences)
            edit: Edit | None = None
            if kind == "entity_swap":
                edit = swap_entity(summary, passage.text, [d.text for d in donors], rng)
            elif kind == "number":
                edit = change_number(summary, passage.text)
            elif kind == "negation":
                edit = flip_negation(sentences, insert_first=counts[kind] % 2 == 0)
            elif kind == "intrinsic_swap":
                edit = rules.corrupt_entity(summary, passage.sentences)
            else:
                foreign = foreign_span(passage, donors, False, rng)
                if foreign:
                    kept = sentences[:-1]  # one sentence makes way, so both summaries have the same length
                    kept.insert(rng.randint(0, len(kept)), foreign)
                    edit = (" ".join(kept), "", foreign)
            if edit is None:
                continue
            corrupted, old, new = edit
            assert corrupted != summary, (passage.id, kind, summary)
            faithful = reword_summary(sentences, rng, rewording)
            hallucinated = reword_summary([corrupted[a:b] for a, b in rules.sentence_spans(corrupted)], rng, rewording)
            return Pair(passage, passage.text, None, faithful, hallucinated, kind, [old, new])
    return "no error applies to its windows"


def reword_summary(sentences: list[str], rng: random.Random, rewording: Rewording) -> str:
    """Reworded at SUMMARY_RATE; the order changes half the time, when no sentence leans on the one before."""
    movable = not any(_LEANS_BACK.match(s) for s in sentences)
    return rewording.text(sentences, rng, SUMMARY_RATE, shuffle=movable and rng.random() < 0.5)


# ---------------------------------------------------------------------------------------------
# Checks that every item is what its label says
# ---------------------------------------------------------------------------------------------


def check(pair: Pair) -> None:
    """The faithful text names only numbers and terms of its source; the hallucinated one holds its
    error: the new term or number (absent from the passage), the flipped negation, the foreign span."""
    source, passage = pair.source, pair.passage.text
    unknown_numbers = numbers(pair.faithful) - numbers(source)
    assert not unknown_numbers, (pair.passage.id, "faithful names", unknown_numbers)
    unknown_terms = [t for _, t in entities(pair.faithful) if not mentions(source, t)]
    assert not unknown_terms, (pair.passage.id, "faithful names", unknown_terms)
    assert pair.hallucinated != pair.faithful, (pair.passage.id, pair.kind)
    old, new = pair.changed
    if pair.kind in ("entity_swap", "number", "intrinsic_swap"):
        assert rules.whole(new).search(pair.hallucinated), (pair.passage.id, pair.kind, new)
    if pair.kind == "entity_swap":
        assert not mentions(passage, new), (pair.passage.id, new)
    if pair.kind == "number":
        assert new.lower() not in numbers(passage), (pair.passage.id, new)
    if pair.kind == "intrinsic_swap":
        assert mentions(passage, new) and old != new, (pair.passage.id, new)
    if pair.kind == "negation":
        before = len(_NEGATION_WORDS.findall(old))
        assert before != len(_NEGATION_WORDS.findall(new)), (pair.passage.id, old, new)
    if pair.kind in ("extrinsic", "extrinsic_sentence"):
        assert overlap(new, pair.passage.sentences) < 0.4, (pair.passage.id, new)


def build(name: str, make: Callable[..., Pair | str], kinds: tuple[str, ...], passages: list[Passage],
          nearest: dict[str, list[Passage]], rewording: Rewording) -> tuple[list[dict], list[str]]:  # fmt: skip
    counts: Counter[str] = Counter()
    rows, skipped = [], []
    prefix = name[0]
    for passage in ordered(passages, name):
        if len(rows) == ITEMS_PER_FILE:
            break
        pair = make(passage, nearest[passage.id], counts, rewording)
        if isinstance(pair, str):
            skipped.append(f"{passage.id}: {pair}")
            continue
        check(pair)
        counts[pair.kind] += 1
        number = len(rows) // 2 + 1
        common = {"source_id": passage.id, "source": pair.source, "question": pair.question}
        for label, text, kind, changed in (("faithful", pair.faithful, None, None),
                                           ("hallucinated", pair.hallucinated, pair.kind, pair.changed)):  # fmt: skip
            rows.append({"id": f"{prefix}{number:03d}-{label}", **common, "text": text, "label": label,
                         "kind": kind, "changed": changed, "split": passage.split})  # fmt: skip
    assert len({row["id"] for row in rows}) == len(rows)
    return sorted(rows, key=lambda row: row["id"]), skipped


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _tokens(text: str) -> list[str]:
    return re.findall(r"[a-z0-9]+", rules.fold(text))


def novelty(text: str, source: str) -> tuple[float, float]:
    """The shares of the text's words and of its word pairs that the source never uses."""
    text_words, source_words = _tokens(text), _tokens(source)
    pairs = list(zip(text_words, text_words[1:], strict=False))
    source_pairs = set(zip(source_words, source_words[1:], strict=False))
    word_share = sum(w not in set(source_words) for w in text_words) / max(1, len(text_words))
    return word_share, sum(p not in source_pairs for p in pairs) / max(1, len(pairs))


def auroc(positives: list[float], negatives: list[float]) -> float:
    """P(a hallucinated item scores above a faithful one), ties counting half (Mann-Whitney)."""
    wins = sum((p > n) + 0.5 * (p == n) for p in positives for n in negatives)
    return wins / (len(positives) * len(negatives))


def report(name: str, rows: list[dict], skipped: list[str], show: int) -> None:
    print(f"\n{name}: {len(rows)} items")
    print("  label:", dict(Counter(r["label"] for r in rows)))
    print("  kind:", dict(Counter(r["kind"] or "faithful" for r in rows)))
    print("  split:", dict(Counter(f"{r['split']}/{r['label']}" for r in rows)))
    print("  no question:", sum(r["question"] is None for r in rows))
    faithful = [novelty(r["text"], r["source"]) for r in rows if r["label"] == "faithful"]
    hallucinated = [novelty(r["text"], r["source"]) for r in rows if r["label"] == "hallucinated"]
    print(f"  faithful with a word the source lacks: {sum(w > 0 for w, _ in faithful)} of {len(faithful)}; "
          f"with a word pair it lacks: {sum(p > 0 for _, p in faithful)}")  # fmt: skip
    for index, what in ((0, "words"), (1, "word pairs")):
        mean_f = sum(n[index] for n in faithful) / len(faithful)
        mean_h = sum(n[index] for n in hallucinated) / len(hallucinated)
        score = auroc([n[index] for n in hallucinated], [n[index] for n in faithful])
        print(
            f"  share of {what} not in the source: faithful {mean_f:.2f}, hallucinated {mean_h:.2f}, AUROC {score:.3f}"
        )
    by_kind = {
        kind: round(
            auroc([novelty(r["text"], r["source"])[1] for r in rows if r["kind"] == kind], [p for _, p in faithful]), 3
        )
        for kind in sorted({r["kind"] for r in rows if r["kind"]})
    }
    print("  AUROC of the word-pair share, each kind against all faithful items:", by_kind)
    reasons = Counter(line.split(": ", 1)[1] for line in skipped)
    print(f"  skipped {len(skipped)} passages:", dict(reasons))
    if show:
        for kind in ["faithful", *sorted({r["kind"] for r in rows if r["kind"]})]:
            for row in [r for r in rows if (r["kind"] or "faithful") == kind][:show]:
                print(f"\n  [{row['id']} {kind} {row['split']}] {row['source_id']}  changed={row['changed']}")
                print(f"    source: {row['source'][:400]}")
                if row["question"]:
                    print(f"    question: {row['question']}")
                print(f"    text: {row['text']}")


def write_jsonl(path: Path, rows: list[dict]) -> None:
    with open(path, "w", encoding="utf-8", newline="\n") as out:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--show", type=int, default=0, help="print this many examples of each kind")
    args = parser.parse_args()
    rewording = Rewording.load()
    passages, skipped = load_passages()
    print(f"{len(passages)} passages usable ({Counter(p.split for p in passages)}); {len(skipped)} left out:",
          dict(Counter(line.split(": ", 1)[1] for line in skipped)))  # fmt: skip
    nearest = neighbours(passages)
    answers, answers_skipped = build("answers", make_answer, ANSWER_KINDS, passages, nearest, rewording)
    summaries, summaries_skipped = build("summaries", make_summary, SUMMARY_KINDS, passages, nearest, rewording)
    write_jsonl(ANSWERS_PATH, answers)
    write_jsonl(SUMMARIES_PATH, summaries)
    report(ANSWERS_PATH.name, answers, answers_skipped, args.show)
    report(SUMMARIES_PATH.name, summaries, summaries_skipped, args.show)


if __name__ == "__main__":
    main()
