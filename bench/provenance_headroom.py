"""What the registry would have to flag to reach issue 19's goal after the model's
paraphrase, and what else it would flag there: three kinds of evidence, threshold-free.

    .venv/bin/python -m bench.provenance_headroom [--generations 200] [--texts FILE] [--save FILE]

The goal is a combined rate of 0.90 after the served model's paraphrase. In the combined
test the watermark has alpha / 2 (5e-4 at alpha = 1e-3) whenever the registry can decide,
and finds some of the paraphrases; the registry must find enough of the others. For each
kind of evidence the bench finds the **bar**, the highest score such that flagging every text
at or above it brings the combined rate to 0.90, and counts what else scores at or above it:

- *near-copy*: word 5-grams the text shares with the generation (the issue's MinHash
  option measures the same overlap);
- *meaning*: the registry's own all-MiniLM-L6-v2 similarity, best pair of paragraph pieces;
- *rare words*: tf-idf cosine, best pair of pieces, with the idf of the 100,000 filler
  paragraphs (sublinear tf, smoothed idf: scikit-learn's TfidfVectorizer formula, written
  out with scipy because scikit-learn is not in the lock and this is its one use).

What else, all of it rewordings of no record, each text scored by its best record:

- the model's other answers to the same prompts (other seeds, never recorded), against all the
  generations: same topics, same model (bench/provenance_quality.py's hardest null offline);
- the 430 human texts of tests/data/corpus, against the generations;
- documentation against 100,000 documentation records (the registry's null): for near-copies
  and rare words measured, the 2,000 calibration paragraphs against the stored fillers of other
  families (as bench/provenance_calibration.py pairs them), and the human texts (the pieces
  /detect searches) against those not of their own family; for meaning from the fitted null
  (signet/provenance/significance.py), the chance that a query of one piece has some record
  at or above the bar, 1 - exp(-N exceedance(bar)), records taken as independent, since
  embedding the fillers takes 40 minutes.

Then rare words as a test: a null fitted on the rare-word cosines of every pair of a stored
filler paragraph (as the query) and a piece of ``--null-generations`` further generations (half
on the bench's prose prompts, half explaining a command, crate or package named after a filler
family), a generalised Pareto tail above the 1 - 1e-4 quantile, and the union bound for a
registry of 100,000 generations (signet/provenance/significance.py's p_value; a text under 40
words, too short for a verdict, gets none): the paraphrases found,
alone and with the watermark, and the same-prompt answers, human texts and calibration
paragraphs flagged against all the generations.

Texts come from the engine (bench/provenance_quality.py's generate_texts: ``--generations``
``kgw-lefthash`` completions of 200 tokens, their paraphrases, other answers), or from an
earlier ``--save`` of this bench or of bench/provenance_quality.py (``--texts``; the null
section runs when the file has ``null`` generations).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import json
import math
import re
import tempfile
from collections.abc import Callable
from pathlib import Path

import numpy as np
import scipy.sparse
import scipy.stats

from bench.detection_quality import CORPUS, KEYS, make_state, prompts
from bench.provenance_calibration import split
from bench.provenance_corpus import family, load_fillers
from bench.provenance_quality import ALPHA, KEY_IDS, best_similarities, generate_texts
from signet.api.auth import DEVELOPMENT_CALLER
from signet.api.detect.protocol import DetectRequest
from signet.api.detect.service import detect
from signet.api.provenance.search import MIN_QUERY_WORDS, query_pieces, watermark_evidence
from signet.provenance.fingerprint import pieces
from signet.provenance.significance import CALIBRATED_NULL, SimilarityNull, p_value

GOAL = 0.90
STORE_RECORDS = 100_000
NGRAM_WORDS = 5
_WORD = re.compile(r"[a-z0-9]+")
_TERM = re.compile(r"[a-z][a-z0-9'-]+")


def ngrams(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    return {" ".join(words[start : start + NGRAM_WORDS]) for start in range(len(words) - NGRAM_WORDS + 1)}


class RareWords:
    """tf-idf vectors: (1 + ln tf) x (1 + ln((D + 1) / (df + 1))), rows of unit length."""

    def __init__(self, documents: list[str]) -> None:
        frequency = collections.Counter(term for text in documents for term in set(_TERM.findall(text.lower())))
        self.idf = {term: 1 + math.log((len(documents) + 1) / (count + 1)) for term, count in frequency.items()}
        self.unseen_idf = 1 + math.log(len(documents) + 1)
        self.columns: dict[str, int] = {}
        self._records: list[str] | None = None
        self._record_matrix = None

    def matrix(self, texts: list[str]) -> scipy.sparse.csr_matrix:
        rows, columns, values = [], [], []
        for row, text in enumerate(texts):
            for term, count in collections.Counter(_TERM.findall(text.lower())).items():
                rows.append(row)
                columns.append(self.columns.setdefault(term, len(self.columns)))
                values.append((1 + math.log(count)) * self.idf.get(term, self.unseen_idf))
        shape = (len(texts), 1 << 22)  # columns are handed out as terms appear, far fewer than this
        matrix = scipy.sparse.csr_matrix((values, (rows, columns)), shape=shape, dtype=np.float32)
        norms = np.sqrt(matrix.multiply(matrix).sum(axis=1)).A1
        return scipy.sparse.diags(1 / np.maximum(norms, 1e-12)) @ matrix

    def __call__(self, queries: list[str], records: list[str]) -> np.ndarray:
        """[queries, records] cosines, each text one piece."""
        if records is not self._records:  # the 100,000 fillers, weighed once
            self._records, self._record_matrix = records, self.matrix(records).T.tocsc()
        return (self.matrix(queries) @ self._record_matrix).toarray()

    def best(self, queries: list[str], records: list[str]) -> np.ndarray:
        """[queries, records]: each pair's best cosine over their pieces (as best_similarities)."""
        cut = [pieces(text) for text in queries + records]
        owners = np.repeat(np.arange(len(cut)), [len(found) for found in cut])
        vectors = self.matrix([piece for found in cut for piece in found])
        query_rows, record_rows = owners < len(queries), owners >= len(queries)
        pair = (vectors[query_rows] @ vectors[record_rows].T).toarray()
        best = np.zeros((len(queries), len(records)), np.float32)
        np.maximum.at(best, (owners[query_rows][:, None], owners[record_rows][None, :] - len(queries)), pair)
        return best


