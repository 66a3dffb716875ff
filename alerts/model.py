"""The values the alerts package passes around: events, observations, what rules remember, notifications."""

from __future__ import annotations

import dataclasses
import enum
import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

WATCHDOG = "MonitorWatchdog"


class Event(enum.StrEnum):
    """What a notification tells a sink about an alert; the state machine's actions speak the same words."""

    FIRING = "firing"
    REMINDER = "reminder"
    FLAPPING = "flapping"
    RESOLVED = "resolved"


class Signal(enum.Enum):
    """What one result says about one alert: the condition holds (BAD) or it does not (GOOD)."""

    BAD = "bad"
    GOOD = "good"


_NONE: Mapping[str, str] = MappingProxyType({})


class Observation(NamedTuple):
    """One result's verdict for one alert instance; labels and annotations matter when BAD. A `confirmed` BAD one
    fires without waiting for `failure_threshold` (the result itself is proof: a long rate-limited spell).

    A named tuple, not a dataclass: the rules build several per result, and a tuple is the cheapest to build.
    """

    key: str
    alertname: str
    check: str
    signal: Signal
    labels: Mapping[str, str] = _NONE
    annotations: Mapping[str, str] = _NONE
    confirmed: bool = False


@dataclass(frozen=True, slots=True)
class CheckMemory:
    """What the rules remember about a check between results, persisted across restarts: its last good answer
    (the `from` label of a ContractRegression), when its current rate-limited spell began (None: not in one), and
    for a journey each step's last good status (a step's own `from`)."""

    last_good_status: int | None = None
    last_good_outcome: str | None = None
    rate_limited_since: float | None = None
    steps: Mapping[str, int] = field(default_factory=dict)  # a plain dict, so dataclasses.asdict can store it

    def to_json(self) -> str:
        """The stored form."""
        return json.dumps(dataclasses.asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> CheckMemory:
        """Read the stored form back (keys it does not know are ignored, missing ones take their default)."""
        raw: dict[str, Any] = json.loads(text)
        return cls(**{f.name: raw[f.name] for f in dataclasses.fields(cls) if f.name in raw})


@dataclass(frozen=True, slots=True)
class Notification:
    """One thing to tell the sinks about one alert; stored as JSON in the outbox (never holds a secret)."""

    key: str
    event: Event
    labels: Mapping[str, str]
    annotations: Mapping[str, str]
    starts_at: float
    at: float
    ends_at: float | None = None

    @property
    def alertname(self) -> str:
        """The alert's name (its `alertname` label)."""
        return self.labels.get("alertname", "")

    @property
    def resolved(self) -> bool:
        """Whether this notification ends the alert."""
        return self.event is Event.RESOLVED

    def to_json(self) -> str:
        """The outbox form."""
        return json.dumps(
            {
                "key": self.key, "event": self.event.value, "labels": dict(self.labels),
                "annotations": dict(self.annotations), "starts_at": self.starts_at, "at": self.at,
                "ends_at": self.ends_at,
            },
            sort_keys=True,
        )

    @classmethod
    def from_json(cls, text: str) -> Notification:
        """Read the outbox form back."""
        raw: dict[str, Any] = json.loads(text)
        return cls(
            key=raw["key"], event=Event(raw["event"]), labels=dict(raw["labels"]),
            annotations=dict(raw["annotations"]), starts_at=float(raw["starts_at"]), at=float(raw["at"]),
            ends_at=None if raw.get("ends_at") is None else float(raw["ends_at"]),
        )


@dataclass(frozen=True, slots=True)
class SinkContext:
    """Daemon-wide values a payload builder needs besides the notification."""

    service: str
    resend_interval: float
    generator_url: str = ""


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable hash of a label set: the PagerDuty dedup_key and the webhook's `fingerprint`."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]
