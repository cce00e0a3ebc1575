"""Plays a planned session over HTTP and tallies what the server answered."""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Protocol

import httpx

from gateway.simulate.providers import Provider, Request
from gateway.simulate.roster import Roster
from gateway.simulate.session import State, Step, plan

_EXPECTED: dict[str, tuple[int, ...]] = {
    "GET": (200,),
    "POST": (201,),
    "PUT": (200,),
    "PATCH": (200, 204),
    "DELETE": (204, 200),
}


_ATTEMPTS = 5  # a request answered 429 is tried this many times in all
_MAX_RETRY_AFTER = 30.0


class SimulationError(Exception):
    """The session cannot go on: the endpoint is unreachable, refuses the token, or fails Test Connection."""


class Progress(Protocol):  # gateway.simulate.report.Progress
    def start(self, total: int) -> None: ...

    def advance(self, phase: str) -> None: ...


@dataclass(frozen=True)
class Failure:
    phase: str
    method: str
    path: str
    status: int
    scim_type: str | None
    detail: str


@dataclass
class Summary:
    provider: str
    endpoint: str
    domain: str
    seed: int
    users: int
    groups: int
    responses: Counter[tuple[str, str, int]] = field(default_factory=Counter)  # (method, resource, status)
    failures: list[Failure] = field(default_factory=list)
    linked: int = 0  # existing users and groups found (by a lookup or after a 409) instead of created
    skipped: int = 0  # steps not sent because what they act on was never created
    elapsed: float = 0.0

    @property
    def requests(self) -> int:
        return sum(self.responses.values())

    @property
    def requests_per_second(self) -> float:
        return self.requests / self.elapsed if self.elapsed > 0 else 0.0


def run_session(
    *,
    provider: Provider,
    roster: Roster,
    seed: int,
    endpoint: str,
    token: str,
    timeout: float = 15.0,
    delay: float = 0.0,
    progress: Progress | None = None,
) -> Summary:
    steps = plan(provider=provider, roster=roster)
    summary = Summary(
        provider=provider.name,
        endpoint=endpoint,
        domain=roster.domain,
        seed=seed,
        users=len(roster.people),
        groups=len(roster.teams),
    )
    state = State()
    if progress is not None:
        progress.start(len(steps))
    headers = {
        "Authorization": f"Bearer {token}",
        "Accept": "application/scim+json",
        "Content-Type": "application/scim+json",
        "User-Agent": f"dsync-simulate ({provider.name})",
    }
    started = time.perf_counter()
    with httpx.Client(base_url=f"{endpoint}/", headers=headers, timeout=timeout) as client:
        for step in steps:
            request = step.build(state)
            if request is None:
                if step.resolve is not None:  # a create whose lookup found the resource
                    summary.linked += 1
                else:
                    summary.skipped += 1
            else:
                _send(client, step, request, state, summary, endpoint=endpoint)
                if delay:
                    time.sleep(delay)
            if progress is not None:
                progress.advance(step.phase)
    summary.elapsed = time.perf_counter() - started
    return summary


def _send(client: httpx.Client, step: Step, request: Request, state: State, summary: Summary, *, endpoint: str) -> None:
    response = _exchange(client, request, summary, endpoint=endpoint)
    body = _json(response)
    if response.status_code in (401, 403):
        raise SimulationError(
            f"the endpoint refused the bearer token ({response.status_code}: {_detail(response, body)[1]}); "
            "check --token and that --endpoint is this directory's SCIM endpoint"
        )
    if response.status_code == 409 and step.resolve is not None:
        lookup = step.resolve.build(state)
        if lookup is not None:
            _send(client, step.resolve, lookup, state, summary, endpoint=endpoint)
        if step.build(state) is None:  # linked to the existing resource: nothing left to create
            summary.linked += 1
            return
    if response.status_code not in _EXPECTED[request.method]:
        scim_type, detail = _detail(response, body)
        summary.failures.append(
            Failure(step.phase, request.method, request.path, response.status_code, scim_type, detail)
        )
        if step.phase == "test connection":
            raise SimulationError(
                f"Test Connection failed: {request.method} {endpoint}/{request.path} answered "
                f"{response.status_code}: {detail}"
            )
    elif step.remember is not None:
        if request.method == "POST" and not (isinstance(body, dict) and "id" in body):
            detail = "the answer holds no SCIM resource with an id"
            summary.failures.append(
                Failure(step.phase, request.method, request.path, response.status_code, None, detail)
            )
        else:
            step.remember(state, body if isinstance(body, dict) else {})


def _exchange(client: httpx.Client, request: Request, summary: Summary, *, endpoint: str) -> httpx.Response:
    """One request, sent again after a 429 once the server's ``Retry-After`` has passed, as identity providers do."""
    resource = request.path.split("/", 1)[0]
    for attempt in range(1, _ATTEMPTS + 1):
        try:
            response = client.request(
                request.method,
                request.path,
                params=request.params,
                content=None if request.body is None else json.dumps(request.body),
            )
        except httpx.TimeoutException as exc:
            raise SimulationError(f"{request.method} {endpoint}/{request.path} timed out ({exc})") from exc
        except httpx.HTTPError as exc:
            raise SimulationError(f"cannot reach {endpoint}: {exc}") from exc
        summary.responses[(request.method, resource, response.status_code)] += 1
        if response.status_code != 429 or attempt == _ATTEMPTS:
            break
        time.sleep(_retry_after(response))
    return response


def _retry_after(response: httpx.Response) -> float:
    try:
        seconds = float(response.headers.get("retry-after", "1"))
    except ValueError:  # an HTTP date: not worth parsing for a pause this short
        seconds = 1.0
    return min(max(seconds, 0.0), _MAX_RETRY_AFTER)


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        return None


def _detail(response: httpx.Response, body: Any) -> tuple[str | None, str]:
    scim_type = body.get("scimType") if isinstance(body, dict) else None
    text = str(body["detail"]) if isinstance(body, dict) and body.get("detail") else response.text
    detail = " ".join(text.split())  # one line, however the server formats it
    return (str(scim_type) if scim_type else None), (detail[:300] or response.reason_phrase or "no detail")
