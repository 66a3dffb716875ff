"""The configuration schema (DESIGN §9): strict pydantic models, defaults and cross-field rules."""

from __future__ import annotations

import re
import string
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from monitor.durations import parse_duration

Duration = Annotated[float, BeforeValidator(parse_duration)]
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
    "MonitorWatchdog",
]


class Strict(BaseModel):
    """Base for every config model: unknown keys are errors, values are immutable once loaded."""

    model_config = ConfigDict(extra="forbid", frozen=True)


def _upper(value: object) -> object:
    return value.upper() if isinstance(value, str) else value


Method = Annotated[HttpMethod, BeforeValidator(_upper)]


# ---------------------------------------------------------------------------------------------- targets


class Target(Strict):
    """A system under watch: an HTTP base URL (backend, PostgREST) or a PostgreSQL DSN."""

    base_url: str | None = None
    dsn: SecretStr | None = None
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    api_key: SecretStr | None = Field(default=None, description="PostgREST/Supabase `apikey` header")
    bearer_token: SecretStr | None = Field(default=None, description="`Authorization: Bearer` for PostgREST")
    verify_tls: bool = True
    ca_file: Path | None = None

    @field_validator("base_url")
    @classmethod
    def _base_url(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not re.match(r"^https?://[^/\s?#]+", value):
            raise ValueError("must be an absolute http:// or https:// URL such as http://127.0.0.1:8000")
        return value.rstrip("/")

    @field_validator("dsn")
    @classmethod
    def _dsn(cls, value: SecretStr | None) -> SecretStr | None:
        if value is None:
            return None
        raw = value.get_secret_value().strip()
        if not raw:
            raise ValueError("is empty; set it to a PostgreSQL URL such as postgresql://user@host:5432/db")
        if not (raw.startswith(("postgresql://", "postgres://")) or "=" in raw):
            raise ValueError(
                "must be a PostgreSQL URL (postgresql://user:password@host:5432/db) or a key=value conninfo"
            )
        return value

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        if (self.base_url is None) == (self.dsn is None):
            raise ValueError("set exactly one of base_url (HTTP target) or dsn (PostgreSQL target)")
        return self

    @property
    def is_http(self) -> bool:
        """Whether this target is reached over HTTP."""
        return self.base_url is not None


# ---------------------------------------------------------------------------------------------- checks


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


class CheckBase(Strict):
    """Fields shared by every kind of check."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    target: str
    interval: Duration
    timeout: Duration
    failure_threshold: Annotated[int, Field(ge=1, le=100)]
    success_threshold: Annotated[int, Field(ge=1, le=100)]
    enabled: bool = True
    labels: dict[str, str] = Field(default_factory=dict, description="extra labels on this check's alerts")
    maintenance: list[Maintenance] = Field(default_factory=list)
    disable_alerts: list[AlertName] = Field(default_factory=list)

    @field_validator("interval")
    @classmethod
    def _interval(cls, value: float) -> float:
        if value < 0.1:
            raise ValueError("must be at least 100ms")
        return value

    @field_validator("timeout")
    @classmethod
    def _timeout(cls, value: float) -> float:
        if value <= 0:
            raise ValueError("must be greater than 0")
        return value

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> CheckBase:
        require_timeout_below_interval(self.timeout, self.interval)
        return self


class HttpExpect(Strict):
    """What an HTTP response must look like."""

    status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=lambda: [200], min_length=1)
    json_fields: dict[str, Any] = Field(
        default_factory=dict,
        alias="json",
        description="dotted path -> expected value, e.g. {status: healthy, 'checks.db': ok}",
    )
    body_regex: str | None = None
    max_latency: Duration | None = Field(default=None, description="slower than this is outcome `slow`")

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                re.compile(value)
            except re.error as exc:
                raise ValueError(f"is not a valid regular expression: {exc}") from None
        return value


class RequestSpec(Strict):
    """An HTTP request relative to the target's base_url; `{name}` in path is filled from params."""

    method: Method = "GET"
    path: str = "/"
    params: dict[str, str] = Field(default_factory=dict, description="fills {placeholders} in path")
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("path")
    @classmethod
    def _path(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError(f"must start with '/', got {value!r}")
        return value

    @model_validator(mode="after")
    def _fill(self) -> RequestSpec:
        if self.json_body is not None and self.body is not None:
            raise ValueError("set json or body, not both")
        names = path_placeholders(self.path)
        missing = sorted(names - set(self.params))
        unused = sorted(set(self.params) - names)
        if missing:
            raise ValueError(
                f"path {self.path!r} has placeholders with no value in params: {', '.join(missing)}; "
                f"add params: {{{', '.join(f'{m}: ...' for m in missing)}}}"
            )
        if unused:
            raise ValueError(f"params {', '.join(unused)} do not appear in path {self.path!r}")
        return self

    def filled_path(self) -> str:
        """The path with every placeholder replaced by its (URL-quoted) parameter."""
        from urllib.parse import quote

        return self.path.format_map({k: quote(v, safe="") for k, v in self.params.items()})


def path_placeholders(path: str) -> set[str]:
    """Names of the `{placeholder}` fields in a path template."""
    try:
        return {field for _, field, _, _ in string.Formatter().parse(path) if field}
    except ValueError as exc:
        raise ValueError(f"path {path!r} is not a valid template: {exc}") from None


class HttpCheck(CheckBase, RequestSpec):
    """Kind `http`: request a URL and assert status, JSON fields, body regex and latency."""

    kind: Literal["http"]
    expect: HttpExpect = Field(default_factory=HttpExpect)


class AuthExpect(Strict):
    """What a protected endpoint must answer to a caller without valid credentials."""

    status: list[Annotated[int, Field(ge=400, le=499)]] = Field(default_factory=lambda: [401, 403], min_length=1)
    body_regex: str | None = None

    _regex = field_validator("body_regex")(HttpExpect._regex.__func__)  # type: ignore[attr-defined]


class AuthContractCheck(CheckBase, RequestSpec):
    """Kind `auth_contract`: no credentials and forged ones must all be refused (401/403), never 2xx/5xx."""

    kind: Literal["auth_contract"]
    expect: AuthExpect = Field(default_factory=AuthExpect)
    forged: list[ForgedToken] = Field(default_factory=lambda: list(ALL_FORGED))
    jwt_secret: SecretStr | None = Field(
        default=None, description="when set, the `expired` token is signed with the real secret"
    )


class Synthesize(RequestSpec):
    """A real text-to-speech request whose answer must be audio."""

    method: Method = "POST"
    min_bytes: Annotated[int, Field(ge=1)] = 1000
    content_types: list[str] = Field(default_factory=lambda: ["audio/"], min_length=1)
    formats: list[AudioFormat] = Field(default_factory=lambda: list(ALL_AUDIO_FORMATS), min_length=1)
    max_latency: Duration | None = None


class VoiceCheck(CheckBase, RequestSpec):
    """Kind `voice`: the voice health endpoint, then optionally a synthesis round trip."""

    kind: Literal["voice"]
    expect: HttpExpect = Field(default_factory=HttpExpect)
    synthesize: Synthesize | None = None


TableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")]
ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")]


class DbCheck(CheckBase):
    """Kind `db`: PostgreSQL round trip (connect, SELECT 1, tables, columns, RLS, canary)."""

    kind: Literal["db"]
    required_tables: list[TableName] = Field(default_factory=list)
    required_columns: dict[TableName, list[ColumnName]] = Field(default_factory=dict)
    require_rls: bool = False
    canary: bool = False
    canary_table: TableName | None = Field(
        default=None, description="a table (key text primary key, value text) to write; default a temp table"
    )
    expect_read_only: bool = False
    pool: bool = False

    def all_tables(self) -> list[str]:
        """Required tables plus any table named only in required_columns, in a stable order."""
        seen = dict.fromkeys(self.required_tables)
        seen.update(dict.fromkeys(self.required_columns))
        return list(seen)


class PostgrestCheck(CheckBase):
    """Kind `postgrest`: `GET /rest/v1/<table>?select=*&limit=0` per required table."""

    kind: Literal["postgrest"]
    required_tables: list[TableName] = Field(min_length=1)
    schema_name: str = Field(default="public", alias="schema")
    rest_path: str = "/rest/v1"

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


Check = Annotated[
    HttpCheck | AuthContractCheck | VoiceCheck | DbCheck | PostgrestCheck,
    Field(discriminator="kind"),
]
HTTP_KINDS = frozenset({"http", "auth_contract", "voice", "postgrest"})
CHECK_KINDS: tuple[str, ...] = ("http", "auth_contract", "voice", "db", "postgrest")


# ---------------------------------------------------------------------------------------------- alerting


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
SINK_KINDS: tuple[str, ...] = ("alertmanager", "pagerduty", "slack", "webhook")


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
    flapping: Flapping = Field(default_factory=Flapping)
    maintenance: list[Maintenance] = Field(default_factory=list)
    external_labels: dict[str, str] = Field(default_factory=dict)
    rules: dict[AlertName, RuleOverride] = Field(default_factory=dict)
    watchdog: bool = True


# ---------------------------------------------------------------------------------------------- root


class Defaults(Strict):
    """Values a check takes when it does not set them itself."""

    interval: Duration = 30.0
    timeout: Duration = 5.0
    failure_threshold: Annotated[int, Field(ge=1, le=100)] = 2
    success_threshold: Annotated[int, Field(ge=1, le=100)] = 2

    @model_validator(mode="after")
    def _timeout_below_interval(self) -> Defaults:
        require_timeout_below_interval(self.timeout, self.interval)
        return self


class HttpSettings(Strict):
    """Shared HTTP client limits."""

    max_in_flight: Annotated[int, Field(ge=1, le=1024)] = 16
    body_limit: Annotated[int, Field(ge=1024)] = 1024 * 1024
    user_agent: str = "pam-monitor"


_INHERITED = ("interval", "timeout", "failure_threshold", "success_threshold")


class Config(Strict):
    """The whole configuration file after `${VAR}` expansion and environment overrides."""

    service: Annotated[str, Field(min_length=1)] = "pam-backend"
    listen: str = "127.0.0.1:9108"
    state_dir: Path = Path("./.pam-monitor")
    shutdown_timeout: Duration = 5.0
    log_level: Literal["debug", "info", "warning", "error"] = "info"
    defaults: Defaults = Field(default_factory=Defaults)
    http: HttpSettings = Field(default_factory=HttpSettings)
    targets: dict[Annotated[str, Field(pattern=NAME_PATTERN)], Target] = Field(default_factory=dict)
    checks: list[Check] = Field(default_factory=list)
    alerts: Alerts = Field(default_factory=Alerts)

    @model_validator(mode="before")
    @classmethod
    def _inherit_defaults(cls, data: Any) -> Any:
        """Fill each check's interval/timeout/thresholds from `defaults` before the check is validated."""
        if not isinstance(data, dict):
            return data
        raw_defaults = data.get("defaults") or {}
        if not isinstance(raw_defaults, dict | Defaults):
            return data
        try:
            defaults = raw_defaults if isinstance(raw_defaults, Defaults) else Defaults.model_validate(raw_defaults)
        except ValueError:
            defaults = Defaults()  # the defaults block itself is reported by normal validation
        checks = data.get("checks")
        if isinstance(checks, list):
            filled = []
            for check in checks:
                if isinstance(check, dict):
                    check = {k: getattr(defaults, k) for k in _INHERITED} | check
                filled.append(check)
            data = {**data, "checks": filled}
        return data

    @field_validator("listen")
    @classmethod
    def _listen(cls, value: str) -> str:
        parse_listen(value)
        return value


def parse_listen(value: str) -> tuple[str, int]:
    """Split `host:port` (IPv6 as `[::1]:9108`); raise ValueError with the accepted form."""
    match = re.fullmatch(r"\[?([^\[\]]*?)\]?:(\d{1,5})", value.strip())
    if match is None or not (0 <= int(match.group(2)) <= 65535):
        raise ValueError(f"must be host:port such as 127.0.0.1:9108 or [::1]:9108, got {value!r}")
    return match.group(1) or "0.0.0.0", int(match.group(2))  # noqa: S104 - ":9108" means every address


def cross_check(config: Config) -> list[tuple[str, str]]:
    """Rules that span several parts of the file; returns (field path, problem) pairs."""
    problems: list[tuple[str, str]] = []
    seen: dict[str, int] = {}
    for i, check in enumerate(config.checks):
        where = f"checks[{i}]"
        if check.name in seen:
            problems.append(
                (f"{where}.name", f"duplicate check name {check.name!r} (also checks[{seen[check.name]}]); "
                 "names must be unique")
            )
        seen.setdefault(check.name, i)
        target = config.targets.get(check.target)
        if target is None:
            known = ", ".join(sorted(config.targets)) or "none defined"
            problems.append((f"{where}.target", f"unknown target {check.target!r}; defined targets: {known}"))
            continue
        wants_http = check.kind in HTTP_KINDS
        if wants_http and not target.is_http:
            problems.append(
                (f"{where}.target", f"kind {check.kind} needs an HTTP target (base_url), "
                 f"but target {check.target!r} has a dsn")
            )
        if not wants_http and target.is_http:
            problems.append(
                (f"{where}.target", f"kind {check.kind} needs a PostgreSQL target (dsn), "
                 f"but target {check.target!r} has a base_url")
            )
    names: dict[str, int] = {}
    for i, sink in enumerate(config.alerts.sinks):
        name = sink.display_name
        if name in names:
            problems.append(
                (f"alerts.sinks[{i}].name", f"duplicate sink name {name!r} (also alerts.sinks[{names[name]}]); "
                 "give each sink of the same kind a distinct name")
            )
        names.setdefault(name, i)
    return problems
