"""The ``risk`` of a response: a shipped calibration applied to a response's features.

The calibrations and their features are pure (``signet.scoring.risk``); this module adds
what only the service knows: which model it serves, and how the text was decoded.
"""

from __future__ import annotations

from signet.api.protocol import Risk
from signet.scoring.risk import load_risk_model


def risk(
    name: str, features: dict[str, float], served_model: str, temperature: float | None = None, top_p: float = 1.0
) -> Risk:
    """The calibration ``name`` at ``features``; ``temperature`` and ``top_p``: the answer's
    decoding, where the caller chose it."""
    model = load_risk_model(name)
    reason = None
    if not model.calibrated_for(served_model):
        reason = (
            f"fitted for {model.model}, and this service runs {served_model}: the value ranks, it is not a probability"
        )
    elif temperature is not None and model.temperatures is not None and temperature not in model.temperatures:
        fitted = " and ".join(f"{value:g}" for value in model.temperatures)
        reason = f"fitted on answers decoded at temperature {fitted}, and this one was decoded at {temperature:g}"
    elif temperature is not None and temperature > 0 and top_p < 1:
        reason = f"fitted on answers sampled from the whole distribution, and this one was sampled with top_p {top_p:g}"
    return Risk(
        value=model.probability(features),
        predicts=model.predicts,
        calibrated=reason is None,
        reason=reason,
        calibration=model.name,
        fitted_for=model.model,
        inputs=features,
    )
