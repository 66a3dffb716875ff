"""Signed-in checks: the `journey` and `tenant_isolation` kinds and the `{placeholder}` templates.

A placeholder is `{name}` with `name` an identifier; any other text in braces (a regex's `{3}`, JSON text) is kept
as written. Known names: `sub` (the identity's user id), `run_id` (fresh each run), the check's `params`, and
the names captured by EARLIER steps.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator, Mapping
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field, SecretStr, field_validator, model_validator

from monitor.core.config.base import NAME_PATTERN, Method, Strict
from monitor.core.config.checks import (
    CheckBase,
    Cors,
    HttpExpect,
    RefusalShape,
    RequestSpec,
    UrlPath,
    path_placeholders,
)

SUB = "sub"
RUN_ID = "run_id"
SIGN_IN_STEP = "sign_in"
"""The step name a journey (or any signed-in check) fails at when its identity cannot get a token."""

MAX_STEPS = 20
_PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_CAPTURE = re.compile(r"^(?:json\.[^.\s]+(?:\.[^.\s]+)*|header\.[!#$%&'*+\-.^_`|~0-9A-Za-z]+|cookie\.[^\s;=,]+)$")
VarName = Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")]


def template_names(text: str) -> list[str]:
    """The placeholder names in `text`, in order of appearance (repeats kept)."""
    return _PLACEHOLDER.findall(text)


def fill_template(text: str, values: Mapping[str, str], quote: Callable[[str], str] | None = None) -> str:
    """`text` with each `{name}` replaced by `values[name]` (passed through `quote` when given); unknown names
    are left as written (load-time validation makes that impossible in a loaded config)."""

    def replace(match: re.Match[str]) -> str:
        value = values.get(match.group(1))
        if value is None:
            return match.group(0)
        return quote(value) if quote is not None else value

    return _PLACEHOLDER.sub(replace, text)


def fill_json(value: Any, values: Mapping[str, str]) -> Any:
    """A JSON value with placeholders filled in every string value (keys are kept as written)."""
    if isinstance(value, str):
        return fill_template(value, values)
    if isinstance(value, list):
        return [fill_json(item, values) for item in value]
    if isinstance(value, dict):
        return {key: fill_json(item, values) for key, item in value.items()}
    return value


def _json_strings(value: Any) -> Iterator[str]:
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _json_strings(item)
    elif isinstance(value, dict):
        for item in value.values():
            yield from _json_strings(item)


class JourneyStep(Strict):
    """One HTTP request of a journey, its expectations and the values it captures for later steps."""

    name: Annotated[str, Field(pattern=NAME_PATTERN)]
    method: Method = "GET"
    path: UrlPath
    query: dict[str, str] = Field(default_factory=dict)
    headers: dict[str, SecretStr] = Field(default_factory=dict)
    json_body: Any = Field(default=None, alias="json")
    body: str | None = None
    expect: HttpExpect = Field(default_factory=HttpExpect)
    capture: dict[VarName, str] = Field(
        default_factory=dict,
        description="name -> json.<dotted.path> | header.<Name> | cookie.<name>, usable by later steps as {name}",
    )

    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if value == SIGN_IN_STEP:
            raise ValueError(f"{SIGN_IN_STEP!r} is reserved: a failed sign-in is reported as step {SIGN_IN_STEP!r}")
        return value

    @field_validator("capture")
    @classmethod
    def _capture(cls, value: dict[str, str]) -> dict[str, str]:
        for name, source in value.items():
            if _CAPTURE.fullmatch(source) is None:
                raise ValueError(
                    f"{name}: {source!r} is not a capture source; write json.<dotted.path>, header.<Name> "
                    "or cookie.<name>"
                )
        return value

    @model_validator(mode="after")
    def _one_body(self) -> JourneyStep:
        if self.json_body is not None and self.body is not None:
            raise ValueError("set json or body, not both")
        return self

    def placeholders(self) -> list[tuple[str, str]]:
        """(where, name) for every placeholder the step uses: path, query, headers, json, body, expect."""
        found: list[tuple[str, str]] = [("path", n) for n in template_names(self.path)]
        for key, text in self.query.items():
            found += [(f"query.{key}", n) for n in template_names(text)]
        for key, secret in self.headers.items():
            found += [(f"headers.{key}", n) for n in template_names(secret.get_secret_value())]
        for text in _json_strings(self.json_body):
            found += [("json", n) for n in template_names(text)]
        if self.body is not None:
            found += [("body", n) for n in template_names(self.body)]
        for key, expected in self.expect.json_fields.items():
            found += [(f"expect.json.{key}", n) for text in _json_strings(expected) for n in template_names(text)]
        if self.expect.body_regex is not None:
            found += [("expect.body_regex", n) for n in template_names(self.expect.body_regex)]
        return found


class JourneyCheck(CheckBase):
    """Kind `journey`: ordered HTTP steps as a signed-in identity; a failure names its step."""

    kind: Literal["journey"]
    identity: str | None = Field(default=None, description="the identity whose token every step sends")
    params: dict[VarName, str] = Field(default_factory=dict, description="values for {placeholders}")
    steps: list[JourneyStep] = Field(min_length=1, max_length=MAX_STEPS)
    cors: Cors | None = Field(default=None, description="every step is judged as a browser on this origin would")

    @model_validator(mode="after")
    def _known_placeholders(self) -> JourneyCheck:
        reserved = {RUN_ID} | ({SUB} if self.identity is not None else set())
        clash = sorted(reserved & set(self.params))
        if clash:
            raise ValueError(f"params must not be named {', '.join(clash)}: that name is filled by pam-monitor")
        seen_steps: dict[str, int] = {}
        captured: set[str] = set()
        captured_by = {name: step.name for step in self.steps for name in step.capture}
        for i, step in enumerate(self.steps):
            where = f"steps[{i}] ({step.name})"
            if step.name in seen_steps:
                raise ValueError(f"{where}: duplicate step name (also steps[{seen_steps[step.name]}])")
            seen_steps[step.name] = i
            known = reserved | set(self.params) | captured
            for place, name in step.placeholders():
                if name in known:
                    continue
                if name == SUB:
                    hint = "{sub} needs the check's identity; add identity: <name>"
                elif step.capture.get(name) is not None:
                    hint = (f"{name} is captured from this step's own response, after its request is sent; use "
                            "it in a later step")
                elif name in captured_by:
                    hint = (f"{name} is captured by step {captured_by[name]}, which does not run before this "
                            "request (a step's captures serve only the steps after it)")
                else:
                    names = ", ".join(sorted(known))
                    hint = f"known here: {names}; capture it in an earlier step or add it to params"
                raise ValueError(f"{where}.{place}: placeholder {{{name}}} is not known; {hint}")
            for name in step.capture:
                if name in reserved or name in self.params:
                    raise ValueError(f"{where}.capture: {name!r} is already a placeholder (sub, run_id or a param)")
            captured |= set(step.capture)
        return self


class TenantIsolationCheck(CheckBase, RequestSpec):
    """Kind `tenant_isolation`: as the identity, request ANOTHER user's resource: 401/403/404 is ok, 2xx is
    `auth_bypass`."""

    kind: Literal["tenant_isolation"]
    identity: str = Field(description="the identity whose token is sent; it must NOT own the requested resource")
    own_read: bool = Field(
        default=True, description="first read the identity's OWN resource (2xx required) as the control that the "
        "identity works; false turns the control off")
    own_params: dict[str, str] = Field(
        default_factory=dict, description="path values for the identity's own resource ({sub} allowed); default: "
        "the path's user placeholder (its only one, or the one named like user) set to {sub}")
    refusal: RefusalShape | None = Field(
        default=None, description="the owner check's refusal shape; default: learned from the first good runs")

    @model_validator(mode="after")
    def _own_params(self) -> TenantIsolationCheck:
        if not self.own_params:
            return self
        names = path_placeholders(self.path)
        unknown = sorted(set(self.own_params) - names)
        missing = sorted(names - set(self.own_params))
        if unknown or missing:
            raise ValueError(
                f"own_params must give exactly the placeholders of path {self.path!r} ("
                + (", ".join(sorted(names)) or "none") + f"); unknown: {', '.join(unknown) or 'none'}, missing: "
                f"{', '.join(missing) or 'none'}")
        bad = sorted(name for value in self.own_params.values() for name in template_names(value) if name != SUB)
        if bad:
            raise ValueError(f"own_params may use only {{sub}}, not {', '.join('{' + b + '}' for b in bad)}")
        return self

    def own_values(self, sub: str) -> dict[str, str] | None:
        """The path values of the identity's own resource for the user `sub`; None when the control is off or the
        path has no placeholder that names the user (then the result says there was no control)."""
        if not self.own_read:
            return None
        if self.own_params:
            return {name: fill_template(value, {SUB: sub}) for name, value in self.own_params.items()}
        names = sorted(path_placeholders(self.path))
        users = [n for n in names if "user" in n.lower()] if len(names) != 1 else names
        if len(users) != 1:
            return None
        return {**self.params, users[0]: sub}
