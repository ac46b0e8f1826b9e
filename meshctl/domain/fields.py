"""One description of the resource, three uses: parsing, validation and the CRD schema.

The spec classes in :mod:`meshctl.domain.spec` are frozen dataclasses whose fields are made
with :func:`field`; its metadata (JSON name, bounds, pattern, doc) drives
:func:`from_json` (structural checks, collected as :class:`Problem` values with their paths)
and :func:`openapi_schema` (the structural OpenAPI v3 schema in ``manifests/crds``).
Semantic rules that span fields live in :mod:`meshctl.domain.validation`.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import re
import types
import typing
import unicodedata
from collections.abc import Mapping
from datetime import datetime
from enum import Enum
from typing import Any, TypeVar, get_args, get_origin, get_type_hints

from meshctl.domain.durations import PATTERN as DURATION_PATTERN
from meshctl.domain.durations import Duration, format_duration, parse_duration
from meshctl.domain.problems import Problem

T = TypeVar("T")

# Integers without their own bound are int32, as Kubernetes stores them.
INT32_MAX = 2**31 - 1

_MISSING: Any = dataclasses.MISSING


def field(
    json: str,
    *,
    default: Any = _MISSING,
    required: bool = False,
    minimum: float | None = None,
    maximum: float | None = None,
    pattern: str | None = None,
    doc: str = "",
    min_items: int | None = None,
    opaque: bool = False,
    max_length: int | None = None,
    items: Mapping[str, Any] | None = None,
    hint: str = "",
    multiline: bool = False,
) -> Any:
    """A spec field; ``opaque`` objects (a PodTemplateSpec) are kept as given.

    ``items`` holds the bounds of each item of a list (``minimum``, ``maximum``, ``pattern``,
    ``max_length``); ``hint`` says how to fix a missing or too short value; only
    ``multiline`` strings may hold line breaks (no string may hold other control characters).
    """
    meta = {
        "json": json, "required": required, "minimum": minimum, "maximum": maximum,
        "pattern": pattern, "doc": doc, "min_items": min_items, "opaque": opaque,
        "max_length": max_length, "items": dict(items or {}), "hint": hint,
        "multiline": multiline,
    }
    if default is _MISSING and not required:
        default = None
    if isinstance(default, (list, dict)):
        raise TypeError("use tuples or None for defaults")
    return dataclasses.field(default=default, metadata=meta)


def _unwrap_optional(tp: Any) -> Any:
    if get_origin(tp) in (typing.Union, types.UnionType):
        args = [a for a in get_args(tp) if a is not type(None)]
        if len(args) == 1:
            return args[0]
    return tp


def _type_name(tp: Any) -> str:
    names = {str: "a string", int: "an integer", float: "a number", bool: "true or false"}
    return names.get(tp, "an object")


class _Reader:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def fail(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def value(self, tp: Any, raw: Any, path: str, meta: Mapping[str, Any]) -> Any:
        tp = _unwrap_optional(tp)
        origin = get_origin(tp)
        if dataclasses.is_dataclass(tp) and tp is not Duration:
            return self.obj(typing.cast(type, tp), raw, path)
        if origin is tuple:
            if not isinstance(raw, list):
                self.fail(path, f"must be a list, got {type(raw).__name__}")
                return None
            if meta.get("min_items") and len(raw) < meta["min_items"]:
                self.fail(path, meta.get("hint") or f"needs at least {meta['min_items']} item(s)")
            item_tp, item_meta = get_args(tp)[0], meta.get("items") or {}
            items = [self.value(item_tp, item, f"{path}[{i}]", item_meta)
                     for i, item in enumerate(raw)]
            return tuple(items)
        if origin is dict or tp is dict:
            if not isinstance(raw, dict):
                self.fail(path, f"must be a mapping, got {type(raw).__name__}")
                return None
            if not meta.get("opaque"):
                for key, val in raw.items():
                    if not isinstance(val, str):
                        self.fail(f"{path}.{key}", "must be a string")
            return dict(raw)
        return self.scalar(tp, raw, path, meta)

    def scalar(self, tp: Any, raw: Any, path: str, meta: Mapping[str, Any]) -> Any:
        if tp is datetime:
            try:
                return parse_time(raw)
            except (TypeError, ValueError):
                self.fail(path, f"must be an RFC 3339 time like 2026-01-02T03:04:05Z, got {raw!r}")
                return None
        if tp is Duration:
            if not isinstance(raw, str):
                self.fail(path, "must be a duration string like 30s, 5m or 1h30m")
                return None
            try:
                seconds = parse_duration(raw)
            except ValueError as exc:
                self.fail(path, str(exc))
                return None
            least, pattern = meta.get("minimum"), meta.get("pattern")
            if least is not None and seconds < least:
                self.fail(path, f"{raw!r} is too short; use at least {format_duration(least)}")
            elif pattern is not None and not re.search(pattern, raw):
                self.fail(path, f"{raw!r} has a fraction; write whole units like 1m30s")
            return Duration(raw)
        if isinstance(tp, type) and issubclass(tp, Enum):
            allowed = [m.value for m in tp]
            if raw not in allowed:
                self.fail(path, f"{raw!r} is not one of {', '.join(map(str, allowed))}")
                return None
            return tp(raw)
        ok = (
            isinstance(raw, tp) and not (tp in (int, float) and isinstance(raw, bool))
        ) or (tp is float and isinstance(raw, int) and not isinstance(raw, bool))
        if not ok:
            self.fail(path, f"must be {_type_name(tp)}, got {raw!r}")
            return None
        if meta.get("minimum") is not None and raw < meta["minimum"]:
            self.fail(path, f"{raw} is below {meta['minimum']}; use {meta['minimum']} or more")
        most = meta.get("maximum")
        if most is None and tp is int:
            most = INT32_MAX
        if most is not None and raw > most:
            self.fail(path, f"{raw} is above {most}; use {most} or less")
        if isinstance(raw, str):
            self.text(raw, path, meta)
        return float(raw) if tp is float else raw

    def text(self, raw: str, path: str, meta: Mapping[str, Any]) -> None:
        allowed = "\t\n\r" if meta.get("multiline") else ""
        if any(unicodedata.category(c) in ("Cc", "Cf") and c not in allowed for c in raw):
            self.fail(path, f"{raw!r} holds control or bidirectional characters; "
                      "write plain text")
            return
        limit = meta.get("max_length")
        if limit is not None and len(raw) > limit:
            self.fail(path, f"is longer than {limit} characters; shorten it")
        pattern = meta.get("pattern")
        if pattern is not None and not re.search(pattern, raw):
            self.fail(path, f"{raw!r} does not match {pattern}" + (
                "; use lower case letters, digits and '-'" if "a-z0-9" in pattern else ""))

    def obj(self, cls: type, raw: Any, path: str) -> Any:
        if not isinstance(raw, dict):
            self.fail(path, f"must be a mapping, got {type(raw).__name__}")
            return None
        before = len(self.problems)
        hints = _hints(cls)
        fields = _fields_by_json(cls)
        for key in raw:
            if key not in fields:
                near = difflib.get_close_matches(str(key), list(fields), n=1)
                hint = f"; did you mean {near[0]}?" if near else f"; known: {', '.join(fields)}"
                self.fail(_join(path, str(key)), f"unknown field{hint}")
        values: dict[str, Any] = {}
        for json_name, f in fields.items():
            sub = _join(path, json_name)
            if json_name not in raw or raw[json_name] is None:
                if f.metadata["required"]:
                    fix = f.metadata.get("hint")
                    self.fail(sub, f"is required: {fix}" if fix else "is required")
                continue
            values[f.name] = self.value(hints[f.name], raw[json_name], sub, f.metadata)
        if len(self.problems) > before:
            return None
        try:
            return cls(**{k: v for k, v in values.items() if v is not None})
        except (TypeError, ValueError) as exc:
            self.fail(path, str(exc))
            return None


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    """Resolved annotations of a spec class (resolving them is most of a parse's cost)."""
    return get_type_hints(cls)


@functools.cache
def _fields_by_json(cls: type) -> dict[str, dataclasses.Field[Any]]:
    return {f.metadata["json"]: f for f in dataclasses.fields(cls)}


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def parse_time(raw: Any) -> datetime:
    """An RFC 3339 UTC time as Kubernetes writes it (``2026-01-02T03:04:05Z``)."""
    if not isinstance(raw, str):
        raise TypeError("time must be a string")
    return datetime.fromisoformat(raw.replace("Z", "+00:00"))


def format_time(value: datetime) -> str:
    text = value.isoformat(timespec="milliseconds" if value.microsecond else "seconds")
    return text.replace("+00:00", "Z")


def from_json(cls: type[T], raw: Any, path: str = "") -> tuple[T | None, list[Problem]]:
    """Parse ``raw`` into ``cls``; returns the value (None when broken) and every problem."""
    reader = _Reader()
    result = reader.obj(cls, raw, path)
    if reader.problems:
        return None, reader.problems
    return typing.cast(T, result), []


def to_json(value: Any) -> Any:
    """The JSON form of a spec value (inverse of :func:`from_json`), omitting unset fields."""
    if isinstance(value, Duration):
        return value.text
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        out: dict[str, Any] = {}
        for f in dataclasses.fields(value):
            item = getattr(value, f.name)
            if item is not None:
                out[f.metadata.get("json", f.name)] = to_json(item)
        return out
    if isinstance(value, tuple):
        return [to_json(v) for v in value]
    if isinstance(value, Duration):
        return value.text
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Enum):
        return value.value
    return value


