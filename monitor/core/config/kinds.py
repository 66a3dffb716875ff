"""Every check model in one union: the `kind:` values a config file may use."""

from __future__ import annotations

import typing
from typing import Annotated

from pydantic import Field

from monitor.core.config.checks import (
    AuthContractCheck,
    CheckBase,
    DbCheck,
    HttpCheck,
    PostgrestCheck,
    VoiceCheck,
)
from monitor.core.config.heartbeat import HeartbeatCheck
from monitor.core.config.journeys import JourneyCheck, TenantIsolationCheck

Check = Annotated[
    HttpCheck | AuthContractCheck | VoiceCheck | DbCheck | PostgrestCheck | JourneyCheck | TenantIsolationCheck
    | HeartbeatCheck,
    Field(discriminator="kind"),
]
"""A check as the config file gives it; a new kind's model is added here and nowhere else in the config."""
CHECK_MODELS: tuple[type[CheckBase], ...] = typing.get_args(typing.get_args(Check)[0])
"""Every check model, in the union's order."""
CHECK_KINDS: tuple[str, ...] = tuple(typing.get_args(m.model_fields["kind"].annotation)[0] for m in CHECK_MODELS)
"""Every check kind, in the order of CHECK_MODELS (the `kind:` values a config file may use)."""


def identity_refs(check: CheckBase) -> list[tuple[str, str]]:
    """(field path within the check, identity name) for every identity a check refers to."""
    refs: list[tuple[str, str]] = []
    own = getattr(check, "identity", None)
    if isinstance(own, str):
        refs.append(("identity", own))
    synthesize = getattr(check, "synthesize", None)
    if synthesize is not None and isinstance(getattr(synthesize, "identity", None), str):
        refs.append(("synthesize.identity", synthesize.identity))
    return refs
