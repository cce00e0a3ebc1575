"""Indexes over a multi-valued attribute's entries while one PATCH is applied, so that each filtered operation
(``emails[value eq "…"]``) costs what it selects rather than a scan of every entry: a PATCH is applied in time
linear in the resource and the request.

An index maps a sub-attribute's string values, lowercased, to the entries holding them: a superset of what an
``eq`` comparison selects (case-exact or not), which ``scim.protocol.filters.matches`` then confirms. It follows
the list it was built on through the PATCH's removals, appends and edits; any other change to the list drops it.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Any

from gateway.store.serialization import canonical
from scim.protocol.filters import And, Compare, Filter
from scim.protocol.schemas import Resource, find_attribute

_Entries = defaultdict[str, list[dict[str, Any]]]
_TEXT_TYPES = frozenset({"string", "reference", "binary"})


def _keys(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value.lower()]
    if isinstance(value, list):
        return [item.lower() for item in value if isinstance(item, str)]
    return []


def _field(element: dict[str, Any], name: str) -> Any:
    if name in element:
        return element[name]
    lowered = name.lower()
    return next((v for k, v in element.items() if k.lower() == lowered), None)


def indexable(where: Filter, *, resource: Resource, parent: str) -> tuple[str, str] | None:
    """The sub-attribute and value of a text ``eq`` comparison in ``where`` (itself, or one operand of an ``and``)
    that an index can narrow to."""
    operands = where.operands if isinstance(where, And) else [where]
    for operand in operands:
        if (
            isinstance(operand, Compare)
            and operand.op == "eq"
            and isinstance(operand.value, str)
            and operand.path.uri is None
            and operand.path.sub is None
        ):
            attribute = find_attribute(resource, f"{parent}.{operand.path.name}")
            if attribute is None or attribute.type in _TEXT_TYPES:
                return operand.path.name, operand.value
    return None


class ValueIndexes:
    """The indexes of one PATCH, keyed by the list they index (held, so its id is never reused meanwhile): for each
    list, its entries by sub-attribute value, and how many of each JSON value it holds (to add only new ones)."""

    def __init__(self) -> None:
        self._lists: dict[int, _ListIndex] = {}

    def candidates(self, elements: list[Any], name: str, value: str) -> list[dict[str, Any]]:
        """The entries of ``elements`` whose ``name`` may equal ``value`` (in no particular order)."""
        return self._of(elements).entries(name).get(value.lower(), [])

    def extended(self, elements: list[Any], items: list[Any]) -> list[Any]:
        """``elements`` and those of ``items`` it does not hold yet (compared as JSON values): the new list."""
        index = self._of(elements)
        counts = index.counts()
        added = []
        for item in items:
            identity = canonical(item)
            if identity not in counts:
                counts[identity] = 1
                added.append(item)
        grown = elements + added
        self._move(index, grown)
        for item in added:
            index.add(item, counted=False)
        return grown

    def removed(self, old: list[Any], new: list[Any], gone: list[dict[str, Any]]) -> None:
        """``new`` is ``old`` without ``gone``."""
        index = self._of(old)
        self._move(index, new)
        for element in gone:
            index.discard(element)

    def appended(self, old: list[Any], new: list[Any], element: dict[str, Any]) -> None:
        """``new`` is ``old`` and ``element``."""
        index = self._of(old)
        self._move(index, new)
        index.add(element)

    def editing(self, elements: list[Any], element: dict[str, Any]) -> None:
        """``element`` (of ``elements``) is about to change: out of the indexes until ``edited``."""
        self._of(elements).discard(element)

    def edited(self, elements: list[Any], element: dict[str, Any]) -> None:
        self._of(elements).add(element)

    def forget(self, elements: Any) -> None:
        """``elements`` changed in a way the indexes do not follow."""
        if isinstance(elements, list):
            self._lists.pop(id(elements), None)

    def _of(self, elements: list[Any]) -> _ListIndex:
        index = self._lists.get(id(elements))
        if index is None or index.elements is not elements:
            index = self._lists[id(elements)] = _ListIndex(elements)
        return index

    def _move(self, index: _ListIndex, new: list[Any]) -> None:
        self._lists.pop(id(index.elements), None)
        index.elements = new
        self._lists[id(new)] = index


class _ListIndex:
    """One list's indexes, each built on first use and kept in step from then on."""

    __slots__ = ("elements", "_fields", "_counts")

    def __init__(self, elements: list[Any]) -> None:
        self.elements = elements
        self._fields: dict[str, _Entries] = {}
        self._counts: dict[bytes, int] | None = None

    def entries(self, name: str) -> _Entries:
        lowered = name.lower()
        entries = self._fields.get(lowered)
        if entries is None:
            entries = self._fields[lowered] = defaultdict(list)
            for element in self.elements:
                if isinstance(element, dict):
                    for key in _keys(_field(element, lowered)):
                        entries[key].append(element)
        return entries

    def counts(self) -> dict[bytes, int]:
        if self._counts is None:
            self._counts = {}
            for element in self.elements:
                identity = canonical(element)
                self._counts[identity] = self._counts.get(identity, 0) + 1
        return self._counts

    def add(self, element: Any, *, counted: bool = True) -> None:
        if counted and self._counts is not None:
            identity = canonical(element)
            self._counts[identity] = self._counts.get(identity, 0) + 1
        if isinstance(element, dict):
            for name, entries in self._fields.items():
                for key in _keys(_field(element, name)):
                    entries[key].append(element)

    def discard(self, element: Any) -> None:
        if self._counts is not None:
            identity = canonical(element)
            left = self._counts.get(identity, 0) - 1
            if left > 0:
                self._counts[identity] = left
            else:
                self._counts.pop(identity, None)
        if isinstance(element, dict):
            for name, entries in self._fields.items():
                for key in _keys(_field(element, name)):
                    bucket = entries.get(key)
                    if bucket is not None:
                        bucket[:] = [e for e in bucket if e is not element]
