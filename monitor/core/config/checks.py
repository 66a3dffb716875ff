"""Check models, one per kind: the fields a check of that kind accepts and the rules between them."""

from __future__ import annotations

import os
import re
import string
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
    AfterValidator,
    ConfigDict,
    Field,
    SecretStr,
    field_validator,
    model_validator,
)

from monitor.core.config.base import (
    ALL_AUDIO_FORMATS,
    ALL_FORGED,
    NAME_PATTERN,
    AlertName,
    AudioFormat,
    Duration,
    ForgedToken,
    Maintenance,
    Method,
    Strict,
    require_timeout_below_interval,
)
from monitor.core.config.links import LinkTemplate
from monitor.core.config.matchers import validate_json_expectations
from monitor.core.config.slo import Slo


class CheckBase(Strict):
    """Fields shared by every kind of check. `target_type` says which kind of target the check needs ("none": the
    check has no target, e.g. `heartbeat`)."""

    target_type: ClassVar[Literal["http", "dsn", "none"]] = "http"

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
    depends_on: list[str] = Field(
        default_factory=list, description="checks whose failure explains this one's (its alerts are held back)"
    )
    runbook_url: LinkTemplate | None = Field(default=None, description="runbook link of this check's alerts")
    dashboard_url: LinkTemplate | None = Field(default=None, description="dashboard link of this check's alerts")
    slo: Slo | None = Field(default=None, description="an objective for this check: {objective: 99.9%, window: 30d}")

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


class BodyExpect(Strict):
    """What a response body must hold: JSON fields (values or matchers) and a regular expression."""

    json_fields: dict[str, Any] = Field(
        default_factory=dict,
        alias="json",
        description="dotted path -> expected value or matcher ({one_of: [...]}, {exists: bool}, {regex: ...}), "
        "e.g. {status: healthy, 'checks.db': {one_of: [good, optimal]}} (monitor/core/config/matchers.py)",
    )
    body_regex: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("body_regex")
    @classmethod
    def _regex(cls, value: str | None) -> str | None:
        return valid_regex(value)

    @field_validator("json_fields")
    @classmethod
    def _json(cls, value: dict[str, Any]) -> dict[str, Any]:
        validate_json_expectations(value)
        return value


class HttpExpect(BodyExpect):
    """What an HTTP response must look like: status, body, latency."""

    status: list[Annotated[int, Field(ge=100, le=599)]] = Field(default_factory=lambda: [200], min_length=1)
    max_latency: Duration | None = Field(default=None, description="slower than this is outcome `slow`")


def valid_regex(value: str | None) -> str | None:
    """`value` unchanged when it is None or a regular expression that compiles; ValueError saying why otherwise."""
    if value is not None:
        try:
            re.compile(value)
        except re.error as exc:
            raise ValueError(f"is not a valid regular expression: {exc}") from None
    return value


def absolute_path(value: str) -> str:
    """`value` unchanged when it starts with '/'; ValueError saying so otherwise."""
    if not value.startswith("/"):
        raise ValueError(f"must start with '/', got {value!r}")
    return value


UrlPath = Annotated[str, AfterValidator(absolute_path)]
"""A request path relative to the target's base_url."""


class RequestSpec(Strict):
    """An HTTP request relative to the target's base_url; `{name}` in path is filled from params."""

    method: Method = "GET"
    path: UrlPath = "/"
    params: dict[str, str] = Field(default_factory=dict, description="fills {placeholders} in path")
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

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


class Cors(Strict):
    """What a browser on the frontend's origin needs (`cors:` on http, auth_contract and journey checks).

    Each run sends the preflight a browser would send (OPTIONS with `Origin`, `Access-Control-Request-Method` and
    `-Headers`) and puts `Origin` on the request itself; probes/_cors.py judges both answers.
    """

    origin: Annotated[str, Field(pattern=r"^https?://[^/\s?#]+$",
                                 description="the frontend's origin, e.g. https://app.example.com (no path)")]
    credentials: bool = Field(
        default=False, description="the frontend sends cookies or Authorization (fetch credentials: 'include')"
    )
    headers: list[Annotated[str, Field(pattern=r"^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$")]] = Field(
        default_factory=list, description="request headers the frontend sends, e.g. [Authorization, X-CSRF-Token]"
    )
    methods: list[Method] = Field(
        default_factory=list, description="methods the frontend uses here besides the check's own, e.g. [PUT]"
    )

    @field_validator("origin")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()


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
    cors: Cors | None = Field(default=None, description="judge the answers as a browser on this origin would")