def bar(caught: np.ndarray, scores: np.ndarray) -> float | None:
    """The highest score at which flagging ``scores >= bar`` beside ``caught`` reaches GOAL; None: none does."""
    for candidate in sorted(set(scores[~caught].tolist()), reverse=True):
        if np.mean(caught | (scores >= candidate)) >= GOAL:
            return candidate
    return None


def share(scores: np.ndarray, at: float) -> str:
    return f"{np.mean(scores >= at):.3f}"


def watermark_p_values(state, texts: list[str]) -> np.ndarray:
    values = []
    for text in texts:
        response = detect(state, DetectRequest(text=text, key_id=KEY_IDS[0], alpha=ALPHA), DEVELOPMENT_CALLER)
        values.append(watermark_evidence(response))
    return np.array(values)


def human_texts() -> tuple[list[str], list[str]]:
    """tests/data/corpus's texts (as bench.detection_quality.corpus_texts) and their families."""
    rows = [json.loads(line) for name in ("human.jsonl", "repetitive.jsonl") for line in (CORPUS / name).open()]
    return [row["text"] for row in rows], [family(row["source"].split("#")[0]) for row in rows]


def documentation_rows(
    score: Callable[[list[str], list[str]], np.ndarray], fillers: list[dict], human: list[str], kin: list[str]
) -> tuple[np.ndarray, np.ndarray]:
    """Each calibration paragraph's best score against the 100,000 stored fillers of other
    families, and each human text's (the pieces /detect searches) against those not of its
    own family (``kin``). ``score(queries, records)``: [queries, records], one piece each."""
    stored, queries = split(fillers)
    records = [fillers[index]["text"] for index in stored]
    families = np.array([family(fillers[index]["source"]) for index in stored])
    calibration = []
    for start in range(0, len(queries), 200):
        chunk = queries[start : start + 200]
        scores = score([fillers[index]["text"] for index in chunk], records)
        for row, index in enumerate(chunk):
            calibration.append(scores[row][families != family(fillers[index]["source"])].max())
    people = [
        score(query_pieces(text)[0], records)[:, families != own].max() for text, own in zip(human, kin, strict=True)
    ]
    return np.array(calibration), np.array(people)


class SharedNgrams:
    """[queries, records]: word 5-grams each pair shares, whole texts, through an inverted index
    of the records (built once per list of records)."""

    def __init__(self) -> None:
        self.records: list[str] | None = None
        self.index: dict[int, list[int]] = {}

    def __call__(self, queries: list[str], records: list[str]) -> np.ndarray:
        if records is not self.records:
            self.records, self.index = records, collections.defaultdict(list)
            for row, text in enumerate(records):
                for gram in ngrams(text):
                    self.index[hash(gram)].append(row)
        counts = np.zeros((len(queries), len(records)), np.int32)
        for row, text in enumerate(queries):
            for gram in ngrams(text):
                counts[row, self.index.get(hash(gram), [])] += 1
        return counts


