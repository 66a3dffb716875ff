"""The `heartbeat` check model: a job calls the daemon (`/heartbeat/<check>`) at least every `interval` + `grace`."""

from __future__ import annotations

import contextlib
from typing import Any, ClassVar, Literal

from pydantic import Field, SecretStr, field_validator, model_validator

from monitor.core.config.base import Duration
from monitor.core.config.checks import CheckBase
from monitor.core.durations import parse_duration

LOOK_EVERY_MAX_S = 30.0
"""How often, at most, the daemon looks at a heartbeat check: a miss shows within this long after its deadline."""
TOKEN_MIN_LEN = 16


class HeartbeatCheck(CheckBase):
    """Kind `heartbeat`: no target; the job calls `POST|GET /heartbeat/<name>` with `token` every `interval`.

    `interval` in the file is the job's own period. The daemon looks more often than that (every
    min(grace, 30 s), at least every second) so a miss is seen soon after `interval` + `grace`; that look
    frequency becomes the check's scheduling `interval` and the job's period is kept as `period`.
    """

    target_type: ClassVar[Literal["http", "dsn", "none"]] = "none"  # no target to check in cross_check
    kind: Literal["heartbeat"]
    target: str = Field(default="", description="a heartbeat check has no target: its job calls the daemon")
    period: Duration = Field(default=0.0, description="set from `interval`: how often the job calls")
    grace: Duration = Field(default=60.0, description="how late a call may come before it counts as missed")
    token: SecretStr = Field(description="the job sends it as `Authorization: Bearer <token>` or `?token=`")

    @model_validator(mode="before")
    @classmethod
    def _period_from_interval(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            return data
        if "period" in data:
            raise ValueError("set the job's period with `interval`, not `period`")
        period = data.get("interval")
        if period is None:
            return data
        try:
            seconds = parse_duration(period)
            grace = parse_duration(data.get("grace", 60.0))
        except (TypeError, ValueError):
            return data  # the field validators word the problem
        look = max(1.0, min(LOOK_EVERY_MAX_S, grace, seconds))
        timeout = data.get("timeout", 5.0)
        with contextlib.suppress(TypeError, ValueError):  # a bad timeout is worded by its field validator
            timeout = min(parse_duration(timeout), look / 2)
        return {**data, "period": seconds, "interval": look, "timeout": timeout}

    @field_validator("target")
    @classmethod
    def _no_target(cls, value: str) -> str:
        if value:
            raise ValueError("a heartbeat check has no target (its job calls the daemon); remove `target`")
        return value

    @field_validator("grace")
    @classmethod
    def _grace(cls, value: float) -> float:
        if value < 0:
            raise ValueError("must be 0 or more")
        return value

    @field_validator("token")
    @classmethod
    def _token(cls, value: SecretStr) -> SecretStr:
        if len(value.get_secret_value()) < TOKEN_MIN_LEN:
            raise ValueError(f"is shorter than {TOKEN_MIN_LEN} characters; use a random one (`openssl rand -hex "
                             "16`), from the environment (\"${VAR}\") or a file (\"${file:/path}\")")
        return value

