"""SCIM attribute paths (RFC 7644 §3.10) that name where a custom attribute is read from a user's raw attributes.

A path is a core attribute (``title``, ``name.givenName``), an enterprise extension or any other extension URN
followed by its attribute (``urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value``), and may
pick one element of a multi-valued attribute with an ``eq`` filter (``emails[type eq "work"].value``). Names match
case-insensitively, as SCIM attribute names do.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from gateway.ops.inputs import InvalidInput

_CORE_USER = "urn:ietf:params:scim:schemas:core:2.0:user"
_SEGMENT = re.compile(r'^([A-Za-z_$][\w$-]*)(?:\[\s*([A-Za-z_$][\w$-]*)\s+eq\s+("(?:[^"\\]|\\.)*"|true|false)\s*\])?$')
MAX_PATH_LENGTH = 512


@dataclass(frozen=True, slots=True)
class _Segment:
    name: str  # lower case
    where: tuple[str, str | bool] | None  # (sub-attribute in lower case, value) of an ``eq`` filter


@dataclass(frozen=True, slots=True)
class AttributePath:
    """A parsed path: the extension it starts in (None: the core schema) and its segments."""

    text: str
    urn: str | None
    segments: tuple[_Segment, ...]


def parse_path(text: str) -> AttributePath:
    """The path, or ``InvalidInput`` saying what is wrong with it."""
    cleaned = text.strip()
    if not cleaned or len(cleaned) > MAX_PATH_LENGTH:
        raise InvalidInput(f"attribute path must be 1 to {MAX_PATH_LENGTH} characters")
    urn: str | None = None
    rest = cleaned
    if cleaned.lower().startswith("urn:"):
        # The URN is everything before the last colon that precedes the attribute (filters contain no colons).
        head = cleaned.split("[", 1)[0]
        cut = head.rfind(":")
        urn, rest = cleaned[:cut], cleaned[cut + 1 :]
        if urn.lower() == _CORE_USER:
            urn = None
    segments = []
    for part in _split(rest):
        match = _SEGMENT.match(part.strip())
        if match is None:
            raise InvalidInput(f"invalid attribute path {text!r} (at {part!r})")
        name, sub, literal = match.groups()
        where: tuple[str, str | bool] | None = None
        if sub is not None:
            value: str | bool = literal == "true" if literal in ("true", "false") else literal[1:-1].replace('\\"', '"')
            where = (sub.lower(), value)
        segments.append(_Segment(name.lower(), where))
    if not segments:
        raise InvalidInput(f"invalid attribute path {text!r}")
    return AttributePath(text=cleaned, urn=urn, segments=tuple(segments))


def _split(rest: str) -> list[str]:
    """Split on dots outside filters and quotes."""
    parts: list[str] = []
    current: list[str] = []
    depth, quoted = 0, False
    for char in rest:
        if char == '"' and depth:
            quoted = not quoted
        elif not quoted and char == "[":
            depth += 1
        elif not quoted and char == "]":
            depth -= 1
        if char == "." and not depth and not quoted:
            parts.append("".join(current))
            current = []
        else:
            current.append(char)
    parts.append("".join(current))
    return parts


def lowered(raw: Mapping[str, Any]) -> dict[str, Any]:
    """``raw``'s top-level attributes by their names in lower case (the first of names that differ only in case):
    for ``resolve`` to find many paths in one user's attributes without comparing every name for each."""
    view: dict[str, Any] = {}
    for key, value in raw.items():
        if isinstance(key, str):
            view.setdefault(key.lower(), value)
    return view


def _get(container: Any, name: str, view: Mapping[str, Any] | None = None) -> Any:
    """``container``'s attribute ``name`` (lower case), its name matched case-insensitively; ``view``: the
    container ``lowered``."""
    if type(container) is not dict and not isinstance(container, Mapping):  # (a dict's check is the cheap one)
        return None
    if name in container:
        return container[name]
    if view is not None:
        return view.get(name)
    return next((v for k, v in container.items() if isinstance(k, str) and k.lower() == name), None)


def _matches(element: Any, where: tuple[str, str | bool]) -> bool:
    sub, wanted = where
    actual = _get(element, sub)
    if isinstance(wanted, bool) or not isinstance(actual, str):
        return bool(actual == wanted)
    return actual.lower() == wanted.lower()


def _scalar(value: Any) -> Any:
    """What a custom attribute holds: a value, not an object (a reference's ``value``) nor an empty string."""
    if isinstance(value, Mapping):
        value = _get(value, "value")
    if value in ("", None, [], {}):
        return None
    return value


def resolve(raw: Mapping[str, Any], path: AttributePath, *, view: Mapping[str, Any] | None = None) -> Any:
    """The value ``path`` names in a user's raw SCIM attributes, or None; ``view``: ``raw`` ``lowered``."""
    current: Any = raw if path.urn is None else _get(raw, path.urn.lower(), view)
    names = view if path.urn is None else None  # for the first segment only, when it is read from ``raw``
    last = len(path.segments) - 1
    for index, segment in enumerate(path.segments):
        if isinstance(current, str) and index == last and segment.name == "value":
            return _scalar(current)  # a reference sent as a bare id (Entra's manager in a PATCH)
        current = _get(current, segment.name, names)
        names = None
        if isinstance(current, list):
            if segment.where is not None:
                where = segment.where
                current = next((e for e in current if _matches(e, where)), None)
            elif index < last:
                # A sub-attribute of a multi-valued attribute without a filter: the primary element, else the first.
                current = next((e for e in current if _get(e, "primary") is True), current[0] if current else None)
        elif segment.where is not None and current is not None and not _matches(current, segment.where):
            current = None
        if current is None:
            return None
    return _scalar(current)
