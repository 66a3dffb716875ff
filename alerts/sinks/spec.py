"""The sink interface every sink module implements (one `SinkSpec` object each), and the HTTP POST they share.

A sink module (alertmanager.py, pagerduty.py, ...) exports `SPEC: SinkSpec[ItsConfigModel]`; mypy checks the
object against the protocol there. `alerts.sinks.registry.SINKS` maps each config `kind` to its spec; the delivery
worker knows sinks only through this protocol.
Secrets: a URL may carry a token (Slack, webhooks), so errors name the exception type and the host only.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal, Protocol, TypeVar
from urllib.parse import urlsplit

import httpx

from alerts.model import Notification, SinkContext
from monitor.core.config import Config
from monitor.core.retry_after import retry_after_seconds
from monitor.core.status import is_server_error

Verdict = Literal["accepted", "retry", "rejected"]
SinkConfig = TypeVar("SinkConfig", contravariant=True)
"""The sink's config model (monitor.core.config.AlertmanagerSink, ...)."""


REASON_CHARS = 200
"""How much of a refusing receiver's body is kept as its reason (one line)."""


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one delivery attempt ended; `error` never holds a URL path, a header or a body. `reason` is what a
    receiver that refused the request (4xx) said in its body: at most REASON_CHARS characters on one line (the log
    redactor still scrubs it), so an operator learns which label it disliked."""

    verdict: Verdict
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None
    reason: str | None = None

    @property
    def refused_content(self) -> bool:
        """The receiver refused what was in the request (400 Bad Request, 422 Unprocessable), not the request
        itself (401/403/404: a URL or key problem): a batch answered so may hold one alert it dislikes."""
        return self.verdict == "rejected" and self.status_code in (400, 422)


class SinkSpec(Protocol[SinkConfig]):
    """What the delivery worker needs to know about one kind of sink."""

    @property
    def kind(self) -> str:
        """The config `kind` this spec serves."""
        ...

    @property
    def batch_size(self) -> int:
        """How many queued notifications one request may carry (1: one request per notification)."""
        ...

    @property
    def resends(self) -> bool:
        """Whether firing alerts (and the watchdog) are re-posted every `resend_interval` while nothing is queued."""
        ...

    @property
    def honours_inhibition(self) -> bool:
        """Whether the sink inhibits dependents' alerts itself (Alertmanager, from the `depends_on` and `target`
        labels and its inhibit rules): it is told about every alert. A direct sink (PagerDuty, Slack, a webhook) is
        not told about a dependent's alert while the check it depends on fails (lifecycle.hold): one outage, one
        page."""
        ...

    def lanes(self, sink: SinkConfig) -> Sequence[str]:
        """One entry per delivery lane (one per URL; an HA Alertmanager pair has two): the host it posts to.

        Lanes are independent FIFO queues; the host is the only part of a sink URL that may be logged.
        """
        ...

    def accepts(self, notification: Notification) -> bool:
        """Whether this kind of sink is told about this notification at all (queued or re-posted)."""
        ...

    def build_payload(
        self, sink: SinkConfig, notifications: Sequence[Notification], *, ctx: SinkContext, now: float
    ) -> Any:
        """The JSON body for a batch of at most `batch_size` notifications; pure."""
        ...

    async def send(
        self, client: httpx.AsyncClient, sink: SinkConfig, notifications: Sequence[Notification], *,
        ctx: SinkContext, now: float, lane: int,
    ) -> SendResult:
        """Post one batch through lane number `lane`; never raises for a network problem."""
        ...


def http_client(config: Config) -> httpx.AsyncClient:
    """The sinks' HTTP client: no redirects (a sink that redirects is misconfigured, and a redirect could carry a
    token elsewhere), our User-Agent, and the environment's proxies (HTTPS_PROXY, HTTP_PROXY, ALL_PROXY, NO_PROXY),
    CA bundle (SSL_CERT_FILE, SSL_CERT_DIR) and .netrc only with `alerts.trust_env: true` (httpx's trust_env): a
    daemon started from a shell must not pick up that shell's proxy by accident."""
    return httpx.AsyncClient(trust_env=config.alerts.trust_env, follow_redirects=False,
                             headers={"User-Agent": config.http.user_agent})


def host_of(url: str) -> str:
    """The host (and port) of a URL: the only part of a sink URL that may be logged."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def classify(status: int) -> Verdict:
    """2xx accepted; 408, 429 and 5xx worth retrying; any other 4xx (or 1xx/3xx) a configuration error."""
    if 200 <= status <= 299:
        return "accepted"
    if status in (408, 429) or is_server_error(status):
        return "retry"
    return "rejected"


async def post_json(
    client: httpx.AsyncClient, url: str, body: Any, *, headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> SendResult:
    """POST `body` as JSON and classify the answer; never raises for a network problem."""
    try:
        response = await client.post(url, json=body, headers=dict(headers or {}), timeout=timeout)
    except httpx.HTTPError as exc:
        return SendResult("retry", error=type(exc).__name__)
    verdict = classify(response.status_code)
    retry_after = retry_after_seconds(response.headers.get("retry-after"), time.time()) if verdict == "retry" else None
    reason = None
    if verdict == "rejected":
        reason = " ".join(response.text[: REASON_CHARS * 4].split())[:REASON_CHARS] or None
    return SendResult(verdict, status_code=response.status_code, retry_after=retry_after, reason=reason)

