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
- *rare words*: the registry's rare-word fingerprints (signet/provenance/rare_words.py:
  tf-idf with the document frequencies of the 100,000 stored filler paragraphs), cosine of
  the best pair of pieces.

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
filler paragraph (as the query) and a piece of 4/5 of ``--null-generations`` further generations
(half on the bench's prose prompts, half explaining a command, crate or package named after a
filler family), a generalised Pareto tail above the 1 - 1e-4 quantile, checked against the pairs
of the other 1/5 (held out); and the union bound for a registry of 100,000 generations
(signet/provenance/significance.py's p_value; a text under 40 words, too short for a verdict,
gets none; rare-word p-values with the service's floor, rare_words.MIN_VECTORS): the paraphrases
and synonym rewordings found by rare words alone, and by significance.combine of the watermark,
meaning and rare words (what taking rare words into /detect's verdict would give; /detect does
not), with the fitted null and with the one the service ships (rare_words.RARE_WORD_NULL); and
the same-prompt answers, human texts and calibration paragraphs flagged against all the
generations, with and without the floor.

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
import random
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
from bench.rewording import reword
from signet.api.auth import DEVELOPMENT_CALLER
from signet.api.detect.protocol import DetectRequest
from signet.api.detect.service import detect
from signet.api.provenance.search import MIN_QUERY_WORDS, query_pieces, watermark_evidence
from signet.provenance import rare_words
from signet.provenance.fingerprint import pieces
from signet.provenance.rare_words import MIN_VECTORS, RARE_WORD_NULL
from signet.provenance.significance import CALIBRATED_NULL, Outcome, SimilarityNull, combine, p_value, smallest_p_value

GOAL = 0.90
STORE_RECORDS = 100_000
NGRAM_WORDS = 5
_WORD = re.compile(r"[a-z0-9]+")
_TERM = re.compile(r"[a-z][a-z0-9'-]+")


def ngrams(text: str) -> set[str]:
    words = _WORD.findall(text.lower())
    return {" ".join(words[start : start + NGRAM_WORDS]) for start in range(len(words) - NGRAM_WORDS + 1)}


class RareWords:
    """The registry's rare-word fingerprints (signet/provenance/rare_words.py), compared."""

    def __init__(self) -> None:
        self._records: list[str] | None = None
        self._record_matrix = None

    @staticmethod
    def matrix(texts: list[str]) -> scipy.sparse.csr_matrix:
        return rare_words.fingerprints(texts)

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


def pair_cosines(rare: RareWords, documents: list[str], generations: list[str]) -> tuple[np.ndarray, int, int]:
    """The rare-word cosines above 0.1 of every (documentation paragraph, generation piece)
    pair, largest first; the number of pairs; and of pieces."""
    records = rare.matrix([piece for text in generations for piece in pieces(text)]).T.tocsc()
    high, total = [], 0
    for start in range(0, len(documents), 5000):
        scores = (rare.matrix(documents[start : start + 5000]) @ records).toarray()
        total += scores.size
        high.append(scores[scores > 0.1])
    return np.sort(np.concatenate(high))[::-1], total, records.shape[1]


Tail = tuple[np.ndarray, int, int]  # pair_cosines' answer
LEVELS = (0.25, 0.3, 0.35)


def fit_tail(tails: list[Tail]) -> SimilarityNull:
    """A generalised Pareto above the pairs' 1 - 1e-4 quantile (a shape below 0 raised to 0, as
    significance.py does), fitted on the pairs of ``tails`` together."""
    tail = np.sort(np.concatenate([values for values, _, _ in tails]))[::-1]
    total = sum(count for _, count, _ in tails)
    threshold = float(tail[int(total * 1e-4)])
    shape, _, scale = scipy.stats.genpareto.fit(tail[tail > threshold] - threshold, floc=0)
    return SimilarityNull(threshold=threshold, tail_fraction=1e-4, shape=max(0.0, float(shape)), scale=float(scale))


def generation_null(rare: RareWords, documents: list[str], generations: list[str]) -> tuple[SimilarityNull, float]:
    """The service's rare-word null: fitted on the pairs of all ``generations``, its tail then
    raised by the largest factor by which a fit on four fifths of them underestimated the fifth
    left out (five folds, at LEVELS); and the pieces per generation. Prints each step."""
    folds = [pair_cosines(rare, documents, generations[fold::5]) for fold in range(5)]
    print(
        "| fold left out | pairs | fit on the others | "
        + " | ".join(f"P(S >= {level}) left out / fit" for level in LEVELS)
        + " |"
    )
    print("|---" * (3 + len(LEVELS)) + "|")
    factor = 1.0
    for fold, (values, total, _) in enumerate(folds):
        null = fit_tail(folds[:fold] + folds[fold + 1 :])
        cells = []
        for level in LEVELS:
            observed = np.sum(values >= level) / total
            factor = max(factor, observed / null.exceedance(level))
            cells.append(f"{observed:.2e} / {null.exceedance(level):.2e}")
        fitted = f"u {null.threshold:.4f}, shape {null.shape:.4f}, scale {null.scale:.4f}"
        print(f"| {fold} | {total:,} | {fitted} | " + " | ".join(cells) + " |")
    whole = fit_tail(folds)
    total = sum(count for _, count, _ in folds)
    largest = max(float(values[0]) for values, _, _ in folds)
    print(
        f"\nAll {total:,} pairs ({len(documents):,} documentation paragraphs x pieces of {len(generations):,} "
        f"generations; the largest {largest:.3f}): {whole}; the tail raised {factor:.2f}x.\n"
    )
    null = SimilarityNull(whole.threshold, whole.tail_fraction * factor, whole.shape, whole.scale)
    return null, sum(count for _, _, count in folds) / len(generations)


def cosine_needed(null: SimilarityNull, comparisons: int) -> float:
    """The cosine whose p-value (significance.p_value) is alpha / 2 after ``comparisons``."""
    exceedance = ALPHA / 2 / comparisons
    if null.shape == 0.0:
        return null.threshold + null.scale * math.log(null.tail_fraction / exceedance)
    return null.threshold + null.scale / null.shape * ((null.tail_fraction / exceedance) ** null.shape - 1)


def best_matches(rare: RareWords, queries: list[str], records: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Each query's best rare-word cosine among ``records`` over the pieces /detect searches, and
    how many pieces those are (q)."""
    record_matrix = rare.matrix([piece for text in records for piece in pieces(text)]).T.tocsc()
    best, searched = [], []
    for query in queries:
        cut = query_pieces(query)[0]
        best.append(float((rare.matrix(cut) @ record_matrix).toarray().max()))
        searched.append(len(cut))
    return np.array(best), np.array(searched)


def rare_word_p_values(
    null: SimilarityNull, best: np.ndarray, searched: np.ndarray, queries: list[str], registry_pieces: int
) -> np.ndarray:
    """Each best match as a p-value in a registry of ``registry_pieces`` pieces: the union bound
    over q x N comparisons (significance.py). A text too short for a verdict in /detect (under
    MIN_QUERY_WORDS words) gets 1."""
    return np.array(
        [
            1.0 if len(query.split()) < MIN_QUERY_WORDS else p_value(float(value), int(q) * registry_pieces, null)
            for value, q, query in zip(best, searched, queries, strict=True)
        ]
    )


def combined_found(
    null: SimilarityNull,
    watermark: np.ndarray,
    meaning: np.ndarray,
    rare: np.ndarray,
    searched: np.ndarray,
    queries: list[str],
    registry_pieces: int,
) -> np.ndarray:
    """Whether significance.combine flags each query given its best similarities, in a registry
    of ``registry_pieces`` pieces, with rare words combined (with the floor the service's
    rare-word p-values have): what taking them into /detect's verdict would give, which /detect
    does not do (api/provenance/search.py says why)."""
    flagged = []
    for w, m, r, q, query in zip(watermark, meaning, rare, searched, queries, strict=True):
        comparisons, rare_comparisons = int(q) * registry_pieces, int(q) * max(registry_pieces, MIN_VECTORS)
        outcomes = [
            Outcome("meaning", p_value(float(m), comparisons), smallest_p_value(comparisons)),
            Outcome("rare_words", p_value(float(r), rare_comparisons, null), smallest_p_value(rare_comparisons, null)),
        ]
        if len(query.split()) < MIN_QUERY_WORDS:
            outcomes = [Outcome(outcome.name, 1.0, 1.0) for outcome in outcomes]
        flagged.append(combine(float(w), outcomes, ALPHA).decided_by is not None)
    return np.array(flagged)


def print_generation_null(
    state, rare: RareWords, fillers: list[dict], made: dict, watermark: np.ndarray, human: list[str]
) -> None:
    """Rare words as a test, with a null of documentation against generations (made["null"])."""
    stored, calibration = split(fillers)
    print("\n### Rare words against a null of documentation and generations\n")
    null, pieces_per_generation = generation_null(rare, [fillers[index]["text"] for index in stored], made["null"])
    registry_pieces = round(STORE_RECORDS * pieces_per_generation)  # a registry of STORE_RECORDS generations
    floored = max(registry_pieces, MIN_VECTORS)  # as the service counts it for rare words
    texts, paraphrased = made[KEY_IDS[0]]
    records = made["null"] + texts
    print(f"{STORE_RECORDS:,} generations hold {registry_pieces:,} pieces (rare_words.MIN_VECTORS: {MIN_VECTORS:,}).\n")
    print(f"This null: {null}\n\nThe service's: {RARE_WORD_NULL}\n")
    print(
        f"A registry of {STORE_RECORDS:,} generations holds {registry_pieces:,} pieces; at alpha / 2 a query of "
        f"1 piece needs a cosine of {cosine_needed(null, registry_pieces):.3f}, of 2 pieces "
        f"{cosine_needed(null, 2 * registry_pieces):.3f}.\n"
    )
    models = (null, RARE_WORD_NULL)
    print(f"| texts, p-values for {STORE_RECORDS:,} generations | this null | the service's null |")
    print("|---|---|---|")
    rng = random.Random(7)  # bench/provenance_quality.py's rewording, the same seed
    reworded = [reword(text, rng) for text in texts]
    for name, queries, evidence in (
        ("paraphrased by the model", paraphrased, watermark),
        ("reordered, synonyms (bench/rewording.py)", reworded, watermark_p_values(state, reworded)),
    ):
        best, searched = best_matches(rare, queries, texts)
        meaning = best_similarities(state, queries, texts, 120).max(axis=1)
        found = [rare_word_p_values(model, best, searched, queries, floored) < ALPHA / 2 for model in models]
        combined = [
            combined_found(model, evidence, meaning, best, searched, queries, registry_pieces).mean()
            for model in models
        ]
        print(f"| {name}: by rare words at alpha / 2 | {found[0].mean():.3f} | {found[1].mean():.3f} |")
        print(f"| {name}: by the watermark and rare words (combine) | {combined[0]:.3f} | {combined[1]:.3f} |")
        print(f"| {name}: by the watermark alone at alpha | {np.mean(evidence < ALPHA):.3f} | |")
    # False positives: with p-values for a registry of STORE_RECORDS generations (the service
    # never counts fewer, rare_words.MIN_VECTORS), and for the registry actually searched
    searched_pieces = sum(len(pieces(text)) for text in records)
    for name, queries in (
        ("the model's other answers to the same prompts", made["others"]),
        ("human texts", human),
        ("calibration paragraphs", [fillers[index]["text"] for index in calibration]),
    ):
        values, count = best_matches(rare, queries, records)
        for size, label in ((floored, f"{STORE_RECORDS:,}"), (searched_pieces, "the searched")):
            flagged = [(rare_word_p_values(model, values, count, queries, size) < ALPHA / 2).sum() for model in models]
            print(
                f"| {name}, against the {len(records):,} generations, p-values for {label} generations | "
                f"{flagged[0]} of {len(queries)} | {flagged[1]} of {len(queries)} |"
            )


def print_headroom(state, rare: RareWords, fillers: list[dict], made: dict, caught: np.ndarray) -> None:
    """The threshold-free table: per kind of evidence, the bar for GOAL and what else clears it."""
    texts, paraphrased = made[KEY_IDS[0]]
    others, count = made["others"], len(texts)
    human, kin = human_texts()
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
    parser.add_argument("--null-only", action="store_true", help="the rare-word null section alone")
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
        human, _ = human_texts()
        watermark = watermark_p_values(state, paraphrased)
        rare = RareWords()
        if not arguments.null_only:
            print_headroom(state, rare, fillers, made, watermark < ALPHA / 2)
        if "null" in made:
            print_generation_null(state, rare, fillers, made, watermark, human)


def number(value: float) -> str:
    """A count of 5-grams as a count, a cosine to 3 places."""
    return f"{value:g}" if float(value).is_integer() else f"{value:.3f}"


if __name__ == "__main__":
    main()
