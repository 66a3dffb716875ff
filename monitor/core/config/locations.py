"""Where a problem is, in the models' terms: the type annotation at a pydantic error location, whether a value
there may be a secret, the keys a section accepts, and paths written as text (`checks[2].target`)."""

from __future__ import annotations

import re
import types
import typing
from collections.abc import Iterable
from typing import Any

from pydantic import BaseModel, SecretBytes, SecretStr

from monitor.core.config.alerting import SINK_KINDS
from monitor.core.config.kinds import CHECK_KINDS
from monitor.core.config.root import Config

Loc = tuple[str | int, ...]
UNKNOWN = object()
"""What annotation_at returns for a location that does not resolve (a value there is treated as secret)."""
_UNION_TAGS = frozenset(CHECK_KINDS) | frozenset(SINK_KINDS)


def strip_tags(loc: Iterable[str | int]) -> Loc:
    """Drop the discriminator values pydantic inserts after a list index (`checks.3.http.expect`)."""
    out: list[str | int] = []
    for part in loc:
        if isinstance(part, str) and out and isinstance(out[-1], int) and part in _UNION_TAGS:
            continue
        out.append(part)
    return tuple(out)


def annotation_at(raw_loc: Loc, *, with_meta: bool = False) -> tuple[Any, list[Any]]:
    """The type annotation at pydantic's location `raw_loc` (union tags included) and its constraint metadata.

    Returns (UNKNOWN, []) when the location does not resolve (then a value there is treated as secret).
    """
    current: Any = Config
    meta: list[Any] = []
    for part in raw_loc:
        current, meta = _unwrap(current)
        if isinstance(current, _UnionOf):
            current = next((m for m in current.members if _tag_of(m) == part), None)
            if current is None:
                return UNKNOWN, []
            continue
        origin = typing.get_origin(current)
        if origin in (list, dict):
            if part == "[key]":
                return str, []
            current = typing.get_args(current)[-1]
            continue
        if not (isinstance(current, type) and issubclass(current, BaseModel)):
            return UNKNOWN, []
        field = next((f for name, f in current.model_fields.items() if str(part) in (name, f.alias)), None)
        if field is None:
            return UNKNOWN, []
        current = field.annotation
        meta = list(field.metadata)
    unwrapped, more = _unwrap(current)
    return (unwrapped, meta + more) if with_meta else (unwrapped, [])


def may_hold_secret(annotation: Any, _seen: frozenset[Any] = frozenset()) -> bool:
    """Whether a value of this type is, or may contain, a secret (SecretStr anywhere inside)."""
    if annotation in (SecretStr, SecretBytes):
        return True
    if isinstance(annotation, _UnionOf):
        return any(may_hold_secret(m, _seen) for m in annotation.members)
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        if annotation in _seen:
            return False
        return any(may_hold_secret(f.annotation, _seen | {annotation}) for f in annotation.model_fields.values())
    return any(may_hold_secret(arg, _seen) for arg in typing.get_args(annotation) if not isinstance(arg, str))


def keys_of(model: Any) -> list[str]:
    """The keys a model accepts, sorted; [] for anything that is not a model."""
    if isinstance(model, type) and issubclass(model, BaseModel):
        return sorted((f.alias or name) for name, f in model.model_fields.items())
    return []


def _tag_of(model: Any) -> str | None:
    if isinstance(model, type) and issubclass(model, BaseModel) and "kind" in model.model_fields:
        args = typing.get_args(model.model_fields["kind"].annotation)
        return str(args[0]) if args else None
    return None


def _unwrap(annotation: Any) -> tuple[Any, list[Any]]:
    meta: list[Any] = []
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            args = typing.get_args(annotation)
            for extra in args[1:]:
                meta.extend(getattr(extra, "metadata", [extra]))
            annotation = args[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
            return _UnionOf(members), meta
        return annotation, meta


class _UnionOf:
    def __init__(self, members: list[Any]) -> None:
        self.members = members


def parse_path(text: str) -> Loc:
    """("checks", 2, "target") for `checks[2].target`."""
    out: list[str | int] = []
    for name, index in re.findall(r"([^.\[\]]+)|\[(\d+)\]", text):
        out.append(int(index) if index else name)
    return tuple(out)
