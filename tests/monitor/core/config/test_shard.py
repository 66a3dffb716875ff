"""monitor.core.config.shard: the consistent hash of check names, I/N and I-of-N, and a pod's ordinal."""

from __future__ import annotations

import math
from collections import Counter

import pytest

from monitor.core.config import parse_shard, shard_from_ordinal, shard_of

NAMES = [f"check_{i}" for i in range(3000)]


def test_every_check_has_exactly_one_shard_and_shards_are_even() -> None:
    """Each name lands in one shard of N; every shard's share of 3,000 names is within 4 standard deviations of a
    fair draw (a uniform hash passes with certainty for these fixed names; a skewed one, such as a modulo of a
    short hash, would not)."""
    for count in (1, 2, 3, 4, 7):
        sizes = Counter(shard_of(name, count) for name in NAMES)
        assert set(range(count)) == set(sizes)
        fair, sigma = len(NAMES) / count, math.sqrt(len(NAMES) * (1 / count) * (1 - 1 / count))
        assert all(abs(size - fair) <= 4 * sigma for size in sizes.values()), sizes


def test_the_hash_is_fixed_across_runs_and_machines() -> None:
    """The shard of a name is a pure function of the name (no per-process salt): these values never change, since
    a change would move alerts between shards on upgrade."""
    assert [1, 0, 1, 0] == [shard_of(n, 3) for n in ("backend_health", "voice_health", "db_roundtrip", "a")]


def test_one_more_shard_moves_only_the_checks_that_land_on_it() -> None:
    """From N to N+1 shards a check either stays or moves to the new shard N, and about 1/(N+1) of them move; going
    back moves exactly those back."""
    for count in (1, 2, 3, 5):
        moved = [n for n in NAMES if shard_of(n, count) != shard_of(n, count + 1)]
        assert {count} == {shard_of(n, count + 1) for n in moved}
        p = 1 / (count + 1)
        assert abs(len(moved) - p * len(NAMES)) <= 4 * math.sqrt(len(NAMES) * p * (1 - p)), len(moved)


@pytest.mark.parametrize(("text", "expected"), [("0/1", (0, 1)), ("2/3", (2, 3)), ("1-of-4", (1, 4)),
                                                ("  0/2 ", (0, 2))])
def test_parse_shard_reads_both_spellings(text: str, expected: tuple[int, int]) -> None:
    """`I/N` (the flag, the env var) and `I-of-N` (a systemd instance name, where '/' cannot appear) are the same."""
    assert expected == parse_shard(text)


@pytest.mark.parametrize("text", ["3/3", "0/0", "1", "a/b", "1-0f-3", "-1/3", "1/3/4"])
def test_parse_shard_refuses_anything_else(text: str) -> None:
    """Out of range or malformed: a ValueError that shows what was given and the form."""
    with pytest.raises(ValueError, match=r"--shard must be i/n \(or i-of-n\) with 0 <= i < n, such as 0/2, got"):
        parse_shard(text)


@pytest.mark.parametrize(("pod", "count", "replicas", "expected"), [
    ("pam-monitor-0", 3, 2, (0, 3)), ("pam-monitor-1", 3, 2, (0, 3)), ("pam-monitor-2", 3, 2, (1, 3)),
    ("pam-monitor-5", 3, 2, (2, 3)), ("web-7", 4, 2, (3, 4)), ("a-b-c-4", 5, 1, (4, 5)), ("x-8", 3, 3, (2, 3)),
])
def test_a_pods_ordinal_gives_its_shard(pod: str, count: int, replicas: int, expected: tuple[int, int]) -> None:
    """Pods R*s .. R*s+R-1 run shard s: the two replicas of a shard are neighbours, and growing N keeps every
    existing pod on its shard."""
    assert expected == shard_from_ordinal(pod, count, replicas)


def test_a_pod_name_without_ordinal_or_beyond_the_shards_is_one_clear_line() -> None:
    """No -<k> suffix, or an ordinal past N*R pods: the message names the pod, the numbers and the fix."""
    with pytest.raises(ValueError, match="has none") as no_ordinal:
        shard_from_ordinal("pam-monitor", 3)
    assert ("--shards 3 takes the shard from the pod's ordinal (a name ending in -<k>, such as pam-monitor-3), but "
            "the pod name 'pam-monitor' has none; set POD_NAME from metadata.name, or pass --shard I/N"
            == str(no_ordinal.value))
    with pytest.raises(ValueError, match="has ordinal 6") as beyond:
        shard_from_ordinal("pam-monitor-6", 3)
    assert ("pod 'pam-monitor-6' has ordinal 6, but --shards 3 with 2 replicas each has ordinals 0..5; scale the "
            "StatefulSet to 6 replicas or raise --shards to 4" == str(beyond.value))
    with pytest.raises(ValueError, match="at least 1"):
        shard_from_ordinal("pam-monitor-0", 0)
