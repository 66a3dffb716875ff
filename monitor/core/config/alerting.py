"""The alerts section: sinks, timing, flapping, maintenance, per-rule overrides."""

from __future__ import annotations

import re
import typing
from typing import Annotated, Literal

from pydantic import (
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from monitor.core.config.base import NAME_PATTERN, AlertName, Duration, Maintenance, Strict


class SinkBase(Strict):
    """Fields shared by every notification sink."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)] | None = None
    timeout: Duration = 10.0
    max_attempts: Annotated[int, Field(ge=1, le=1000)] = 50

    @property
    def display_name(self) -> str:
        """The sink's name in logs and metrics (never its URL, which may hold a token)."""
        return self.name or self.kind  # type: ignore[attr-defined]


class AlertmanagerSink(SinkBase):
    """Alertmanager API v2: alerts are POSTed to `<url>/api/v2/alerts`."""

    kind: Literal["alertmanager"]
    url: str | None = None
    urls: list[str] = Field(default_factory=list, description="several Alertmanagers of one HA cluster")
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _some_url(self) -> AlertmanagerSink:
        every = ([self.url] if self.url else []) + self.urls
        if not every:
            raise ValueError("set url (or urls) to the Alertmanager base URL, e.g. http://127.0.0.1:9093")
        for url in every:
            if not re.match(r"^https?://[^/\s]+", url):
                raise ValueError(f"{url!r} is not an http(s) URL")
        return self

    def all_urls(self) -> list[str]:
        """Every configured Alertmanager base URL, without a trailing slash."""
        return [u.rstrip("/") for u in ([self.url] if self.url else []) + self.urls]


class PagerDutySink(SinkBase):
    """PagerDuty Events API v2."""

    kind: Literal["pagerduty"]
    routing_key: SecretStr
    url: str = "https://events.pagerduty.com/v2/enqueue"

    @field_validator("routing_key")
    @classmethod
    def _key(cls, value: SecretStr) -> SecretStr:
        if not value.get_secret_value().strip():
            raise ValueError("is empty; set it to the integration's 32-character routing key")
        return value


class SlackSink(SinkBase):
    """Slack incoming webhook (the URL is a secret: it carries the token)."""

    kind: Literal["slack"]
    url: SecretStr

    @field_validator("url")
    @classmethod
    def _url(cls, value: SecretStr) -> SecretStr:
        if not re.match(r"^https?://[^/\s]+", value.get_secret_value()):
            raise ValueError("must be the incoming webhook's https:// URL")
        return value


class WebhookSink(SinkBase):
    """Generic JSON webhook (URL and headers are treated as secrets)."""

    kind: Literal["webhook"]
    url: SecretStr
    headers: dict[str, SecretStr] = Field(default_factory=dict)

    _url = field_validator("url")(SlackSink._url.__func__)  # type: ignore[attr-defined]


Sink = Annotated[
    AlertmanagerSink | PagerDutySink | SlackSink | WebhookSink,
    Field(discriminator="kind"),
]
"""A sink as the config file gives it; a new sink's model is added here and nowhere else in the config."""
SINK_KINDS: tuple[str, ...] = tuple(
    typing.get_args(model.model_fields["kind"].annotation)[0] for model in typing.get_args(typing.get_args(Sink)[0])
)
"""Every sink kind, in the union's order (the `kind:` values a sink may use)."""


class Flapping(Strict):
    """An alert that changes state more than `max_transitions` times in `window` is reported once as flapping."""

    window: Duration = 600.0
    max_transitions: Annotated[int, Field(ge=2)] = 6


class RuleOverride(Strict):
    """Per-alertname switches."""

    enabled: bool = True
    severity: Literal["critical", "warning", "info", "none"] | None = None


class Alerts(Strict):
    """Alert rules, their timing and where notifications go."""

    sinks: list[Sink] = Field(default_factory=list)
    repeat_interval: Duration = 4 * 3600.0
    resend_interval: Duration = 60.0
    confirm_delay: Duration = 2.0
    rate_limited_after: Duration = Field(
        default=600.0, description="a check rate-limited (429) this long raises CheckFailed: the monitor is blind"
    )
    flapping: Flapping = Field(default_factory=Flapping)
    maintenance: list[Maintenance] = Field(default_factory=list)
    external_labels: dict[str, str] = Field(default_factory=dict)
    rules: dict[AlertName, RuleOverride] = Field(default_factory=dict)
    watchdog: bool = True
    trust_env: bool = Field(
        default=False, description="sinks honour HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY (and SSL_CERT_FILE, "
        "SSL_CERT_DIR, .netrc) from the daemon's environment; off by default so a shell's proxy is never picked up by "
        "accident",
    )
    cert_warning: Duration = Field(
        default=14 * 86400.0, description="CertificateExpiring is a warning when a certificate expires sooner than this"
    )
    cert_critical: Duration = Field(
        default=3 * 86400.0, description="CertificateExpiring is critical when a certificate expires sooner than this"
    )
    credential_warning: Duration = Field(
        default=14 * 86400.0,
        description="MonitorCredentialExpiring is a warning when a credential pam-monitor sends expires sooner",
    )
    credential_critical: Duration = Field(
        default=3 * 86400.0,
        description="MonitorCredentialExpiring is critical when a credential pam-monitor sends expires sooner",
    )

    @model_validator(mode="after")
    def _credential_bands(self) -> Alerts:
        if not 0 < self.credential_critical < self.credential_warning:
            raise ValueError(
                f"credential_critical ({self.credential_critical / 86400:g}d) must be above 0 and below "
                f"credential_warning ({self.credential_warning / 86400:g}d); e.g. credential_warning: 14d, "
                "credential_critical: 3d"
            )
        return self

    @model_validator(mode="after")
    def _certificate_bands(self) -> Alerts:
        if not 0 < self.cert_critical < self.cert_warning:
            raise ValueError(
                f"cert_critical ({self.cert_critical / 86400:g}d) must be above 0 and below cert_warning "
                f"({self.cert_warning / 86400:g}d); e.g. cert_warning: 14d, cert_critical: 3d"
            )
        return self

    @field_validator("rules")
    @classmethod
    def _certificate_severity(cls, value: dict[AlertName, RuleOverride]) -> dict[AlertName, RuleOverride]:
        override = value.get("CertificateExpiring")
        if override is not None and override.severity is not None:
            raise ValueError(
                "CertificateExpiring.severity cannot be set: its severity is warning under alerts.cert_warning and "
                "critical under alerts.cert_critical; change those durations instead (or set enabled: false)"
            )
        override = value.get("MonitorCredentialExpiring")
        if override is not None and override.severity is not None:
            raise ValueError(
                "MonitorCredentialExpiring.severity cannot be set: its severity is warning under "
                "alerts.credential_warning and critical under alerts.credential_critical; change those durations "
                "instead (or set enabled: false)"
            )
        return value

