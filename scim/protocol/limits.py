"""How much work one SCIM request may ask for: PATCH operations per request and values per multi-valued attribute.

Both bound the CPU a request costs (a PATCH is applied in time linear in the resource and the request, so these two
numbers bound it) and what a resource stores. Over a limit, the request answers 400 and nothing is written.
Group members are not counted: they are rows, added and removed one edge at a time (``scim.backend.groups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from scim.protocol.errors import ScimError


@dataclass(frozen=True)
class Limits:
    max_operations: int = 100
    max_values: int = 100

    def check_operations(self, count: int) -> None:
        if count > self.max_operations:
            raise ScimError(
                400, f"A PATCH may hold at most {self.max_operations} operations, this one has {count}", "tooMany"
            )

    def check_values(self, raw: dict[str, Any]) -> None:
        """Every multi-valued attribute of a normalised resource (core, and inside extensions) holds at most
        ``max_values`` values."""
        for key, value in raw.items():
            if isinstance(value, list) and len(value) > self.max_values and key != "schemas":
                raise _too_many(key, len(value), self.max_values)
            if isinstance(value, dict):
                for sub_key, sub_value in value.items():
                    if isinstance(sub_value, list) and len(sub_value) > self.max_values:
                        raise _too_many(f"{key}:{sub_key}", len(sub_value), self.max_values)


def _too_many(path: str, count: int, limit: int) -> ScimError:
    return ScimError(400, f"Attribute '{path}' may hold at most {limit} values, not {count}", "invalidValue")


def patch_work(raw: dict[str, Any], operations: list[Any]) -> int:
    """The values a PATCH reads, about: each operation reads the entries of the attribute its path names (all of them
    for a filter) plus the values it brings; the rate limit charges a PATCH by this (``scim.api.calls.Call.charge``),
    so the largest PATCH allowed on the largest resource allowed costs a directory what its CPU costs the server."""
    sizes = {key.lower(): len(value) for key, value in raw.items() if isinstance(value, list)}
    work = 0
    for operation in operations:
        path = operation.path or ""
        name = path.split("[", 1)[0].split(".", 1)[0].rsplit(":", 1)[-1].lower()
        brought = operation.value if isinstance(operation.value, list | dict) else ()
        work += 1 + len(brought) + (sizes.get(name, 0) if path else sum(sizes.values()))
    return work
