"""The detection budget: how much evidence about the green lists a caller may extract.

Every statistic /detect reports is evidence about the keys' green lists, and the amount
grows with the tokens scored, not with the requests: one request of 60,000 chosen ids
can carry as much as 60,000 requests of one. So the budget counts scored tokens, times
the keys tested (each key's count is evidence about that key), for /detect and for every
item of /detect/batch, cached answers included (a repeat tells nothing new, but charging
it keeps the rule simple to state and to check).

The charge is taken after the answer is computed, when its cost is known, and before it
is sent: a refused answer is never seen, but it is paid for all the same, since its work
was done. Otherwise a caller a little short of a large request's cost could send it again
and again, each copy tokenized and scored in full and refused, never in debt (found by
review: two such requests held both detection threads a process had then, api/detect/router.py).
Paid for, the refusal leaves the caller in debt, and while it is in debt its requests are
refused before any work: one unit is checked (not taken) before the work starts.

A tenant's API keys share one budget, so more keys buy no more evidence; in development
mode each caller (API key, else address) has its own. The limiter is cache/rate_limit.py's
GCRA with the cost in scored tokens.
"""

from __future__ import annotations

from collections.abc import Iterable

from fastapi import Request

from signet.api.auth import Caller
from signet.api.detect.protocol import DetectResponse
from signet.api.errors import ApiError, retry_after
from signet.api.rate_limit import caller_identity
from signet.api.state import ServiceState
from signet.cache.rate_limit import RateDecision


def budget_identity(request: Request, caller: Caller) -> str:
    """``tenant:<name>`` for a tenant's caller; in development mode the caller's rate-limit identity."""
    return caller_identity(request) if caller.tenant is None else f"tenant:{caller.tenant.name}"


# The least a key with any scored token costs. Verdicts need no fixed number of tokens (a
# KGW test at gamma 0.25 can reject at alpha 1e-3 on 5), but an answer on T tokens tells up
# to log2(T + 1) bits about the green lists: charging short answers as 25 tokens keeps every
# answer at 4.7 bits per 25 tokens of budget or less, the bound docs/SECURITY.md states.
# Untested keys (insufficient_evidence) too: their statistics are hidden, but kgw-selfhash's
# T itself depends on the key (it scores each seed once, and the seed is the smallest
# product under the key's table), so T is evidence as well.
MIN_CHARGED_SCORED_TOKENS = 25


def evidence_cost(response: DetectResponse) -> int:
    """Scored tokens over every key tested: what the answer tells about the green lists."""
    return sum(_key_cost(key.num_scored_tokens) for key in response.keys)


def _key_cost(num_scored_tokens: int) -> int:
    return 0 if num_scored_tokens == 0 else max(num_scored_tokens, MIN_CHARGED_SCORED_TOKENS)


def admit(state: ServiceState, request: Request, caller: Caller) -> None:
    """429 before any work when the caller's budget cannot pay even one scored token (a
    caller in debt): it is refused without costing a tokenization. Takes nothing."""
    budget = state.detect_budget
    if budget is not None:
        _refuse_unless(budget.check(budget_identity(request, caller), 1), state, caller, None)


def charge(state: ServiceState, request: Request, caller: Caller, responses: Iterable[DetectResponse]) -> None:
    """Take the answers' cost from the caller's budget, even when it does not fit (the work is
    done); 429 with Retry-After when it did not, the answers withheld."""
    budget = state.detect_budget
    if budget is None:
        return
    cost = sum(evidence_cost(response) for response in responses)
    _refuse_unless(budget.debit(budget_identity(request, caller), cost), state, caller, cost)


def _refuse_unless(decision: RateDecision, state: ServiceState, caller: Caller, cost: int | None) -> None:
    """``cost``: the request's scored tokens; None: refused at admission, before any work."""
    if decision.allowed:
        return
    headers = retry_after(decision.retry_after_seconds)
    settings = state.settings
    who = "this caller" if caller.tenant is None else f"tenant {caller.tenant.name!r}"
    spent = "none is left" if cost is None else f"this request evaluated {cost:,} scored tokens (times the keys tested)"
    raise ApiError(
        429,
        f"detection budget spent: {spent}; {who} may "
        f"have {settings.detect_token_budget:,} evaluated per {settings.detect_token_budget_seconds:,} s; "
        f"retry in {headers['Retry-After']} s",
        headers=headers,
    )
