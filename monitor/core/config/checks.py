"""Check models, one per kind: the fields a check of that kind accepts and the rules between them."""

from __future__ import annotations

import re
import string
from typing import Annotated, Any, ClassVar, Literal

from pydantic import (
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


class CheckBase(Strict):
    """Fields shared by every kind of check. `target_type` says which kind of target the check needs."""

    target_type: ClassVar[Literal["http", "dsn"]] = "http"

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
    identity: str | None = Field(default=None, description="send this identity's token (Authorization: Bearer)")
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
RoleName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$-]{0,62}$")]
ColumnName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_$]*$")]


def split_table(name: str, default_schema: str = "public") -> tuple[str, str]:
    """`schema.table` -> (schema, table); a bare name is in `default_schema`."""
    schema, _, table = name.rpartition(".")
    return (schema or default_schema, table)


class DbCheck(CheckBase):
    """Kind `db`: PostgreSQL round trip (connect, SELECT 1, tables, columns, RLS, canary)."""

    target_type: ClassVar[Literal["http", "dsn"]] = "dsn"
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

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)
