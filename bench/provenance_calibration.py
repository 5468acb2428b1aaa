"""Fit and check the provenance test's null model (signet/provenance/significance.py).

1. **Fit.** 100,000 filler paragraphs (bench/provenance_corpus.py; template pages,
   near-copies and paragraphs quoting a test text left out: ``provenance_corpus.distinct``)
   make the store; 2,000 other fillers are the calibration queries. Every (query, stored)
   pair from different document families (a man page's command, a Rust book or crate, a
   Python package: ``provenance_corpus.family``) is an unrelated pair: about 2 x 10^8. Their similarities above the
   1 - 10^-4 quantile are fitted with a generalised Pareto distribution (scipy's
   ``genpareto.fit``, location fixed at the threshold), a shape below 0 raised to 0.
2. **Check.** The 430 human texts of ``tests/data/corpus`` (none of them a filler, none
   from a filler's file) are searched, piece by piece as ``/detect`` searches them,
   against the first 10,000 and all 100,000 fillers. Each gets the p-value /detect would
   give; the share below each alpha is compared with alpha.

    .venv/bin/python -m bench.provenance_calibration

Prints the fitted constants (copied into significance.py by hand, with this command) and
the check's table.
"""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from scipy import stats

from bench.provenance_corpus import cache_dir, distinct, family, filler_vectors, load_fillers
from signet.provenance.significance import CALIBRATED_NULL, SimilarityNull

STORE_SIZE = 100_000
CALIBRATION_QUERIES = 2_000
TAIL_FRACTION = 1e-4
CORPUS = Path("tests/data/corpus")
ALPHAS = (1e-1, 1e-2, 1e-3)
BLOCK = 20_000


def split(fillers: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """Store and calibration-query indices: a fixed permutation of the distinct fillers."""
    kept = np.flatnonzero(distinct(fillers))
    order = np.random.default_rng(0).permutation(kept)
    if len(order) < STORE_SIZE + CALIBRATION_QUERIES:
        raise SystemExit(f"only {len(order)} fillers; {STORE_SIZE + CALIBRATION_QUERIES} are needed")
    return order[:STORE_SIZE], order[STORE_SIZE : STORE_SIZE + CALIBRATION_QUERIES]


def unrelated_similarities(queries: np.ndarray, query_sources: list[str], store: np.ndarray, store_sources: list[str]):
    """Every (query, stored) similarity from different families, as float32, and the pair count."""
    names = {name: index for index, name in enumerate(sorted(set(query_sources) | set(store_sources)))}
    query_ids = np.array([names[name] for name in query_sources])
    store_ids = np.array([names[name] for name in store_sources])
    kept = []
    total = 0
    for start in range(0, len(store), BLOCK):
        block = store[start : start + BLOCK].astype(np.float32)
        similarities = queries.astype(np.float32) @ block.T
        unrelated = query_ids[:, None] != store_ids[None, start : start + BLOCK]
        values = similarities[unrelated]
        total += values.size
        kept.append(values[values > 0.4])  # far below any threshold fitted; keeps memory small
    return np.concatenate(kept), total


def fit(similarities: np.ndarray, total: int) -> SimilarityNull:
    exceedances = int(total * TAIL_FRACTION)
    top = np.sort(similarities)[-exceedances - 1 :]
    threshold = float(top[0])
    shape, _, scale = stats.genpareto.fit(top[1:] - threshold, floc=0.0)
    print(f"fitted on {total:,} pairs: threshold {threshold:.4f}, shape {shape:.4f}, scale {scale:.5f}")
    return SimilarityNull(threshold, exceedances / total, max(0.0, float(shape)), float(scale))


def tail_check(null: SimilarityNull, similarities: np.ndarray, total: int) -> None:
    """The fitted exceedance against the empirical one, where the data reach."""
    print("| similarity | empirical P(S >= s) | model |")
    print("|---|---|---|")
    for similarity in (0.5, 0.6, 0.65, 0.7, 0.75, 0.8, 0.85):
        empirical = float((similarities >= similarity).sum()) / total
        print(f"| {similarity:.3f} | {empirical:.2e} | {null.exceedance(float(similarity)):.2e} |")


def human_queries() -> list[np.ndarray]:
    from signet.api.provenance.search import query_pieces
    from signet.engine.embeddings import SentenceEmbedder

    embedder = SentenceEmbedder.load()
    texts = [
        json.loads(line)["text"] for name in ("human.jsonl", "repetitive.jsonl") for line in (CORPUS / name).open()
    ]
    return [embedder.embed(query_pieces(text)[0]) for text in texts]


def false_positive_table(null: SimilarityNull, queries: list[np.ndarray], store: np.ndarray) -> None:
    print(f"\n{len(queries)} human texts searched; share with p < alpha:")
    print("| records | " + " | ".join(f"alpha {alpha:g}" for alpha in ALPHAS) + " | largest similarity |")
    print("|---|" + "---|" * (len(ALPHAS) + 1))
    for size in (10_000, len(store)):
        part = store[:size].astype(np.float32)
        best = np.array([float((query @ part.T).max()) for query in queries])
        p_values = np.array(
            [min(1.0, len(query) * size * null.exceedance(value)) for query, value in zip(queries, best, strict=True)]
        )
        shares = " | ".join(f"{int((p_values < alpha).sum())} ({(p_values < alpha).mean():.4f})" for alpha in ALPHAS)
        print(f"| {size:,} | {shares} | {best.max():.3f} |")


def main() -> None:
    fillers = load_fillers()
    vectors = filler_vectors(fillers)
    stored, calibration = split(fillers)
    sources = [family(filler["source"]) for filler in fillers]
    began = time.perf_counter()
    similarities, total = unrelated_similarities(
        vectors[calibration], [sources[i] for i in calibration], vectors[stored], [sources[i] for i in stored]
    )
    print(f"{total:,} unrelated pairs in {time.perf_counter() - began:.0f} s")
    null = fit(similarities, total)
    print(
        f"SimilarityNull(threshold={null.threshold:.4f}, tail_fraction={null.tail_fraction:.3g}, "
        f"shape={null.shape:.4f}, scale={null.scale:.5f})"
    )
    tail_check(null, similarities, total)
    (cache_dir() / "null.json").write_text(json.dumps(null.__dict__))
    queries = human_queries()
    print("\nwith the fitted null:")
    false_positive_table(null, queries, vectors[stored])
    if null != CALIBRATED_NULL:
        print("\nwith significance.py's CALIBRATED_NULL:")
        false_positive_table(CALIBRATED_NULL, queries, vectors[stored])


if __name__ == "__main__":
    main()
