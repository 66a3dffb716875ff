"""One verdict from several parts (voice's health and synthesis, postgrest's tables): the worst outcome wins."""

from __future__ import annotations

from collections.abc import Iterable

from monitor.core.results import Outcome

WORST_FIRST: tuple[Outcome, ...] = (
    Outcome.TIMEOUT,
    Outcome.CONNECTION_ERROR,
    Outcome.DNS_ERROR,
    Outcome.TLS_ERROR,
    Outcome.INTERNAL_ERROR,
    Outcome.AUTH_BYPASS,
    Outcome.TABLE_MISSING,
    Outcome.SCHEMA_CACHE_STALE,
    Outcome.POLICY_ERROR,
    Outcome.PERMISSION_DENIED,
    Outcome.COLUMN_MISSING,
    Outcome.RLS_DISABLED,
    Outcome.MIGRATION_PENDING,
    Outcome.DB_ERROR,
    Outcome.SERVER_ERROR,
    Outcome.UNEXPECTED_STATUS,
    Outcome.INVALID_RESPONSE,
    Outcome.CORS_REFUSED,
    Outcome.HEARTBEAT_MISSED,
    Outcome.IDENTITY_FAILED,
    Outcome.SLOW,
    Outcome.RATE_LIMITED,
    Outcome.OK,
)
"""The fixed order in which parts' outcomes are combined, gravest first.

The target unreachable, then a probe bug, then definitive findings from the most specific (a named missing
table) to the least (a body that does not match), then `identity_failed` (the monitor could not act as its user:
nothing was learned about that part, but a finding in another part outranks it), then `slow` (an answer that came,
late), then `rate_limited` (nothing was learned: a definitive finding in another part outranks it), then `ok`.
"""


def rank(outcome: Outcome) -> int:
    """The outcome's place in WORST_FIRST (0 is gravest; every outcome is listed, a test holds it so)."""
    return WORST_FIRST.index(outcome)


def worst(outcomes: Iterable[Outcome]) -> Outcome:
    """The gravest of `outcomes` by WORST_FIRST; the first one listed among equals; ok when there are none."""
    return min(outcomes, key=rank, default=Outcome.OK)
