"""Provenance against rewording: true positives of the watermark, of the registry, and of
both combined; false positives on human text against a registry of 100,000 records.

    .venv/bin/python -m bench.provenance_quality [--generations 100] [--tokens 200]

1. The registry (a SqliteStore, as embedded mode keeps it) gets the 100,000 filler records
   of bench/provenance_calibration.py (paragraphs of documentation, none in any test set),
   then each generation below, fingerprinted as the recorder fingerprints it. The fillers
   stand in for generations by meaning only: they carry no rare words, since documentation
   shares its jargon with documentation as no generation does with it (the rare-word null is
   fitted on generations, bench/provenance_headroom.py). For rare words they only add to the
   comparisons counted, which can only raise p-values.
2. ``--generations`` watermarked completions with ``kgw-lefthash`` (the scheme whose
   paraphrase rate docs/DETECTION.md measured highest, 0.68–0.78), as
   bench/detection_quality.py makes them: 25 topics x 4 templates, ``--tokens`` tokens,
   temperature 1) on the embedded vLLM engine.
3. Two rewordings of each:
   - *paraphrased by the model*: the served model, unwatermarked, asked to rewrite it in
     its own words (temperature 0.7), as docs/DETECTION.md's paraphrase row;
   - *reordered, synonyms*: bench/rewording.py, no model: sentences shuffled, common
     phrases swapped, 80% of content words replaced by a thesaurus synonym.
4. Each rewording goes through the service's own ``detect`` with ``provenance: true`` at
   alpha = 1e-3 (the /detect code path). Counted: the watermark alone (its verdict at
   alpha), the registry alone (its best match is the right generation, p < alpha), and
   combined (``combined.verdict``: each test at alpha / 2, or the watermark at alpha where
   the registry cannot decide).
5. The 430 human texts of tests/data/corpus the same way: any flag is a false positive.
   And the hardest null offline: ``--generations`` unwatermarked answers of the model to the
   same prompts, other samples (other seeds), never recorded: same topic, same model, but
   rewordings of no record. A registry match for one of them is a false "rewording of X".
6. Sentence- or paragraph-level pieces: each generation, rewording and human text cut into
   pieces of at most 30 words (about a sentence) or 120 (the service's), against the
   generations alone. Per granularity: the share of rewordings whose similarity to their own
   generation beats every human text's best similarity to any generation (a threshold-free
   measure: the null differs between granularities, so their p-values are not compared).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import statistics
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from bench.detection_quality import KEYS, corpus_texts, generate_all, make_state, paraphrase_prompt, prompts
from bench.provenance_calibration import split
from bench.provenance_corpus import filler_vectors, load_fillers
from bench.rewording import changed_token_fraction, reword
from signet.api.auth import DEVELOPMENT_CALLER
from signet.api.detect.protocol import DetectRequest
from signet.api.detect.service import detect
from signet.api.embedding import embed_now
from signet.api.provenance.recorder import DEVELOPMENT_TENANT
from signet.api.provenance.search import watermark_evidence
from signet.provenance import rare_words
from signet.provenance.fingerprint import FINGERPRINT_DIMENSION, pieces
from signet.provenance.significance import Outcome, combine, p_value, smallest_p_value
from signet.registry.sqlite import SqliteStore
from signet.registry.store import GenerationRecord

ALPHA = 1e-3
KEY_IDS = ("kgw-lefthash",)
YEAR = 365 * 86_400.0


def fill(store: SqliteStore) -> int:
    fillers = load_fillers()
    vectors = filler_vectors(fillers)
    stored, _ = split(fillers)
    now = time.time()
    for index in stored:
        vector = vectors[index : index + 1].astype(np.float32)
        store.add(GenerationRecord(f"filler-{index}", DEVELOPMENT_TENANT, vector, None, now, now + YEAR))
    return len(stored)


def record(state, store: SqliteStore, generation_id: str, text: str, key_id: str) -> None:
    now = time.time()
    cut = pieces(text)
    vectors, fingerprint = embed_now(state, cut), rare_words.fingerprints(cut)
    store.add(GenerationRecord(generation_id, DEVELOPMENT_TENANT, vectors, key_id, now, now + YEAR, None, fingerprint))


SIZES = (1_000, 10_000)  # registry sizes the p-value of the true match is also computed for
# rewording -> (watermark p, similarity, pieces, decides, rare-word similarity)
AT_SIZE: dict[str, list[tuple[float, float, int, bool, float]]] = {}
HUMAN: list[tuple[float, float, int]] = []  # each human text's (watermark p, best similarity, pieces)


def judge(
    state, text: str, key_id: str, generation_id: str | None, label: str | None = None
) -> tuple[bool, bool, bool, float]:
    """(watermark flagged, registry found the generation, combined flagged, best similarity)."""
    response = detect(state, DetectRequest(text=text, key_id=key_id, alpha=ALPHA, provenance=True), DEVELOPMENT_CALLER)
    report = response.provenance
    best = report.matches[0] if report.matches else None
    found = best is not None and report.verdict == "match"
    watermark_p = watermark_evidence(response)
    if label == "human":
        HUMAN.append((watermark_p, best.similarity if best else 0.0, report.num_pieces))
    if generation_id is not None:
        found = found and best.generation_id == generation_id
        own = [match for match in report.matches if match.generation_id == generation_id]
        decides = report.verdict != "insufficient_evidence"
        similarity, rare = (own[0].similarity, own[0].rare_word_similarity) if own else (0.0, 0.0)
        AT_SIZE.setdefault(label, []).append((watermark_p, similarity, report.num_pieces, decides, rare))
    return response.watermarked, found, response.combined.verdict == "generated_here", best.similarity if best else 0.0


def size_rows() -> list[str]:
    """Registry and combined rates had the registry held N vectors: the true match's p-value
    is min(1, q N exceedance(s)) at that N, from the same similarity, combined as /detect
    combines them at that N."""
    rows = []
    for label, outcomes in AT_SIZE.items():
        for size in SIZES:
            registry = [decides and p_value(s, q * size) < ALPHA for _, s, q, decides, _ in outcomes]
            combined = [
                combine(w, outcomes_at(s, q, size, decides), ALPHA).decided_by is not None
                for w, s, q, decides, _ in outcomes
            ]
            rows.append(f"| {label} | {size:,} | {np.mean(registry):.2f} | {np.mean(combined):.2f} |")
    return rows


def outcomes_at(similarity: float, pieces_searched: int, size: int, decides: bool) -> list[Outcome]:
    """The registry's test by meaning for a match of this similarity, a query of
    ``pieces_searched`` pieces and a registry of ``size`` vectors, as /detect combines it (rare
    words are reported, not combined: api/provenance/search.py)."""
    if not decides:
        return [Outcome("meaning", 1.0, 1.0)]
    comparisons = pieces_searched * size
    return [Outcome("meaning", p_value(similarity, comparisons), smallest_p_value(comparisons))]


def rates(outcomes: list[tuple[bool, bool, bool, float]]) -> str:
    count = len(outcomes)
    watermark, registry, combined = (sum(outcome[index] for outcome in outcomes) / count for index in range(3))
    similarity = statistics.median(outcome[3] for outcome in outcomes)
    return f"{watermark:.2f} | {registry:.2f} | {combined:.2f} | {similarity:.3f}"


async def generate_texts(
    state, model_dir: Path, keys_file: Path, generations: int, tokens: int, null_prompts: Sequence[str] = ()
) -> dict:
    """Every text the engine makes, before anything else runs: the engine starts in a process
    that has not used torch yet and has the cores to itself (started after the embedding model
    had run, its worker ran on one core, and 300 generations took over 17 minutes).
    ``null_prompts``: generations to fit a null on (bench/provenance_headroom.py), in ``null``."""
    from signet.engine.vllm_engine import EngineOptions, VllmEngine

    engine = VllmEngine.start(model_dir, keys_file, EngineOptions(2048, 0.25, 32, False))
    tokenizer = state.tokenizer
    made: dict = {}
    try:
        for key_id in KEY_IDS:
            completions = await generate_all(engine, tokenizer, prompts(generations), tokens, key_id, ignore_eos=True)
            texts = [completion.text for completion in completions]
            paraphrased = await generate_all(
                engine, tokenizer, [paraphrase_prompt(text) for text in texts], tokens, None, temperature=0.7
            )
            made[key_id] = (texts, [completion.text for completion in paraphrased])
        others = await generate_all(
            engine, tokenizer, prompts(generations), tokens, None, ignore_eos=True, seed_offset=10_000
        )
        made["others"] = [completion.text for completion in others]
        if null_prompts:
            null = await generate_all(
                engine, tokenizer, list(null_prompts), tokens, KEY_IDS[0], ignore_eos=True, seed_offset=50_000
            )
            made["null"] = [completion.text for completion in null]
    finally:
        engine.shutdown()
    return made


def true_positives(state, store, made: dict) -> None:
    rng = random.Random(7)
    tokenizer = state.tokenizer
    print("| key | rewording | tokens changed | watermark | registry | combined | median similarity |")
    print("|---|---|---|---|---|---|---|")
    for key_id in KEY_IDS:
        texts, paraphrased = made[key_id]
        ids = [f"gen-{key_id}-{index}" for index in range(len(texts))]
        for generation_id, text in zip(ids, texts, strict=True):
            record(state, store, generation_id, text, key_id)
        rewordings = {
            "none (the generation itself)": texts,
            "paraphrased by the model": paraphrased,
            "reordered, synonyms": [reword(text, rng) for text in texts],
        }
        for name, reworded in rewordings.items():
            changed = statistics.mean(
                changed_token_fraction(tokenizer.encode(original), tokenizer.encode(other))
                for original, other in zip(texts, reworded, strict=True)
            )
            outcomes = [
                judge(state, other, key_id, generation_id, name)
                for other, generation_id in zip(reworded, ids, strict=True)
            ]
            print(f"| {key_id} | {name} | {changed:.2f} | {rates(outcomes)} |", flush=True)
        granularity_rows(state, key_id, texts, {name: rewordings[name] for name in list(rewordings)[1:]})
    outcomes = [judge(state, text, KEY_IDS[0], None) for text in made["others"]]
    flagged = [sum(outcome[index] for outcome in outcomes) for index in range(3)]
    SAME_PROMPT.append(
        f"| same prompt, another sample (not recorded) | {len(outcomes)} | {flagged[0]} | {flagged[1]} | "
        f"{flagged[2]} | {max(outcome[3] for outcome in outcomes):.3f} |"
    )


SAME_PROMPT: list[str] = []
GRANULARITY: list[str] = []  # rows of the sentence-or-paragraph table, printed at the end


def best_similarities(state, queries: list[str], records: list[str], piece_words: int) -> np.ndarray:
    """[queries, records]: each pair's best similarity over their pieces."""
    cut = [pieces(text, piece_words) for text in queries + records]
    vectors = embed_now(state, [piece for found in cut for piece in found])
    owners = np.repeat(np.arange(len(cut)), [len(found) for found in cut])
    query_rows, record_rows = owners < len(queries), owners >= len(queries)
    pair = vectors[query_rows] @ vectors[record_rows].T
    best = np.full((len(queries), len(records)), -1.0, np.float32)
    np.maximum.at(best, (owners[query_rows][:, None], owners[record_rows][None, :] - len(queries)), pair)
    return best


