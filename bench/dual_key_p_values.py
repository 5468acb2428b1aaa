"""vLLM's dual-key Gumbel p-value against the exact one, as a markdown table.

    .venv/bin/python -m bench.dual_key_p_values [--alpha 0.1]

For each count T and each target p-value, finds the score sum whose exact p-value
(``WeightedGammaNull``) is the target, then asks vLLM's ``DualKeyGumbelWatermarkDetector``
for its p-value of the same sum: a Gamma with the sum's mean and variance. Without vLLM
installed its formula is evaluated here instead (``gammaincc(T / v, s / v)``, v = (1 -
alpha)^2 + alpha^2), which is what vLLM computes for alpha outside {0, 0.5, 1}.
"""

from __future__ import annotations

import argparse

import numpy as np
from scipy.special import gammaincc

from signet.watermark.weighted_gamma import WeightedGammaNull

COUNTS = (10, 25, 100, 1_000)
TARGETS = (1e-2, 1e-6, 1e-20, 1e-100)
BISECTION_STEPS = 80


def score_at(null: WeightedGammaNull, count: int, target: float) -> float:
    """The score sum whose exact p-value is ``target``, by bisection on log p."""
    low, high = 0.0, 3.0 * count + 1_000.0
    for _ in range(BISECTION_STEPS):
        middle = 0.5 * (low + high)
        if null.log_survival(np.array([middle]), np.array([count]))[0] > np.log(target):
            low = middle
        else:
            high = middle
    return 0.5 * (low + high)


def vllm_p_value(alpha: float):
    """vLLM's own ``_get_p_value`` when vLLM is installed, else its formula."""
    try:
        from vllm.v1.watermarking.gumbel import DualKeyGumbelWatermarkDetector
    except ImportError:
        variance = (1 - alpha) ** 2 + alpha**2
        return lambda score, count: float(gammaincc(count / variance, score / variance))
    return DualKeyGumbelWatermarkDetector(0, alpha=alpha)._get_p_value


def table(alpha: float) -> str:
    null = WeightedGammaNull(alpha)
    vllm = vllm_p_value(alpha)
    lines = ["| T | score | exact p | vLLM p | vLLM / exact |", "|---:|---:|---:|---:|---:|"]
    for count in COUNTS:
        for target in TARGETS:
            score = score_at(null, count, target)
            exact = float(null.p_values(np.array([score]), np.array([count]))[0])
            approximate = vllm(score, count)
            lines.append(f"| {count} | {score:.2f} | {exact:.3e} | {approximate:.3e} | {approximate / exact:.3g} |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--alpha", type=float, default=0.1, help="key B's probability and weight (vLLM's default 0.1)")
    arguments = parser.parse_args()
    print(f"alpha = {arguments.alpha}\n")
    print(table(arguments.alpha))


if __name__ == "__main__":
    main()
