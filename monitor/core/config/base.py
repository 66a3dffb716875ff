"""Building blocks of the configuration schema: the strict base model, durations, names, maintenance windows."""

from __future__ import annotations

import re
from typing import Annotated, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    field_validator,
    model_validator,
)

from monitor.core.durations import parse_duration, parse_rate

Duration = Annotated[float, BeforeValidator(parse_duration)]
Rate = Annotated[float, BeforeValidator(parse_rate)]
"""Events per second, written in the file as `40/m`, `2/s` or `1000/h`."""
"""Seconds, written in the file as `500ms`, `30s`, `5m`, `1h` or a number."""

NAME_PATTERN = r"^[A-Za-z_][A-Za-z0-9_.-]{0,63}$"
HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]
ForgedToken = Literal["garbage", "wrong_signature", "alg_none", "expired"]
ALL_FORGED: tuple[ForgedToken, ...] = ("garbage", "wrong_signature", "alg_none", "expired")
AudioFormat = Literal["mp3", "wav", "ogg"]
ALL_AUDIO_FORMATS: tuple[AudioFormat, ...] = ("mp3", "wav", "ogg")
AlertName = Literal[
    "ContractRegression",
    "AuthBypass",
    "TableMissing",
    "SchemaDrift",
    "EndpointDown",
    "VoiceDegraded",
    "DatabaseDown",
    "CheckFailed",
    "AccessDenied",
    "CertificateExpiring",
    "MonitorSaturated",
    "MonitorWatchdog",
    "MonitorBlocked",
    "HeartbeatMissed",
    "ErrorBudgetBurn",
    "SchemaCacheStale",
    "MigrationPending",
    "CorsBroken",
    "MonitorCredentialExpiring",
]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True, defer_build=True)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


Method = Annotated[HttpMethod, BeforeValidator(_upper)]


class Maintenance(Strict):
    """A window during which notifications are silenced (probing and metrics go on).

    Either one-off (`start`/`end` as ISO date-times) or recurring (`days` plus `start`/`end` as HH:MM),
    interpreted in `timezone`.
    """

    start: str
    end: str
    days: list[Literal["mon", "tue", "wed", "thu", "fri", "sat", "sun"]] | None = None
    timezone: str = "UTC"
    reason: str = ""

    @field_validator("timezone")
    @classmethod
    def _tz(cls, value: str) -> str:
        from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"unknown time zone {value!r}; use an IANA name such as Europe/Berlin or UTC") from None
        return value

    @model_validator(mode="after")
    def _times(self) -> Maintenance:
        import datetime as dt

        if self.days is not None:
            for label, text in (("start", self.start), ("end", self.end)):
                if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", text):
                    raise ValueError(f"{label} must be HH:MM (24 h) when days is set, got {text!r}")
        else:
            try:
                start = dt.datetime.fromisoformat(self.start)
                end = dt.datetime.fromisoformat(self.end)
            except ValueError:
                raise ValueError(
                    "start and end must be ISO date-times such as 2026-12-01T02:00 (or HH:MM with days)"
                ) from None
            if end.replace(tzinfo=None) <= start.replace(tzinfo=None):
                raise ValueError("end must be after start")
        return self


def require_timeout_below_interval(timeout: float, interval: float) -> None:
    """A run must end before the next is due; raise ValueError saying how to fix it otherwise."""
    if timeout >= interval:
        raise ValueError(
            f"timeout ({timeout:g}s) must be less than interval ({interval:g}s); lower timeout or raise interval"
        )