def granularity_rows(state, key_id: str, texts: list[str], rewordings: dict[str, list[str]]) -> None:
    human = [text for group in corpus_texts().values() for text in group]
    for piece_words, label in ((30, "sentence (30 words)"), (120, "paragraph (120 words)")):
        human_best = float(best_similarities(state, human, texts, piece_words).max())
        for name, reworded in rewordings.items():
            own = np.diagonal(best_similarities(state, reworded, texts, piece_words))
            GRANULARITY.append(
                f"| {key_id} | {name} | {label} | {np.median(own):.3f} | {human_best:.3f} | "
                f"{(own > human_best).mean():.2f} |"
            )


def false_positives(state) -> None:
    texts = [text for group in corpus_texts().values() for text in group]
    for key_id in KEY_IDS:
        outcomes = [judge(state, text, key_id, None, "human") for text in texts]
        flagged = [sum(outcome[index] for outcome in outcomes) for index in range(3)]
        print(
            f"| {key_id} | {len(texts)} | {flagged[0]} | {flagged[1]} | {flagged[2]} | "
            f"{max(outcome[3] for outcome in outcomes):.3f} |",
            flush=True,
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--generations", type=int, default=100)
    parser.add_argument("--tokens", type=int, default=200)
    parser.add_argument("--skip-human", action="store_true", help="leave out the human texts' table (4 minutes here)")
    parser.add_argument("--texts", type=Path, help="take the texts from an earlier run's --save file")
    parser.add_argument(
        "--save", type=Path, help="write the texts and each rewording's (watermark p, similarity, pieces) here, as JSON"
    )
    arguments = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        keys_file = Path(folder) / "keys.json"
        keys_file.write_text(json.dumps(KEYS))
        state, model_dir = make_state(keys_file)
        began = time.perf_counter()
        if arguments.texts:  # an earlier run's --save: the same texts, without the engine
            made = json.loads(arguments.texts.read_text())["texts"]
        else:
            made = asyncio.run(generate_texts(state, model_dir, keys_file, arguments.generations, arguments.tokens))
        print(
            f"{arguments.generations} generations, paraphrases and other samples in {time.perf_counter() - began:.0f} s"
        )
        state.detection_cache = None
        store = state.generation_store = SqliteStore(Path(folder) / "registry.sqlite3", FINGERPRINT_DIMENSION)
        began = time.perf_counter()
        print(f"{fill(store):,} filler records in {time.perf_counter() - began:.0f} s\n")
        if not arguments.skip_human:
            print(f"### False positives at alpha = {ALPHA:g}: human texts against the registry\n")
            print("| key | texts | watermark | registry | combined | largest similarity |")
            print("|---|---|---|---|---|---|")
            false_positives(state)
        print(f"\n### True positives at alpha = {ALPHA:g} ({arguments.generations} generations per key)\n")
        true_positives(state, store, made)
        print(f"\n### The same prompts answered again, never recorded (alpha = {ALPHA:g}; watermark: {KEY_IDS[0]})\n")
        print("| texts | count | watermark | registry | combined | largest similarity |")
        print("|---|---|---|---|---|---|")
        print("\n".join(SAME_PROMPT))
        print("\n### The same rewordings had the registry held fewer vectors\n")
        print("| rewording | vectors | registry | combined |")
        print("|---|---|---|---|")
        print("\n".join(size_rows()))
        print("\n### Sentence or paragraph pieces: rewordings against the generations alone\n")
        print(
            "| key | rewording | pieces | median similarity to its generation | best human similarity | share above |"
        )
        print("|---|---|---|---|---|---|")
        print("\n".join(GRANULARITY))
        if arguments.save:
            arguments.save.write_text(json.dumps({"texts": made, "outcomes": AT_SIZE, "human": HUMAN}, indent=1))


if __name__ == "__main__":
    main()