def openapi_schema(cls: type) -> dict[str, Any]:
    """The structural OpenAPI v3 schema of ``cls`` (as the CRD carries it)."""
    hints = _hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        meta = f.metadata
        props[meta["json"]] = _schema_of(hints[f.name], meta)
        if meta["required"]:
            required.append(meta["json"])
    schema: dict[str, Any] = {"type": "object", "properties": props}
    if cls.__doc__:
        schema["description"] = " ".join(cls.__doc__.split())
    if required:
        schema["required"] = required
    extra = getattr(cls, "__schema_extra__", None)
    if extra:
        schema.update(extra)
    return schema


def _schema_of(tp: Any, meta: Mapping[str, Any]) -> dict[str, Any]:
    tp = _unwrap_optional(tp)
    out: dict[str, Any]
    if dataclasses.is_dataclass(tp) and tp is not Duration:
        out = openapi_schema(typing.cast(type, tp))
    elif get_origin(tp) is tuple:
        out = {"type": "array", "items": _schema_of(get_args(tp)[0], meta.get("items") or {})}
        if meta.get("min_items"):
            out["minItems"] = meta["min_items"]
    elif meta.get("opaque"):
        out = {"type": "object", "x-kubernetes-preserve-unknown-fields": True}
    elif get_origin(tp) is dict or tp is dict:
        out = {"type": "object", "additionalProperties": {"type": "string"}}
    elif tp is Duration:
        out = {"type": "string", "pattern": meta.get("pattern") or DURATION_PATTERN}
        meta = {k: v for k, v in meta.items() if k not in ("minimum", "pattern")}
    elif tp is datetime:
        out = {"type": "string", "format": "date-time"}
    elif isinstance(tp, type) and issubclass(tp, Enum):
        out = {"type": "string", "enum": [m.value for m in tp]}
    else:
        out = {"type": {str: "string", int: "integer", float: "number", bool: "boolean"}[tp]}
        if tp is int and meta.get("maximum") is None:
            out["maximum"] = INT32_MAX
    for key, name in (("minimum", "minimum"), ("maximum", "maximum"), ("pattern", "pattern"),
                      ("max_length", "maxLength")):
        if meta.get(key) is not None:
            out[name] = meta[key]
    if meta.get("doc"):
        out["description"] = meta["doc"]
    return out