def null_prompts(count: int, fillers: list[dict]) -> list[str]:
    """Prompts for the records a null of text against generations is fitted on: half the bench's
    prose prompts (other seeds), half technical ones, one per filler family (a man page's
    command, a Rust documentation folder, a package), so that documentation queries meet
    generations on their own topics."""
    names: list[str] = []
    for index in split(fillers)[0]:  # the store's order: a fixed shuffle, all kinds mixed
        kind = family(fillers[index]["source"])
        name = re.split(r"[:/]", kind.rstrip("/"))[-1]
        if kind.startswith("man:"):
            named = f"the {name} command"
        elif kind.startswith("rust:"):
            named = f"the Rust {name} documentation"
        else:
            named = f"the {name} package"
        if named not in names:
            names.append(named)
    technical = [f"Explain what {name} is and how it is used, with examples." for name in names[: count - count // 2]]
    return prompts(100) * (count // 2 // 100) + prompts(count // 2 % 100) + technical


def generation_null(rare: RareWords, documents: list[str], generations: list[str]) -> tuple[SimilarityNull, float, str]:
    """Rare-word cosines of every (documentation paragraph, generation piece) pair, and their
    tail above the 1 - 1e-4 quantile as a generalised Pareto (a shape below 0 raised to 0, as
    significance.py does), with the pieces per generation and the fit against the pairs."""
    records = rare.matrix([piece for text in generations for piece in pieces(text)]).T.tocsc()
    high, total = [], 0
    for start in range(0, len(documents), 5000):
        scores = (rare.matrix(documents[start : start + 5000]) @ records).toarray()
        total += scores.size
        high.append(scores[scores > 0.1])
    tail = np.sort(np.concatenate(high))[::-1]
    threshold = float(tail[int(total * 1e-4)])
    shape, _, scale = scipy.stats.genpareto.fit(tail[tail > threshold] - threshold, floc=0)
    null = SimilarityNull(threshold=threshold, tail_fraction=1e-4, shape=max(0.0, float(shape)), scale=float(scale))
    levels = [
        f"P(S >= {level}) {np.sum(tail >= level) / total:.2e} (fit {null.exceedance(level):.2e})"
        for level in (0.3, 0.35, 0.4)
    ]
    summary = (
        f"{total:,} pairs ({len(documents):,} documentation paragraphs x {records.shape[1]:,} pieces of "
        f"{len(generations):,} generations): u = {threshold:.4f}, shape {shape:.4f}, scale {scale:.4f}; "
        f"largest {tail[0]:.3f}; " + ", ".join(levels)
    )
    return null, records.shape[1] / len(generations), summary


def cosine_needed(null: SimilarityNull, comparisons: int) -> float:
    """The cosine whose p-value (significance.p_value) is alpha / 2 after ``comparisons``."""
    exceedance = ALPHA / 2 / comparisons
    if null.shape == 0.0:
        return null.threshold + null.scale * math.log(null.tail_fraction / exceedance)
    return null.threshold + null.scale / null.shape * ((null.tail_fraction / exceedance) ** null.shape - 1)


def rare_word_p_values(
    rare: RareWords, null: SimilarityNull, queries: list[str], records: list[str], registry_pieces: int
) -> np.ndarray:
    """Each query's best rare-word match among ``records``, as a p-value in a registry of
    ``registry_pieces`` pieces: the union bound over q x N comparisons (significance.py). A text
    too short for a verdict in /detect (under MIN_QUERY_WORDS words) gets 1."""
    record_matrix = rare.matrix([piece for text in records for piece in pieces(text)]).T.tocsc()
    values = []
    for query in queries:
        if len(query.split()) < MIN_QUERY_WORDS:
            values.append(1.0)
            continue
        searched = rare.matrix(query_pieces(query)[0])
        best = float((searched @ record_matrix).toarray().max())
        values.append(p_value(best, searched.shape[0] * registry_pieces, null))
    return np.array(values)


def print_generation_null(
    rare: RareWords, fillers: list[dict], made: dict, caught: np.ndarray, human: list[str]
) -> None:
    """Rare words as a test, with a null of documentation against generations (made["null"])."""
    stored, calibration = split(fillers)
    null, pieces_per_generation, summary = generation_null(
        rare, [fillers[index]["text"] for index in stored], made["null"]
    )
    registry_pieces = round(STORE_RECORDS * pieces_per_generation)  # a registry of STORE_RECORDS generations
    texts, paraphrased = made[KEY_IDS[0]]
    records = made["null"] + texts
    found = rare_word_p_values(rare, null, paraphrased, texts, registry_pieces) < ALPHA / 2
    print(f"\n### Rare words against a null of documentation and generations\n\n{summary}\n")
    print(
        f"A registry of {STORE_RECORDS:,} generations holds {registry_pieces:,} pieces; at alpha / 2 a query of "
        f"1 piece needs a cosine of {cosine_needed(null, registry_pieces):.3f}, of 2 pieces "
        f"{cosine_needed(null, 2 * registry_pieces):.3f}.\n"
    )
    print(f"| texts | flagged at alpha / 2, p-values for {STORE_RECORDS:,} generations |")
    print("|---|---|")
    print(f"| paraphrases, by rare words | {found.mean():.3f} |")
    print(f"| paraphrases, by the watermark or rare words | {(found | caught).mean():.3f} |")
    for name, queries in (
        ("the model's other answers to the same prompts", made["others"]),
        ("human texts", human),
        ("calibration paragraphs", [fillers[index]["text"] for index in calibration]),
    ):
        flagged = rare_word_p_values(rare, null, queries, records, registry_pieces) < ALPHA / 2
        print(f"| {name}, against the {len(records):,} generations | {flagged.sum()} of {len(queries)} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=200)
    parser.add_argument("--null-generations", type=int, default=1000, help="records the rare-word null is fitted on")
    parser.add_argument(
        "--texts",
        type=Path,
        help="take the texts from an earlier --save file (of this bench or bench/provenance_quality.py)",
    )
    parser.add_argument("--save", type=Path, help="write the texts here, as JSON")
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps(KEYS))
        state, model_dir = make_state(keys_file)
        fillers = load_fillers()
        if arguments.texts:
            made = json.loads(arguments.texts.read_text())["texts"]
        else:
            asked = null_prompts(arguments.null_generations, fillers)
            made = asyncio.run(generate_texts(state, model_dir, keys_file, arguments.generations, 200, asked))
        if arguments.save:
            arguments.save.write_text(json.dumps({"texts": made}))
        state.detection_cache = None
        texts, paraphrased = made[KEY_IDS[0]]
        others, count = made["others"], len(texts)
        human, kin = human_texts()
        caught = watermark_p_values(state, paraphrased) < ALPHA / 2
        rare = RareWords([fillers[index]["text"] for index in split(fillers)[0]])
        evidence = {
            f"near-copy ({NGRAM_WORDS}-grams shared)": (
                SharedNgrams(),
                documentation_rows(SharedNgrams(), fillers, human, kin),
            ),
            "meaning (all-MiniLM-L6-v2)": (
                lambda queries, records: best_similarities(state, queries, records, 120),
                None,
            ),
            "rare words (tf-idf)": (rare.best, documentation_rows(rare, fillers, human, kin)),
        }
        print(
            f"{count} paraphrases: the watermark at alpha / 2 = {ALPHA / 2:g} finds {caught.mean():.3f}; "
            f"the goal is {GOAL} combined\n"
        )
        print(
            "| evidence | median, paraphrases the watermark misses / finds | bar for 0.90 | "
            "other answers to the same prompts | human texts vs the generations | "
            "documentation queries vs 100,000 records | human texts vs 100,000 documentation records |"
        )
        print("|---|---|---|---|---|---|---|")
        for name, (best, documentation) in evidence.items():
            own = np.diagonal(best(paraphrased, texts))
            medians = f"{number(np.median(own[~caught]))} / {number(np.median(own[caught]))}"
            at = bar(caught, own)
            if at is None:
                print(f"| {name} | {medians} | unreachable | | | | |")
                continue
            cells = [share(best(others, texts).max(axis=1), at), share(best(human, texts).max(axis=1), at)]
            if documentation is None:  # a one-piece query, from the fitted null
                fit = 1 - math.exp(-STORE_RECORDS * CALIBRATED_NULL.exceedance(at))  # records taken as independent
                cells += [f"{fit:.3f} (fit)", ""]
            else:
                cells += [share(documentation[0], at), share(documentation[1], at)]
            print(f"| {name} | {medians} | {number(at)} | {' | '.join(cells)} |")
        if "null" in made:
            print_generation_null(rare, fillers, made, caught, human)


def number(value: float) -> str:
    """A count of 5-grams as a count, a cosine to 3 places."""
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


if __name__ == "__main__":
    main()
