"""The one order in which parts' outcomes combine (probes/_verdict.py), used by voice and postgrest."""

from __future__ import annotations

import pytest

from monitor.core.results import Outcome
from probes._verdict import WORST_FIRST, worst


def test_every_outcome_has_one_place() -> None:
    """Every outcome of the closed enum is ranked exactly once, so no combination depends on a default."""
    assert sorted(Outcome) == sorted(WORST_FIRST)
    assert len(WORST_FIRST) == len(set(WORST_FIRST))


@pytest.mark.parametrize(("parts", "expected"), [
    ([Outcome.OK, Outcome.RATE_LIMITED], Outcome.RATE_LIMITED),
    ([Outcome.RATE_LIMITED, Outcome.SLOW], Outcome.SLOW),
    ([Outcome.RATE_LIMITED, Outcome.INVALID_RESPONSE], Outcome.INVALID_RESPONSE),
    ([Outcome.INVALID_RESPONSE, Outcome.SERVER_ERROR], Outcome.SERVER_ERROR),
    ([Outcome.SERVER_ERROR, Outcome.TABLE_MISSING], Outcome.TABLE_MISSING),
    ([Outcome.TABLE_MISSING, Outcome.TIMEOUT], Outcome.TIMEOUT),
    ([Outcome.OK, Outcome.OK], Outcome.OK),
    ([], Outcome.OK),
])
def test_worst(parts: list[Outcome], expected: Outcome) -> None:
    """A definitive finding outranks `slow`, which outranks `rate_limited` (nothing learned), which outranks ok;
    an unreachable target outranks everything."""
    assert expected == worst(parts)
