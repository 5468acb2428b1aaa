"""Fit the calibrated risks on the labelled sets' fitting split, report them on the held-out split.

    PYTHONPATH=. .venv/bin/python -m bench.fit_risk            # fit, write, report
    PYTHONPATH=. .venv/bin/python -m bench.fit_risk --check    # refit and compare with the shipped files

Two risks (signet/scoring/risk.py):

- ``uncertainty``: P(the answer is wrong), from the answer's own logprobs
  (``answer_features``), fitted on the embedded model's answers to
  tests/data/scoring/questions.jsonl under three decodings (bench/risk_answers.py collects
  them). A question is in the held-out split when the SHA-256 of its id is 3 or 4 mod 5
  (40%), so its three answers are held out together.
- ``reference``: P(the text is not supported by its source), from the claim rules and word
  overlap (``reference_features``), fitted on tests/data/scoring/reference_answers.jsonl and
  reference_summaries.jsonl (bench/reference_sets.py), whose items carry their split (by
  source passage). Its features use no model output, so it holds for any served model.

Each is scikit-learn's ``LogisticRegression`` (L2, C = 1) over features standardised on the
fitting split; the fitted numbers go to service/signet/scoring/calibrations/<name>.json.
Reported on the held-out split: AUROC, ECE (10 equal-width bins) and the reliability
diagram, beside an isotonic recalibration of the same score (fitted on the fitting split)
for comparison; the diagrams go to docs/img/risk-<name>.png.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.isotonic import IsotonicRegression
from sklearn.linear_model import LogisticRegression

from bench.scoring_eval import RESULTS_DIR, read_jsonl
from harness import eval_sets
from signet.scoring.claims import check_against_source
from signet.scoring.evaluation import auroc, expected_calibration_error, reliability_bins
from signet.scoring.risk import ANSWER_FEATURES, REFERENCE_FEATURES, answer_features, reference_features
from signet.scoring.sentences import split_sentences

REPOSITORY = Path(__file__).resolve().parent.parent
CALIBRATIONS = REPOSITORY / "service" / "signet" / "scoring" / "calibrations"
IMAGES = REPOSITORY / "docs" / "img"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
FITTED_TEMPERATURES = (0.0, 1.0)


@dataclass
class LabelledSet:
    features: list[dict[str, float]]
    positives: np.ndarray  # True: wrong answer / unsupported text
    held_out: np.ndarray  # True: in the held-out split
    groups: list[str]  # a name per item, for the per-group tables


def held_out_question(question_id: str) -> bool:
    return int.from_bytes(hashlib.sha256(question_id.encode()).digest()[:8], "big") % 5 >= 3


def _method(answer: dict, method: str) -> dict:
    return next(score for score in answer["uncertainty"] if score["method"] == method)


def uncertainty_set() -> LabelledSet:
    rows = read_jsonl(RESULTS_DIR / "uncertainty_answers.jsonl")
    features = [
        answer_features(
            _method(row, "max_sequence_probability")["per_token"],
            _method(row, "mean_token_entropy")["per_token"],
            watermarked=row["decoding"].endswith("watermarked"),
            sampled=row["decoding"].startswith("sampled"),
        )
        for row in rows
    ]
    return LabelledSet(
        features,
        np.array([not row["correct"] for row in rows]),
        np.array([held_out_question(row["id"]) for row in rows]),
        [row["decoding"] for row in rows],
    )


def reference_set() -> LabelledSet:
    rows = [*eval_sets.load_reference_answers(), *eval_sets.load_reference_summaries()]
    kinds = ["answers"] * len(eval_sets.load_reference_answers()) + ["summaries"] * len(
        eval_sets.load_reference_summaries()
    )
    return LabelledSet(
        [reference_features(check_against_source(_sentences(row["text"]), row["source"])) for row in rows],
        np.array([row["label"] != "faithful" for row in rows]),
        np.array([row["split"] == "test" for row in rows]),
        kinds,
    )


def _sentences(text: str) -> list[str]:
    return [span.text for span in split_sentences(text)]


def fit(data: LabelledSet, names: tuple[str, ...]) -> dict:
    matrix = np.array([[item[name] for name in names] for item in data.features])
    fitting = matrix[~data.held_out]
    center = fitting.mean(axis=0)
    scale = fitting.std(axis=0)
    scale[scale == 0] = 1.0  # a feature constant on the fitting split gets weight 0 anyway
    model = LogisticRegression(C=1.0).fit((fitting - center) / scale, data.positives[~data.held_out])
    return {
        "features": list(names),
        "center": center.tolist(),
        "scale": scale.tolist(),
        "coefficients": model.coef_[0].tolist(),
        "intercept": float(model.intercept_[0]),
    }


def predict(fitted: dict, data: LabelledSet) -> np.ndarray:
    matrix = np.array([[item[name] for name in fitted["features"]] for item in data.features])
    score = fitted["intercept"] + ((matrix - fitted["center"]) / fitted["scale"]) @ np.array(fitted["coefficients"])
    return 1.0 / (1.0 + np.exp(-score))


def calibrated_ece(risk: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """The ECE that a perfectly calibrated forecast shows on these items, from sampling noise
    alone: outcomes drawn with the forecast's own probabilities (mean, 95th percentile). A
    measured ECE below the 95th percentile is no evidence of miscalibration."""
    generator = np.random.default_rng(0)
    values = [expected_calibration_error(risk, generator.uniform(size=risk.size) < risk) for _ in range(draws)]
    return float(np.mean(values)), float(np.quantile(values, 0.95))


def report(name: str, data: LabelledSet, risk: np.ndarray, baseline: str) -> tuple[str, list]:
    """The held-out table (overall and per group) and the diagrams' bins."""
    test = data.held_out
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0)
    isotonic.fit(risk[~test], data.positives[~test])
    recalibrated = isotonic.predict(risk)
    lines = [
        f"| {name}: held-out items | positives | AUROC | AUROC of {baseline} alone | ECE "
        "| ECE of a calibrated forecast: mean, 95% | ECE, isotonic on top |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    groups = ["all", *dict.fromkeys(data.groups)]
    alone = np.array([item[baseline] for item in data.features])
    for group in groups:
        chosen = test & (np.array(data.groups) == group if group != "all" else True)
        positives = data.positives[chosen]
        floor = calibrated_ece(risk[chosen])
        lines.append(
            f"| {group} | {int(positives.sum())} of {int(chosen.sum())} | {auroc(risk[chosen], positives):.3f} "
            f"| {auroc(alone[chosen], positives):.3f} | {expected_calibration_error(risk[chosen], positives):.3f} "
            f"| {floor[0]:.3f}, {floor[1]:.3f} "
            f"| {expected_calibration_error(recalibrated[chosen], positives):.3f} |"
        )
    diagrams = [
        ("logistic (shipped)", reliability_bins(risk[test], data.positives[test])),
        ("isotonic on top", reliability_bins(recalibrated[test], data.positives[test])),
    ]
    return "\n".join(lines), diagrams


def draw(name: str, diagrams: list, path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(4.5, 4.5), dpi=100)
    axes.plot([0, 1], [0, 1], color="grey", linestyle=":", label="perfect calibration")
    for (label, bins), marker in zip(diagrams, ("o", "s"), strict=True):
        predicted, observed, counts = zip(*bins, strict=True)
        axes.plot(predicted, observed, marker=marker, label=label)
        if marker == "o":
            for x, y, count in bins:
                axes.annotate(str(count), (x, y), textcoords="offset points", xytext=(4, -10), fontsize=7)
    axes.set_xlabel("predicted risk (mean in bin)")
    axes.set_ylabel("observed share of positives")
    axes.set_title(f"{name} risk, held-out split (counts per bin)", fontsize=10)
    axes.set_xlim(0, 1)
    axes.set_ylim(0, 1)
    axes.legend(loc="upper left", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, metadata={"Software": None})  # no version stamp: reruns give the same file
    plt.close(figure)


RISKS = {
    "uncertainty": {
        "data": uncertainty_set,
        "features": ANSWER_FEATURES,
        "baseline": "mean_negative_logprob",  # log perplexity: the best single method of docs/SCORING.md
        "predicts": "the answer is wrong",
        "model": EMBEDDED_MODEL,
        "temperatures": list(FITTED_TEMPERATURES),
        "fitted_on": "the embedded model's answers to the fitting split of tests/data/scoring/questions.jsonl, "
        "greedy, greedy watermarked and sampled watermarked at temperature 1 (bench/risk_answers.py)",
    },
    "reference": {
        "data": reference_set,
        "features": REFERENCE_FEATURES,
        "baseline": "novelty_mean",  # source_bigram_novelty, the method docs/SCORING.md recommended
        "predicts": "the text is not supported by its source",
        "model": None,
        "temperatures": None,
        "fitted_on": "the fitting split of tests/data/scoring/reference_answers.jsonl and "
        "reference_summaries.jsonl (bench/reference_sets.py)",
    },
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="refit and compare with the shipped files; write nothing")
    parser.add_argument("--risk", choices=sorted(RISKS), action="append", help="one risk (repeatable); default all")
    arguments = parser.parse_args()
    stale = []
    for name in arguments.risk or RISKS:
        spec = RISKS[name]
        data = spec["data"]()
        fitted = fit(data, spec["features"])
        shipped = {
            "predicts": spec["predicts"],
            "model": spec["model"],
            "temperatures": spec["temperatures"],
            "fitted_on": f"{spec['fitted_on']}: {int((~data.held_out).sum())} items, "
            f"{int(data.positives[~data.held_out].sum())} positive; bench/fit_risk.py",
            **fitted,
        }
        path = CALIBRATIONS / f"{name}.json"
        if arguments.check:
            current = json.loads(path.read_text())
            if not _same(current, shipped):
                stale.append(name)
            continue
        CALIBRATIONS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(shipped, indent=2) + "\n")
        table, diagrams = report(name, data, predict(fitted, data), spec["baseline"])
        draw(name, diagrams, IMAGES / f"risk-{name}.png")
        print(table, end="\n\n")
        print("| feature | coefficient (per standard deviation) |\n| --- | --- |")
        for feature, weight in zip(fitted["features"], fitted["coefficients"], strict=True):
            print(f"| {feature} | {weight:+.3f} |")
        print()
    if stale:
        sys.exit(f"shipped calibrations differ from a refit: {', '.join(stale)}; run bench.fit_risk")


def _same(current: dict, refit: dict) -> bool:
    """Equal, numbers to 1e-6 relative: a library's solver may differ in the last digits."""
    if current.keys() != refit.keys():
        return False
    for key, value in refit.items():
        if isinstance(value, list) and value and isinstance(value[0], float):
            if not np.allclose(current[key], value, rtol=1e-6, atol=1e-9):
                return False
        elif isinstance(value, float):
            if not np.isclose(current[key], value, rtol=1e-6, atol=1e-9):
                return False
        elif current[key] != value:
            return False
    return True


if __name__ == "__main__":
    main()
