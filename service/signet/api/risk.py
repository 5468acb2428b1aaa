"""The ``risk`` of a response: a shipped calibration applied to a response's features.

The calibrations and their features are pure (``signet.scoring.risk``); this module adds
what only the service knows: which model it serves, and how the text was decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

from signet.api.protocol import Risk
from signet.scoring.risk import RiskModel, load_risk_model

GIVEN_TEXT = "a given response: the calibration was fitted on the served model's own answers, which it may not be"


@dataclass(frozen=True)
class Decoding:
    """How the service decoded the answer a risk describes."""

    temperature: float
    watermarked: bool
    top_p: float = 1.0

    def describe(self) -> str:
        mark = "watermarked" if self.watermarked else "unwatermarked"
        return "greedy, " + mark if self.temperature == 0 else f"temperature {self.temperature:g}, {mark}"


def risk(name: str, features: dict[str, float], served_model: str, decoding: Decoding | None = None) -> Risk:
    """The calibration ``name`` at ``features``. ``decoding``: how the service decoded the
    answer, for a calibration fitted on some decodings only; None there: a caller's text."""
    model = load_risk_model(name)
    reason = _uncalibrated(model, served_model, decoding)
    return Risk(
        value=model.probability(features),
        predicts=model.predicts,
        calibrated=reason is None,
        reason=reason,
        calibration=model.name,
        fitted_for=model.model,
        inputs=features,
    )


def _uncalibrated(model: RiskModel, served_model: str, decoding: Decoding | None) -> str | None:
    """Why the value is not a probability here, or None when it is."""
    if not model.calibrated_for(served_model):
        return (
            f"fitted for {model.model}, and this service runs {served_model}: the value ranks, it is not a probability"
        )
    if model.decodings is None:
        return None
    if decoding is None:
        return GIVEN_TEXT
    fitted = [Decoding(temperature, watermarked) for temperature, watermarked in model.decodings]
    if Decoding(decoding.temperature, decoding.watermarked) not in fitted:
        listed = "; ".join(item.describe() for item in fitted)
        return f"fitted on answers decoded {listed}; this one was decoded {decoding.describe()}"
    if decoding.temperature > 0 and decoding.top_p < 1:
        return (
            f"fitted on answers sampled from the whole distribution; this one was sampled with top_p {decoding.top_p:g}"
        )
    return None
