"""Sending to sinks: one HTTP POST classified as accepted / retry / rejected, and backoff with full jitter.

The outbox worker itself lives in the engine (one task per lane); this module holds what every sink shares.
Secrets: a URL may carry a token (Slack, webhooks), so errors name the exception type and the host only.
"""

from __future__ import annotations

import email.utils
import random
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import httpx

Verdict = Literal["accepted", "retry", "rejected"]
BACKOFF_BASE = 1.0
BACKOFF_CAP = 300.0


@dataclass(frozen=True, slots=True)
class SendResult:
    """How one delivery attempt ended; `error` never holds a URL path, a header or a body."""

    verdict: Verdict
    status_code: int | None = None
    error: str | None = None
    retry_after: float | None = None


def host_of(url: str) -> str:
    """The host (and port) of a URL: the only part of a sink URL that may be logged."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1]


def classify(status: int) -> Verdict:
    """2xx accepted; 408, 429 and 5xx worth retrying; any other 4xx (or 1xx/3xx) a configuration error."""
    if 200 <= status <= 299:
        return "accepted"
    if status in (408, 429) or status >= 500:
        return "retry"
    return "rejected"


async def post_json(
    client: httpx.AsyncClient, url: str, body: Any, *, headers: Mapping[str, str] | None = None,
    timeout: float = 10.0,
) -> SendResult:
    """POST `body` as JSON and classify the answer; never raises for a network problem."""
    try:
        response = await client.post(url, json=body, headers=dict(headers or {}), timeout=timeout)
    except httpx.TimeoutException as exc:
        return SendResult("retry", error=type(exc).__name__)
    except httpx.HTTPError as exc:
        return SendResult("retry", error=type(exc).__name__)
    verdict = classify(response.status_code)
    retry_after = _retry_after(response.headers.get("retry-after")) if verdict == "retry" else None
    return SendResult(verdict, status_code=response.status_code, retry_after=retry_after)


def backoff(attempt: int, *, base: float = BACKOFF_BASE, cap: float = BACKOFF_CAP,
            rng: random.Random | None = None) -> float:
    """Seconds to wait before retry number `attempt` (1-based): full jitter, uniform in [0, min(cap, base*2^n)).

    Full jitter (AWS architecture blog, "Exponential Backoff And Jitter") spreads replicas that failed
    together so they do not retry in lock step.
    """
    ceiling = min(cap, base * (2 ** min(attempt, 30)))
    return (rng or random).uniform(0, ceiling)


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        parsed = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, parsed.timestamp() - time.time())
