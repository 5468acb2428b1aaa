"""Sentence segmenter candidates for scoring/sentences.py: speed on prose and on adversarial
input, and how each treats abbreviations (issue 16).

The candidates are not Signet's dependencies; install them beside it in a venv of their own:

    python3.11 -m venv /tmp/segvenv && /tmp/segvenv/bin/pip install pysbd syntok blingfire spacy
    /tmp/segvenv/bin/python bench/sentence_splitters.py [candidate ...]

Each adversarial text is 100,000 characters (SIGNET_MAX_TEXT_CHARS); a candidate gets 20 s
per text, and "inf" means it ran out. Results and the choice: scoring/sentences.py.
"""

import json
import re
import signal
import sys
import time
from pathlib import Path

sys.setrecursionlimit(10000)
CORPUS = Path(__file__).resolve().parents[1] / "tests/data/corpus/human.jsonl"
prose = [json.loads(line)["text"] for line in CORPUS.read_text(encoding="utf-8").splitlines()]
PROSE = "\n\n".join(prose)
print("prose chars", len(PROSE), file=sys.stderr)

OLD_END = re.compile(r"""[.!?]+["'”’»)\]]*(?=\s|$)|[。！？]+[」』”’）]*""")
NEW_END = re.compile(r"""(?<![.!?])[.!?]++["'”’»)\]]*+(?=\s|$)|[。！？]++[」』”’）]*+""")
BLANK = re.compile(r"\n[^\S\n]*\n")


def regex_split(end):
    def split(text):
        cuts = {m.end() for m in end.finditer(text)}
        cuts.update(m.start() for m in BLANK.finditer(text))
        cuts.add(len(text))
        out, start = [], 0
        for cut in sorted(cuts):
            piece = text[start:cut]
            s = piece.strip()
            if s:
                first = start + len(piece) - len(piece.lstrip())
                out.append((first, first + len(s)))
            start = cut
        return out

    return split


def pysbd_split():
    import pysbd

    seg = pysbd.Segmenter(language="en", clean=False, char_span=True)
    return lambda text: [(s.start, s.end) for s in seg.segment(text)]


def syntok_split():
    import syntok.segmenter as sg

    def split(text):
        out = []
        for para in sg.analyze(text):
            for sent in para:
                toks = list(sent)
                start = toks[0].offset
                end = toks[-1].offset + len(toks[-1].value)
                out.append((start, end))
        return out

    return split


def blingfire_split():
    import blingfire

    def split(text):
        _, offs = blingfire.text_to_sentences_and_offsets(text)
        return list(offs)

    return split


def spacy_split():
    import spacy

    nlp = spacy.blank("en")
    nlp.add_pipe("sentencizer")
    nlp.max_length = 2_000_000
    return lambda text: [(s.start_char, s.end_char) for s in nlp(text).sents]


CANDIDATES = {
    "old regex": lambda: regex_split(OLD_END),
    "new regex": lambda: regex_split(NEW_END),
    "pysbd": pysbd_split,
    "syntok": syntok_split,
    "blingfire": blingfire_split,
    "spacy": spacy_split,
}
N = 100_000
ADVERSARIAL = {
    "dots+x": "." * (N - 1) + "x",
    "dots 20k+x": "." * 20000 + "x",
    "?! alt": "?!" * (N // 2),
    "dot-quote+x": '."' * (N // 2 - 1) + "x",
    "a. x50k": "a. " * (N // 3),
    "Dr. x": "Dr. " * (N // 4),
    "one word": "a" * N,
    "nl spaces": "\n" + " " * (N - 2) + "x",
    "nl alternating": "\n " * (N // 2),
    "parens": "(" * (N // 2) + ")" * (N // 2),
    "quotes": '"' * N,
    "CJK stops": "。" * N,
    "digits dots": "1." * (N // 2),
    "words no punct": "word " * (N // 5),
    "abbr e.g.": "e.g. " * (N // 5),
    "ellipsis words": "wait..." * (N // 7),
}
ABBREV = [
    "Ask Dr. Smith about it. He knows.",
    "J. R. R. Tolkien wrote it. It is long.",
    "We use e.g. apples here. Then pears.",
    "Pi is 3.14 and v1.2.3 is out. Next.",
]


def timed(fn, text, limit=20):
    def alarm(*_):
        raise TimeoutError

    signal.signal(signal.SIGALRM, alarm)
    signal.alarm(limit)
    t = time.perf_counter()
    try:
        fn(text)
        return time.perf_counter() - t
    except TimeoutError:
        return float("inf")
    finally:
        signal.alarm(0)


names = sys.argv[1:] or list(CANDIDATES)
for name in names:
    try:
        fn = CANDIDATES[name]()
    except Exception as e:
        print(name, "unavailable", e)
        continue
    fn("warm up. Now.")
    prose_t = min(timed(fn, PROSE, 120) for _ in range(3))
    row = {"prose_s": round(prose_t, 4), "prose_MB_s": round(len(PROSE) / prose_t / 1e6, 2)}
    # span contract
    spans = fn(PROSE[:50000])
    row["n_sent_50k"] = len(spans)
    row["abbrev"] = [[ABBREV[i][a:b] for a, b in fn(ABBREV[i])] for i in range(len(ABBREV))]
    adv = {k: round(timed(fn, v), 4) for k, v in ADVERSARIAL.items()}
    row["worst_adv"] = max(adv.items(), key=lambda kv: kv[1])
    row["adv"] = adv
    print(name, json.dumps(row, ensure_ascii=False), flush=True)
