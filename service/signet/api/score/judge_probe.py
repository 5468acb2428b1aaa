"""Can the served model judge entailment at all? 16 easy pairs, asked once per model per
process, before the LLM-judged consistency methods trust its yes/no answers.

Those methods read the served model's p(yes) (judge.py). A model that answers at chance
would give scores that look like evidence and are noise: a request that asks for them
gets the other methods and a warning instead. The embedded 135M model is one: AUROC 0.50-0.52
on this probe, p(yes) between 0.11 and 0.23 for every pair, entailed or contradicted
(tests/e2e/test_scoring.py).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from signet.api.errors import ApiError
from signet.api.score.engine_inputs import CostMeter
from signet.api.score.judge import premise_entailment_question, yes_probabilities
from signet.api.state import ServiceState
from signet.scoring.evaluation import auroc

# The consistency methods whose scores are the served model's answers to yes/no or A-D questions.
JUDGED_METHODS = (
    "source_entailment",
    "selfcheck_llm_support",
    "selfcheck_llm_entailment",
    "mqag_kl",
    "mqag_total_variation",
    "mqag_hellinger",
    "mqag_hellinger_squared",
    "mqag_counting",
)
# A judge with no signal gives AUROC = U / 64, U Mann-Whitney's statistic for 8 entailed
# against 8 contradicted pairs, and passes when U >= 48: 675 of the C(16, 8) = 12,870
# equally likely rank orders, a probability of 15/286 = 0.052 (exact, untied scores).
# A constant p(yes) ties every pair, scores 0.5 and never passes.
MIN_JUDGE_AUROC = 0.75
PROBE_STEP = "judge_probe"  # the step label of the probe's engine requests in the metrics


@dataclass(frozen=True)
class ProbePair:
    premise: str
    hypothesis: str
    entails: bool


# Each premise comes twice, once with a hypothesis it entails and once with one it
# contradicts: only the hypothesis tells them apart, so a judge cannot pass by answering
# from the premise. Nothing needs knowledge of the world beyond the premise.
_PREMISES_AND_HYPOTHESES = (
    ("The cat is asleep on the red sofa.", "An animal is on the sofa.", "The sofa is empty."),
    ("Maria bought three apples and a loaf of bread.", "Maria bought some apples.", "Maria bought nothing."),
    ("The door of the shed is painted blue.", "The shed has a blue door.", "The door of the shed is red."),
    ("Tom ran to the station because he was late.", "Tom was late.", "Tom was early."),
    ("Two children are playing football in the park.", "Children are in the park.", "Nobody is in the park."),
    ("The box on the table is empty.", "There is nothing in the box.", "The box is full of books."),
    ("Anna closed the window and then left the room.", "Anna left the room.", "Anna never left the room."),
    ("The glass fell off the shelf and broke.", "The glass broke.", "The glass did not break."),
)
PROBE_PAIRS = tuple(
    pair
    for premise, entailed, contradicted in _PREMISES_AND_HYPOTHESES
    for pair in (ProbePair(premise, entailed, True), ProbePair(premise, contradicted, False))
)

Judge = Callable[[list[str]], Awaitable[list[float]]]  # questions -> p(yes) for each


def probe_auroc(yes_probabilities: Sequence[float], entails: Sequence[bool]) -> float:
    """P(a random entailed pair gets a higher p(yes) than a random contradicted one), ties 1/2."""
    return auroc(yes_probabilities, entails)


@dataclass(frozen=True)
class JudgeProbe:
    model: str
    auroc: float
    pairs: int

    @property
    def passed(self) -> bool:
        return self.auroc >= MIN_JUDGE_AUROC

    def warning(self, methods: Sequence[str]) -> str:
        return (
            f"LLM judge left out: the served model {self.model} scored AUROC {self.auroc:.2f} on the built-in "
            f"entailment probe ({self.pairs} easy pairs; at least {MIN_JUDGE_AUROC:.2f} needed); "
            f"methods left out: {', '.join(methods)}"
        )


def served_judge(state: ServiceState, tenant: str | None = None) -> Judge:
    """The served model's p(yes), on a meter of the probe's own: its engine requests are
    counted in the metrics but in no caller's cost, since it runs once for every caller.
    The probe is one request of about 1,100 tokens on the embedded model's tokenizer: a
    SIGNET_SCORE_MAX_TOKENS below that refuses it (422 naming ``methods``)."""
    meter = CostMeter(
        "consistency",
        tenant,  # the first caller's queue share takes the probe's one job
        budget_field="methods",
        budget_advice="leave out the LLM-judged methods, or raise SIGNET_SCORE_MAX_TOKENS",
    )

    async def ask(questions: list[str]) -> list[float]:
        return await yes_probabilities(state, meter, questions, PROBE_STEP)

    return ask


async def probe_judge(state: ServiceState, judge: Judge | None = None, tenant: str | None = None) -> JudgeProbe:
    """The served model's probe, run once per model name per process. An engine error
    propagates and caches nothing: the next call runs the probe again."""
    model = state.model_name
    if (probe := state.judge_probes.get(model)) is not None:
        return probe
    # Concurrent first callers wait here for one probe instead of each running their own.
    async with state.judge_probe_lock:
        if (probe := state.judge_probes.get(model)) is not None:
            return probe
        ask = judge if judge is not None else served_judge(state, tenant)
        answers = await ask([premise_entailment_question(pair.premise, pair.hypothesis) for pair in PROBE_PAIRS])
        probe = JudgeProbe(model, probe_auroc(answers, [pair.entails for pair in PROBE_PAIRS]), len(PROBE_PAIRS))
        state.judge_probes[model] = probe
        return probe


async def usable_methods(
    state: ServiceState,
    methods: tuple[str, ...],
    *,
    always: bool = False,
    tenant: str | None = None,
    judge: Judge | None = None,
) -> tuple[tuple[str, ...], list[str]]:
    """``methods`` without the judged ones, and the warning saying why, when the served model
    fails the probe or the probe cannot run (an engine error, a token budget too small: not
    cached, the next request probes again); otherwise ``methods`` and no warning. No judged
    method asked, or the request's ``judge: always`` (the caller takes the judge as it is):
    no probe."""
    judged = tuple(method for method in methods if method in JUDGED_METHODS)
    if not judged or always:
        return methods, []
    without = tuple(method for method in methods if method not in JUDGED_METHODS)
    try:
        probe = await probe_judge(state, judge, tenant)
    except ApiError as error:
        return without, [f"LLM judge left out: its probe could not run ({error.detail}); methods left out: "
                         + ", ".join(judged)]  # fmt: skip
    if probe.passed:
        return methods, []
    return without, [probe.warning(judged)]
