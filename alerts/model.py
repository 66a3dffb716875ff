"""Values shared by the engine, the outbox and the sinks: a notification and the context a sink renders with."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

Event = Literal["firing", "reminder", "flapping", "resolved"]
EVENTS: tuple[Event, ...] = ("firing", "reminder", "flapping", "resolved")
WATCHDOG = "MonitorWatchdog"


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
        return self.event == "resolved"

    def to_json(self) -> str:
        """The outbox form."""
        return json.dumps(
            {
                "key": self.key, "event": self.event, "labels": dict(self.labels),
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
            key=raw["key"], event=raw["event"], labels=dict(raw["labels"]),
            annotations=dict(raw["annotations"]), starts_at=float(raw["starts_at"]), at=float(raw["at"]),
            ends_at=None if raw.get("ends_at") is None else float(raw["ends_at"]),
        )


@dataclass(frozen=True, slots=True)
class SinkContext:
    """Daemon-wide values a payload builder needs besides the notification."""

    service: str
    resend_interval: float
    generator_url: str = ""
    extra: Mapping[str, str] = field(default_factory=dict)


def fingerprint(labels: Mapping[str, str]) -> str:
    """A stable hash of a label set: the PagerDuty dedup_key and the webhook's `fingerprint`."""
    text = "\x00".join(f"{k}\x01{v}" for k, v in sorted(labels.items()))
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]

