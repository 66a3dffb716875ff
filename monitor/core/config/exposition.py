"""What /metrics exposes beyond the default, budgeted set: `metrics: {detail: [...]}` in the config file."""

from __future__ import annotations

import typing
from typing import Literal

from pydantic import Field, field_validator

from monitor.core.config.base import Strict

DetailFamily = Literal["outcome_onehot", "duration_histogram"]
DETAIL_FAMILIES: tuple[str, ...] = typing.get_args(DetailFamily)
"""The opt-in per-check families; see monitor/metrics.py and the README's "Metrics" budget table."""


class MetricsSettings(Strict):
    """Per-check metric families to expose in addition to the default set."""

    detail: tuple[DetailFamily, ...] = Field(
        default=(),
        description="opt-in families: outcome_onehot (pam_monitor_check_outcome, a series per possible outcome), "
                    "duration_histogram (pam_monitor_check_duration_seconds, 12 series a check)",
    )

    @field_validator("detail")
    @classmethod
    def _once(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        if len(set(value)) != len(value):
            raise ValueError("lists a family twice; name each of " + ", ".join(DETAIL_FAMILIES) + " at most once")
        return value
