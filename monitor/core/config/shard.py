"""Which checks a shard runs: a consistent hash of the check name, and the shard from `I/N` or a pod's ordinal."""

from __future__ import annotations

import hashlib
import re

from monitor.core.config.root import Config

DEFAULT_REPLICAS = 2
"""Processes per shard in the StatefulSet recipe: pods 2k and 2k+1 run shard k."""

_SHARD = re.compile(r"(\d+)(?:/|-of-)(\d+)")
_ORDINAL = re.compile(r".*-(\d+)")


def shard_of(name: str, count: int) -> int:
    """The shard (0 <= shard < count) that runs the check called `name`.

    Jump consistent hash (Lamping and Veach, 2014) of a 64-bit BLAKE2b digest of the name: the same on every
    machine and Python version, and going from N to N+1 shards moves only the 1/(N+1) of the checks that land on
    the new shard (the others keep their shard, their process and their alert state).
    """
    key = int.from_bytes(hashlib.blake2b(name.encode(), digest_size=8).digest(), "big")
    bucket, jump = -1, 0
    while jump < count:
        bucket = jump
        key = (key * 2862933555777941757 + 1) & 0xFFFFFFFFFFFFFFFF
        jump = int((bucket + 1) * ((1 << 31) / ((key >> 33) + 1)))
    return bucket


def apply_shard(config: Config, index: int, count: int) -> Config:
    """Keep the checks that belong to shard `index` of `count` (`shard_of`); the others are `elsewhere`."""
    kept = [c for c in config.checks if shard_of(c.name, count) == index]
    sharded = config.model_copy(update={"checks": kept})
    sharded._elsewhere = frozenset(c.name for c in config.checks if shard_of(c.name, count) != index)
    return sharded


def parse_shard(text: str) -> tuple[int, int]:
    """Parse `I/N` or `I-of-N` (0 <= I < N), as --shard, PAM_MONITOR_SHARD and the systemd instance name give it."""
    match = _SHARD.fullmatch(text.strip())
    if not match or not 0 <= int(match.group(1)) < int(match.group(2)):
        raise ValueError(f"--shard must be i/n (or i-of-n) with 0 <= i < n, such as 0/2, got {text!r}")
    return int(match.group(1)), int(match.group(2))


def shard_from_ordinal(pod: str, count: int, replicas: int = DEFAULT_REPLICAS) -> tuple[int, int]:
    """The shard of a StatefulSet pod named `<name>-<k>`: shard k // replicas of `count`.

    Raise ValueError (one line: what, what was given, the fix) when the name has no ordinal or the ordinal is
    beyond `count * replicas` pods.
    """
    if count < 1 or replicas < 1:
        raise ValueError(f"--shards and --replicas-per-shard must be at least 1, got {count} and {replicas}")
    match = _ORDINAL.fullmatch(pod.strip())
    if match is None:
        raise ValueError(f"--shards {count} takes the shard from the pod's ordinal (a name ending in -<k>, such as "
                         f"pam-monitor-3), but the pod name {pod!r} has none; set POD_NAME from metadata.name, "
                         "or pass --shard I/N")
    ordinal = int(match.group(1))
    if ordinal >= count * replicas:
        raise ValueError(f"pod {pod!r} has ordinal {ordinal}, but --shards {count} with {replicas} replicas each "
                         f"has ordinals 0..{count * replicas - 1}; scale the StatefulSet to {count * replicas} "
                         f"replicas or raise --shards to {ordinal // replicas + 1}")
    return ordinal // replicas, count