class RefusalShape(Strict):
    """The shape of an endpoint's own refusal: its media type and top-level JSON keys (never values).

    Declared, it replaces the shape pam-monitor would otherwise learn from the check's first good runs: a refusal
    of another shape (a WAF's HTML page, a gateway's Basic challenge, a blocker's JSON) is then `invalid_response`.
    """

    media_type: Annotated[str, Field(pattern=r"^[A-Za-z0-9!#$&^_.+-]+/[A-Za-z0-9!#$&^_.+-]+$")] = Field(
        description="e.g. application/json (no parameters)")
    keys: list[Annotated[str, Field(min_length=1)]] | None = Field(
        default=None, description="the top-level keys of a JSON object body, e.g. [detail]; omit for non-JSON")

    model_config = ConfigDict(extra="forbid", frozen=True)


class AuthExpect(BodyExpect):
    """What a protected endpoint must answer to a caller without valid credentials.

    `status` are the refusal statuses; `body_regex` and `json` (the same matchers as http's `expect.json`), when
    set, must hold for every refusal's body, so a 403 from a CSRF middleware or an owner check is not taken for
    the auth layer's.
    """

    status: list[Annotated[int, Field(ge=400, le=499)]] = Field(default_factory=lambda: [401, 403], min_length=1)
    refusal: RefusalShape | None = Field(
        default=None, description="the auth layer's refusal shape; default: learned from the first good runs")

    @field_validator("status")
    @classmethod
    def _no_429(cls, value: list[int]) -> list[int]:
        if 429 in value:
            raise ValueError(
                "must not include 429: a rate limiter's answer says nothing about auth (it is outcome "
                "rate_limited, inconclusive)"
            )
        return value


_CLAIMS_SET_PER_VARIANT = ("exp", "iat")


class AuthContractCheck(CheckBase, RequestSpec):
    """Kind `auth_contract`: no credentials and forged ones must all be refused (401/403), never 2xx/5xx.

    `forged_claims` are put into every forged token (over Supabase's shape: sub, role, aud, iss); string values
    may hold `{placeholders}` filled from `params`, e.g. `{sub: "{user_id}"}`, so a forged token impersonates the
    very user in the path, which an owner check cannot tell from a real one.
    """

    kind: Literal["auth_contract"]
    expect: AuthExpect = Field(default_factory=AuthExpect)
    forged: list[ForgedToken] = Field(default_factory=lambda: list(ALL_FORGED))
    forged_claims: dict[str, Any] = Field(
        default_factory=dict, description="claims in every forged token; {placeholders} filled from params"
    )
    jwt_secret: SecretStr | None = Field(
        default=None, description="when set, the `expired` token is signed with the real secret"
    )
    cors: Cors | None = Field(default=None, description="judge the refusals as a browser on this origin would")

    @model_validator(mode="after")
    def _claims(self) -> AuthContractCheck:
        fixed = sorted(set(self.forged_claims) & set(_CLAIMS_SET_PER_VARIANT))
        if fixed:
            raise ValueError(
                f"forged_claims must not set {', '.join(fixed)}: each forged variant sets exp and iat itself "
                "(the expired token needs an exp in the past)"
            )
        for name, value in self.forged_claims.items():
            unknown = sorted(_claim_placeholders(value) - set(self.params))
            if unknown:
                known = ", ".join(sorted(self.params)) or "none"
                raise ValueError(
                    f"forged_claims.{name} uses placeholders with no value in params: {', '.join(unknown)} "
                    f"(params: {known})"
                )
        return self

    def filled_claims(self) -> dict[str, Any]:
        """`forged_claims` with every `{placeholder}` in a string (at any depth) replaced by its parameter."""
        return {name: _fill_claims(value, self.params) for name, value in self.forged_claims.items()}


def _claim_placeholders(value: Any) -> set[str]:
    if isinstance(value, str):
        try:
            return {field for _, field, _, _ in string.Formatter().parse(value) if field is not None}
        except ValueError as exc:
            raise ValueError(f"forged_claims value {value!r} is not a valid template: {exc}") from None
    if isinstance(value, dict):
        return set().union(*(_claim_placeholders(v) for v in value.values()))
    if isinstance(value, list):
        return set().union(*(_claim_placeholders(v) for v in value))
    return set()


