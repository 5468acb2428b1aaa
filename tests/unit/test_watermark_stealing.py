"""bench/watermark_stealing.py's attacker, on a small vocabulary without an engine.

The bench's numbers in docs/SECURITY.md rest on two things checked here: its truth is the
detector's (so precision is measured against what /detect counts), and the attacker does
learn green lists when contexts repeat (so a 0% at width 4 is the scheme's doing, not a
broken attacker). Everything is seeded: the results are deterministic.
"""

from __future__ import annotations

import numpy as np

from bench.watermark_stealing import detect, pair_rows, rewrite, schemes, steal, true_green

VOCABULARY = np.arange(500, 540)  # 40 real token ids: every context repeats within a few thousand tokens


def _answers(scheme, count: int, length: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Answers from a fixed random unigram model, with the scheme's watermark when given one."""
    base = np.log(np.random.default_rng(0).dirichlet(np.full(len(VOCABULARY), 0.5)))
    answers = []
    for _ in range(count):
        tokens = [int(rng.choice(VOCABULARY))]
        for _ in range(length - 1):
            logits = base.copy()
            if scheme is not None:
                rows = np.array([[tokens[-1], token] for token in VOCABULARY])
                logits += scheme.parameters.delta * true_green(scheme, rows)
            probabilities = np.exp(logits - logits.max())
            tokens.append(int(rng.choice(VOCABULARY, p=probabilities / probabilities.sum())))
        answers.append(np.array(tokens))
    return answers


def test_the_truth_is_the_detectors():
    rng = np.random.default_rng(1)
    for scheme in schemes().values():
        width = scheme.parameters.context_width
        token_ids = rng.integers(0, 49_152, 300)
        flags = scheme.evidence(token_ids, ignore_repeated_ngrams=False).scores[width:] > 0
        assert np.array_equal(true_green(scheme, pair_rows([token_ids], width)), flags)


def test_the_attacker_learns_width_1_green_lists_where_contexts_repeat():
    scheme = schemes()["width1"]
    rng = np.random.default_rng(2)
    guesses = steal(_answers(scheme, 20, 200, rng), _answers(None, 20, 200, rng), 1, 0.25, 2.0)
    green = np.array([pair for pair, p in guesses.posterior.items() if p > 0.5])
    # Chance is 25%; 4,000 watermarked tokens over 40 contexts give most pairs many counts.
    assert len(green) >= 100
    assert true_green(scheme, green).mean() >= 0.8


def test_a_spoof_with_the_true_green_lists_is_flagged():
    # The edit itself works: with perfect guesses, plain text rewritten from any of 40
    # alternatives per position is flagged, while the plain text is not.
    scheme = schemes()["width1"]
    rng = np.random.default_rng(3)
    plain = _answers(None, 1, 200, rng)[0]
    rows = np.array([[c, t] for c in VOCABULARY for t in VOCABULARY])
    guesses = steal([], [], 1, 0.25, 2.0)
    guesses.posterior.update(
        {tuple(row): float(g) for row, g in zip(rows.tolist(), true_green(scheme, rows), strict=True)}
    )
    alternatives = np.tile(VOCABULARY, (len(plain), 1))
    spoofed, swaps = rewrite(guesses, plain.tolist(), alternatives, to_green=True)
    assert swaps > 0
    assert detect(scheme, plain.tolist()) > 1e-4
    assert detect(scheme, spoofed) < 1e-4
