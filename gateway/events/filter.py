"""Which events a subscription wants: the same test in Python (live events) and in SQL (reads of the log)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlmodel import col

from gateway.store.models import Event


@dataclass(frozen=True)
class EventFilter:
    """The events of one organization (None: every organization, for admin keys), optionally of one directory and
    of some event names only."""

    organization_id: str | None
    directory_id: str | None = None
    names: frozenset[str] | None = None

    def matches(self, row: Any) -> bool:
        """Whether an event row (a log row or an ``Event``) passes the filter."""
        return (
            (self.organization_id is None or row.organization_id == self.organization_id)
            and (self.directory_id is None or row.directory_id == self.directory_id)
            and (self.names is None or row.event in self.names)
        )

    def where(self) -> list[Any]:
        """The same test as SQL conditions on the events table, for ``read_events_after``."""
        conditions: list[Any] = []
        if self.organization_id is not None:
            conditions.append(col(Event.organization_id) == self.organization_id)
        if self.directory_id is not None:
            conditions.append(col(Event.directory_id) == self.directory_id)
        if self.names is not None:
            conditions.append(col(Event.event).in_(self.names))
        return conditions