def _fill_claims(value: Any, params: dict[str, str]) -> Any:
    if isinstance(value, str):
        return value.format_map(params)
    if isinstance(value, dict):
        return {k: _fill_claims(v, params) for k, v in value.items()}
    if isinstance(value, list):
        return [_fill_claims(v, params) for v in value]
    return value


class Synthesize(RequestSpec):
    """A real text-to-speech request whose answer must be audio."""

    method: Method = "POST"
    identity: str | None = Field(default=None, description="send this identity's token (Authorization: Bearer)")
    min_bytes: Annotated[int, Field(ge=1)] = 1000
    content_types: list[str] = Field(default_factory=lambda: ["audio/"], min_length=1)
    formats: list[AudioFormat] = Field(default_factory=lambda: list(ALL_AUDIO_FORMATS), min_length=1)
    max_latency: Duration | None = None


class VoiceCheck(CheckBase, RequestSpec):
    """Kind `voice`: the voice health endpoint, then optionally a synthesis round trip."""

    kind: Literal["voice"]
    expect: HttpExpect = Field(default_factory=HttpExpect)
    healthy_status: list[Annotated[str, Field(min_length=1)]] = Field(
        default_factory=lambda: ["ok", "healthy", "up", "pass"], min_length=1,
        description="values of the health body's JSON `status` field that mean healthy (case-insensitive); any "
        "other value is a failure (VoiceDegraded) even without expect.json",
    )
    synthesize: Synthesize | None = None


TableName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$")]
RoleName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")]
ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")]


def split_table(name: str, default_schema: str = "public") -> tuple[str, str]:
    """`schema.table` -> (schema, table); a bare name is in `default_schema`."""
    schema, _, table = name.rpartition(".")
    return (schema or default_schema, table)


MIGRATION_FILE = re.compile(r"^(\d+)_[^/]*\.sql$")
"""A Supabase migration file name: `<version>_<name>.sql`, the version being the leading digits."""


class Migrations(Strict):
    """A db check's `migrations`: the versions the repository holds, compared with the database's record of the
    applied ones (supabase_migrations.schema_migrations). Either `dir` (its `<version>_<name>.sql` file names are
    listed at every run, at most `max_files` entries; contents are never read) or `versions`."""

    dir: Path | None = Field(default=None, description="the repository's supabase/migrations directory")
    versions: list[Annotated[str, Field(pattern=r"^[0-9]{1,32}$")]] | None = Field(
        default=None, description="the expected migration versions, when the directory is not on the monitor's host"
    )
    max_files: Annotated[int, Field(ge=1, le=100_000)] = 5000

    @field_validator("dir")
    @classmethod
    def _readable_dir(cls, value: Path | None) -> Path | None:
        if value is None:
            return None
        if not value.is_dir():
            raise ValueError(f"{str(value)!r} is not a directory (give the repository's supabase/migrations path; "
                             "a relative path is resolved from the daemon's working directory)")
        if not os.access(value, os.R_OK | os.X_OK):
            raise ValueError(f"{str(value)!r} cannot be listed by this user (check its permissions)")
        return value

    @model_validator(mode="after")
    def _one_source(self) -> Migrations:
        if (self.dir is None) == (self.versions is None):
            raise ValueError("give exactly one of dir (a migrations directory) or versions (a list)")
        return self


class DbCheck(CheckBase):
    """Kind `db`: PostgreSQL round trip (connect, SELECT 1, tables, columns, RLS, canary)."""

    target_type: ClassVar[Literal["http", "dsn", "none"]] = "dsn"
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
    as_role: RoleName | None = Field(
        default=None, description="also read every required table as this role (SET LOCAL ROLE), as PostgREST does"
    )
    identity: str | None = Field(
        default=None, description="with as_role: the identity whose claims go into request.jwt.claims"
    )
    migrations: Migrations | None = Field(
        default=None, description="compare the repository's migrations with supabase_migrations.schema_migrations"
    )

    @model_validator(mode="after")
    def _identity_needs_role(self) -> DbCheck:
        if self.identity is not None and self.as_role is None:
            raise ValueError("identity needs as_role (the role its requests run as; Supabase: authenticated)")
        return self

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
    database: str | None = Field(
        default=None, description="a PostgreSQL target (dsn) of the same database: a table PostgREST does not know "
        "is looked up in its catalogue, telling a stale schema cache from a missing table"
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
