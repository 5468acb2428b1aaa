"""Fit the calibrated risks on the labelled sets' fitting split, report them on the held-out split.

    PYTHONPATH=. .venv/bin/python -m bench.fit_risk            # fit, write, report
    PYTHONPATH=. .venv/bin/python -m bench.fit_risk --check    # refit and compare with the shipped files

Two risks (signet/scoring/risk.py):

- ``uncertainty``: P(the answer is wrong), from the answer's own logprobs, over the whole
  answer and over its answer-bearing tokens (``answer_features``), fitted on the embedded
  model's answers to tests/data/scoring/questions.jsonl and risk_questions.jsonl under three
  decodings (bench/risk_answers.py collects them). A question is in the held-out split when
  the SHA-256 of its id is 3 or 4 mod 5 (40%), so its three answers are held out together.
- ``reference``: P(the text is not supported by its source), from the claim rules and word
  overlap (``reference_features``), fitted on tests/data/scoring/reference_answers.jsonl and
  reference_summaries.jsonl (bench/reference_sets.py), whose items carry their split (by
  source passage). Its features use no model output, so it holds for any served model.

Each is scikit-learn's ``LogisticRegression`` (L2) over features standardised on the fitting
split, its C chosen by 5-fold cross-validated log loss (folds by question or by source
passage), then an ``IsotonicRegression`` fitted on the logistic model's out-of-fold
predictions; the fitted numbers go to service/signet/scoring/calibrations/<name>.json.
Reported on the held-out split: AUROC, ECE (10 equal-width bins, beside the ECE a perfectly
calibrated forecast shows on the same items, and the logistic model's alone) and the
reliability diagrams, in docs/img/risk-<name>.png.
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
from sklearn.linear_model import LogisticRegression, LogisticRegressionCV
from sklearn.model_selection import GroupKFold

from bench.scoring_eval import RESULTS_DIR, read_jsonl
from harness import eval_sets
from signet.scoring.claims import check_against_source
from signet.scoring.evaluation import auroc, expected_calibration_error, reliability_bins
from signet.scoring.risk import (
    ANSWER_FEATURES,
    REFERENCE_FEATURES,
    answer_bearing,
    answer_features,
    reference_features,
)
from signet.scoring.sentences import split_sentences

REPOSITORY = Path(__file__).resolve().parent.parent
CALIBRATIONS = REPOSITORY / "service" / "signet" / "scoring" / "calibrations"
IMAGES = REPOSITORY / "docs" / "img"
EMBEDDED_MODEL = "SmolLM2-135M-Instruct"
# (temperature, watermarked) of bench/risk_answers.py's decodings
FITTED_DECODINGS = [[0.0, False], [0.0, True], [1.0, True]]


@dataclass
class LabelledSet:
    features: list[dict[str, float]]
    positives: np.ndarray  # True: wrong answer / unsupported text
    held_out: np.ndarray  # True: in the held-out split
    groups: list[str]  # a name per item, for the per-group tables
    clusters: list[str]  # items that are not independent share one (a question, a source passage): one fold


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
            answer_bearing(row["token_texts"], row["prompt"]),
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
        [row["id"] for row in rows],
    )


def reference_set() -> LabelledSet:
    answers, summaries = eval_sets.load_reference_answers(), eval_sets.load_reference_summaries()
    rows = [*answers, *summaries]
    kinds = ["answers"] * len(answers) + ["summaries"] * len(summaries)
    return LabelledSet(
        [reference_features(check_against_source(_sentences(row["text"]), row["source"])) for row in rows],
        np.array([row["label"] != "faithful" for row in rows]),
        np.array([row["split"] == "test" for row in rows]),
        kinds,
        [row["source_id"] for row in rows],
    )


def _sentences(text: str) -> list[str]:
    return [span.text for span in split_sentences(text)]


C_GRID = (0.03, 0.1, 0.3, 1.0, 3.0, 10.0, 30.0, 100.0)


def fit(data: LabelledSet, names: tuple[str, ...]) -> dict:
    """The logistic model (C chosen by 5-fold cross-validated log loss, folds by cluster) and
    the isotonic map fitted on its out-of-fold predictions, all on the fitting split."""
    matrix = np.array([[item[name] for name in names] for item in data.features])[~data.held_out]
    positives = data.positives[~data.held_out]
    clusters = np.array(data.clusters)[~data.held_out]
    center = matrix.mean(axis=0)
    scale = matrix.std(axis=0)
    scale[scale == 0] = 1.0  # a feature constant on the fitting split gets weight 0 anyway
    standard = (matrix - center) / scale
    folds = list(GroupKFold(5).split(standard, positives, clusters))
    search = LogisticRegressionCV(
        Cs=list(C_GRID), cv=folds, scoring="neg_log_loss", l1_ratios=(0.0,), use_legacy_attributes=False
    )
    chosen = float(np.ravel(search.fit(standard, positives).C_)[0])
    out_of_fold = np.zeros(len(positives))
    for train, test in folds:
        fold_model = LogisticRegression(C=chosen).fit(standard[train], positives[train])
        out_of_fold[test] = fold_model.predict_proba(standard[test])[:, 1]
    isotonic = IsotonicRegression(out_of_bounds="clip", y_min=0.0, y_max=1.0).fit(out_of_fold, positives)
    model = LogisticRegression(C=chosen).fit(standard, positives)
    return {
        "features": list(names),
        "center": center.tolist(),
        "scale": scale.tolist(),
        "coefficients": model.coef_[0].tolist(),
        "intercept": float(model.intercept_[0]),
        "C": float(chosen),
        "isotonic": {"x": isotonic.X_thresholds_.tolist(), "y": bounded_steps(isotonic, out_of_fold).tolist()},
    }


def bounded_steps(isotonic: IsotonicRegression, scores: np.ndarray) -> np.ndarray:
    """The isotonic map's values, a step of k fitting items that says 0 (or 1) raised to
    1 / (k + 1) (or lowered to k / (k + 1)): k all-right items cannot show a rate below
    1 / (k + 1). A floor from the whole split's size (1 / 1,144) let a step of all-right answers
    say 0.0009, and 3 of the 44 held-out answers in it were wrong. Where a bound breaks the
    order of the steps, the steps it crosses are pooled, weighed by their items (isotonic
    regression again), rather than pulled to the bound."""
    fitted = isotonic.predict(scores)  # each fitting item's step value, exactly
    values = isotonic.y_thresholds_
    counts = np.array([np.count_nonzero(fitted == value) for value in values])
    bounded = np.clip(values, 1.0 / (counts + 1), counts / (counts + 1))
    return IsotonicRegression().fit_transform(np.arange(len(values)), bounded, sample_weight=counts)


def predict(fitted: dict, data: LabelledSet, recalibrate: bool = True) -> np.ndarray:
    """The shipped risk of every item (``recalibrate`` False: the logistic model alone)."""
    matrix = np.array([[item[name] for name in fitted["features"]] for item in data.features])
    score = fitted["intercept"] + ((matrix - fitted["center"]) / fitted["scale"]) @ np.array(fitted["coefficients"])
    logistic = 1.0 / (1.0 + np.exp(-score))
    if not recalibrate:
        return logistic
    return np.interp(logistic, fitted["isotonic"]["x"], fitted["isotonic"]["y"])


def calibrated_ece(risk: np.ndarray, draws: int = 2000) -> tuple[float, float]:
    """The ECE that a perfectly calibrated forecast shows on these items, from sampling noise
    alone: outcomes drawn with the forecast's own probabilities (mean, 95th percentile). A
    measured ECE below the 95th percentile is no evidence of miscalibration."""
    generator = np.random.default_rng(0)
    values = [expected_calibration_error(risk, generator.uniform(size=risk.size) < risk) for _ in range(draws)]
    return float(np.mean(values)), float(np.quantile(values, 0.95))


def report(name: str, data: LabelledSet, risk: np.ndarray, logistic: np.ndarray, baseline: str) -> tuple[str, list]:
    """The held-out table (overall and per group) and the diagrams' bins."""
    test = data.held_out
    lines = [
        f"| {name}: held-out items | positives | AUROC | AUROC of {baseline} alone | ECE "
        "| ECE of a calibrated forecast: mean, 95% | ECE of the logistic model alone |",
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
            f"| {expected_calibration_error(logistic[chosen], positives):.3f} |"
        )
    diagrams = [
        ("shipped: logistic, then isotonic", reliability_bins(risk[test], data.positives[test])),
        ("logistic alone", reliability_bins(logistic[test], data.positives[test])),
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
        "baseline": "log_mean_negative_logprob",  # log perplexity: the best single method of docs/SCORING.md
        "predicts": "the answer is wrong",
        "model": EMBEDDED_MODEL,
        "decodings": FITTED_DECODINGS,
        "fitted_on": "the embedded model's answers to the fitting split of tests/data/scoring/questions.jsonl and "
        "risk_questions.jsonl, "
        "greedy, greedy watermarked and sampled watermarked at temperature 1 (bench/risk_answers.py)",
    },
    "reference": {
        "data": reference_set,
        "features": REFERENCE_FEATURES,
        "baseline": "novelty_mean",  # source_bigram_novelty, the method docs/SCORING.md recommended
        "predicts": "the text is not supported by its source",
        "model": None,
        "decodings": None,
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
            "decodings": spec["decodings"],
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
        table, diagrams = report(name, data, predict(fitted, data), predict(fitted, data, False), spec["baseline"])
        draw(name, diagrams, IMAGES / f"risk-{name}.png")
        print(table, end="\n\n")
        print(f"| feature | coefficient (per standard deviation; C = {fitted['C']:g}) |\n| --- | --- |")
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
