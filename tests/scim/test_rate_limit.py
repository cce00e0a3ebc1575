"""The per-directory SCIM rate limit: the burst exactly, then 429 with Retry-After in SCIM's error shape, admitted
again after the refill time; other directories and unauthenticated requests never touch a directory's budget."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from gateway.app import create_app
from gateway.ops import directories
from gateway.settings import Settings
from gateway.store.database import Database
from gateway.store.models import DirectoryUser, Event
from scim.api.rate_limit import RateLimiter
from tests.conftest import PUBLIC_URL, DirectoryFixture, make_directory

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
RATE, BURST = 4.0, 6


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# -- the bucket ---------------------------------------------------------------------------------------------------


def test_bucket_at_the_limit_and_just_past_it() -> None:
    clock = _Clock()
    limiter = RateLimiter(rate=RATE, burst=BURST, clock=clock)
    assert [limiter.acquire("a") for _ in range(BURST)] == [0.0] * BURST
    assert limiter.acquire("a") == pytest.approx(1 / RATE)
    assert limiter.acquire("b") == 0.0  # another directory has its own bucket
    clock.now += 1 / RATE - 0.001
    assert limiter.acquire("a") > 0
    clock.now += 0.001
    assert limiter.acquire("a") == 0.0 and limiter.acquire("a") > 0
    # Idle time refills up to the burst, never beyond it.
    clock.now += 3600
    assert [limiter.acquire("a") for _ in range(BURST + 1)].count(0.0) == BURST


def test_zero_disables() -> None:
    limiter = RateLimiter(rate=0, burst=0, clock=_Clock())
    assert not limiter.enabled and all(limiter.acquire("a") == 0.0 for _ in range(10_000))


def test_the_default_lets_an_initial_sync_through_and_stops_a_runaway_client() -> None:
    settings = Settings()
    assert (settings.scim_rate_limit, settings.scim_rate_burst) == (200.0, 400)
    clock = _Clock()
    limiter = RateLimiter(rate=settings.scim_rate_limit, burst=settings.scim_rate_burst, clock=clock)
    # An identity provider sending 20,000 requests at 190 per second (an 8-connection sync over the internet)
    # is never refused ...
    refused = 0
    for _ in range(20_000):
        clock.now += 1 / 190
        refused += limiter.acquire("idp") > 0
    assert refused == 0
    # ... a client pushing 1,800 per second (what one directory gets from the embedded store) is held to the rate.
    admitted = 0
    for _ in range(1_800 * 10):
        clock.now += 1 / 1_800
        admitted += limiter.acquire("runaway") == 0.0
    assert admitted == pytest.approx(settings.scim_rate_burst + 10 * settings.scim_rate_limit, abs=2)


def test_settings_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("DSYNC_SCIM_RATE_LIMIT", "0")
    assert Settings.from_env().scim_rate_limit == 0
    monkeypatch.setenv("DSYNC_SCIM_RATE_LIMIT", "12.5")
    monkeypatch.setenv("DSYNC_SCIM_RATE_BURST", "30")
    assert (Settings.from_env().scim_rate_limit, Settings.from_env().scim_rate_burst) == (12.5, 30)


# -- over HTTP ----------------------------------------------------------------------------------------------------


@pytest.fixture
async def limited(settings: Settings) -> AsyncIterator[dict[str, Any]]:
    """The app with a small limit on a clock the test moves."""
    application = create_app(dataclasses.replace(settings, scim_rate_limit=RATE, scim_rate_burst=BURST))
    clock = _Clock()
    async with application.router.lifespan_context(application):
        application.state.scim_rate_limiter = RateLimiter(rate=RATE, burst=BURST, clock=clock)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:
            yield {"client": http, "clock": clock, "database": application.state.database}


def assert_throttled(response: httpx.Response) -> None:
    assert response.status_code == 429, response.text
    assert response.headers["content-type"].startswith("application/scim+json")
    assert response.headers["retry-after"] == "1"  # 1/RATE s, rounded up to whole seconds
    body = response.json()
    assert body["schemas"] == [ERROR] and body["status"] == "429" and "scimType" not in body
    assert "Too many requests for this directory" in body["detail"] and "retry after 1 s" in body["detail"]


async def _sibling(database: Database, directory: DirectoryFixture) -> DirectoryFixture:
    """Another directory of ``directory``'s organization."""
    issued = await database.transaction(
        lambda session: directories.create_directory(
            session, organization_id=directory.organization_id, name="Sibling", type="okta", public_url=PUBLIC_URL
        )
    )
    return DirectoryFixture(
        id=issued.directory.id,
        organization_id=directory.organization_id,
        token=issued.bearer_token,
        endpoint=issued.endpoint,
    )


async def _counts(database: Database) -> tuple[int, int]:
    async with database.read() as session:
        users = await session.scalar(select(func.count()).select_from(DirectoryUser))
        events = await session.scalar(select(func.count()).select_from(Event))
    return users or 0, events or 0


async def test_burst_then_429_then_refill(limited: dict[str, Any]) -> None:
    http: httpx.AsyncClient = limited["client"]
    database: Database = limited["database"]
    directory = await make_directory(database)
    neighbours = [await make_directory(database, name="Elsewhere"), await _sibling(database, directory)]
    url, headers = directory.path, directory.headers
    user = (await http.post(f"{url}/Users", json={"userName": "ada@acme.test"}, headers=headers)).json()["id"]
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "replace", "path": "title", "value": "x"}],
    }
    # The burst, exactly, over every kind of route (the POST above was the first); a .search runs two database
    # jobs and still counts once.
    admitted = [
        await http.get(f"{url}/Users/{user}", headers=headers),
        await http.patch(f"{url}/Users/{user}", json=patch, headers=headers),
        await http.post(f"{url}/Users/.search", json={"filter": 'userName sw "ada"'}, headers=headers),
        await http.get(f"{url}/Groups", headers=headers),
        await http.get(f"{url}/ServiceProviderConfig", headers=headers),
    ]
    assert [r.status_code for r in admitted] == [200] * (BURST - 1), [r.text for r in admitted]

    # Just past it: reads and writes answer 429, and a refused write changes nothing.
    before = await _counts(database)
    assert_throttled(await http.post(f"{url}/Users", json={"userName": "bob@acme.test"}, headers=headers))
    assert_throttled(await http.get(f"{url}/Users", headers=headers))
    assert_throttled(await http.post(f"{url}/Groups/.search", json={}, headers=headers))
    assert await _counts(database) == before
    # Authentication comes first: a wrong token still answers 401, and costs the directory nothing.
    wrong = {**headers, "Authorization": "Bearer nope"}
    assert (await http.get(f"{url}/Users", headers=wrong)).status_code == 401
    # Other directories, in another organization or the same one, keep their whole burst.
    for neighbour in neighbours:
        other = [await http.get(f"{neighbour.path}/Users", headers=neighbour.headers) for _ in range(BURST)]
        assert [r.status_code for r in other] == [200] * BURST

    # After the refill time, exactly one more request.
    limited["clock"].now += 1 / RATE
    assert (await http.post(f"{url}/Users", json={"userName": "bob@acme.test"}, headers=headers)).status_code == 201
    assert_throttled(await http.get(f"{url}/Users/{user}", headers=headers))
    limited["clock"].now += BURST / RATE
    burst = [await http.get(f"{url}/Users/{user}", headers=headers) for _ in range(BURST + 1)]
    assert [r.status_code for r in burst] == [200] * BURST + [429]


async def test_unauthenticated_floods_do_not_spend_a_directory_budget(limited: dict[str, Any]) -> None:
    http: httpx.AsyncClient = limited["client"]
    directory = await make_directory(limited["database"])
    wrong = {**directory.headers, "Authorization": "Bearer dsync_scim_guess"}
    flood = await asyncio.gather(*(http.get(f"{directory.path}/Users", headers=wrong) for _ in range(5 * BURST)))
    assert {r.status_code for r in flood} == {401}
    ok = [await http.get(f"{directory.path}/Users", headers=directory.headers) for _ in range(BURST)]
    assert [r.status_code for r in ok] == [200] * BURST


async def test_concurrent_requests_get_exactly_the_burst(limited: dict[str, Any]) -> None:
    """Requests arriving together (grouped into one write batch on SQLite) are counted one by one."""
    http: httpx.AsyncClient = limited["client"]
    database: Database = limited["database"]
    directory = await make_directory(database)
    await http.get(f"{directory.path}/ServiceProviderConfig", headers=directory.headers)  # links the directory
    before = await _counts(database)
    responses = await asyncio.gather(
        *(
            http.post(f"{directory.path}/Users", json={"userName": f"u{i}@acme.test"}, headers=directory.headers)
            for i in range(3 * BURST)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [201] * (BURST - 1) + [429] * (2 * BURST + 1)
    users, events = await _counts(database)
    assert (users - before[0], events - before[1]) == (BURST - 1, BURST - 1)


async def test_retry_after_is_honoured_in_real_time(settings: Settings) -> None:
    application = create_app(dataclasses.replace(settings, scim_rate_limit=1, scim_rate_burst=2))
    async with application.router.lifespan_context(application):
        directory: DirectoryFixture = await make_directory(application.state.database)
        transport = httpx.ASGITransport(app=application)
        async with httpx.AsyncClient(transport=transport, base_url=PUBLIC_URL) as http:

            async def get() -> httpx.Response:
                return await http.get(f"{directory.path}/Users", headers=directory.headers)

            assert [(await get()).status_code for _ in range(2)] == [200, 200]
            refused = await get()
            assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
            await asyncio.sleep(float(refused.headers["retry-after"]))
            assert (await get()).status_code == 200
            assert (await get()).status_code == 429


# -- requests without a valid token -------------------------------------------------------------------------------


async def test_wrong_tokens_are_limited_per_address_and_known_credentials_pass(
    limited: dict[str, Any], directory: DirectoryFixture
) -> None:
    from scim.api.rate_limit import Doorman

    http: httpx.AsyncClient = limited["client"]
    clock: _Clock = limited["clock"]
    app = http._transport.app  # type: ignore[attr-defined]
    app.state.scim_doorman = Doorman(rate=2, clock=clock)  # bursts of 4
    users = f"{directory.path}/Users"
    assert (await http.get(users, headers=directory.headers)).status_code == 200  # known from now on
    wrong = {**directory.headers, "Authorization": "Bearer dsync_scim_guess"}
    answers = [(await http.get(users, headers=wrong)).status_code for _ in range(4)]
    answers.append((await http.get(users, headers={"Content-Type": "application/scim+json"})).status_code)
    assert answers == [401, 401, 401, 401, 429]
    refused = await http.post(users, json={"userName": "x@acme.test"}, headers=wrong)
    assert refused.status_code == 429 and refused.headers["retry-after"] == "1"
    assert refused.json()["schemas"] == [ERROR] and "invalid bearer token" in refused.json()["detail"]
    # The directory's own provisioning from the same address goes on.
    assert (await http.post(users, json={"userName": "y@acme.test"}, headers=directory.headers)).status_code == 201
    clock.now += 0.5
    assert (await http.get(users, headers=wrong)).status_code == 401
    assert (await http.get(users, headers=wrong)).status_code == 429


# -- work, not only requests --------------------------------------------------------------------------------------


def test_a_refund_gives_back_what_was_taken_up_to_the_burst() -> None:
    clock = _Clock()
    limiter = RateLimiter(rate=RATE, burst=BURST, clock=clock)
    limiter.refund("d")  # (no bucket yet: nothing to give back)
    for _ in range(BURST):
        assert limiter.refusal("d") is None
    assert limiter.refusal("d") is not None
    limiter.refund("d")
    assert limiter.refusal("d") is None and limiter.refusal("d") is not None
    limiter.refund("d", 100)
    assert limiter.acquire("d", amount=BURST) == 0.0 and limiter.acquire("d", take=False) > 0


def test_amounts_and_charges_for_work_done() -> None:
    clock = _Clock()
    limiter = RateLimiter(rate=RATE, burst=BURST, clock=clock)
    assert limiter.acquire("a", amount=4) == 0.0
    assert limiter.acquire("a", amount=4) == pytest.approx((4 - 2) / RATE)  # 2 left: waits for the other 2
    assert limiter.acquire("a", amount=100) == pytest.approx((BURST - 2) / RATE)  # never more than a full bucket
    limiter.charge("a", 20)  # work already done: below empty, down to minus the burst
    assert limiter.acquire("a") == pytest.approx((1 + BURST) / RATE)
    clock.now += (1 + BURST) / RATE
    assert limiter.acquire("a") == 0.0


async def test_a_large_patch_costs_its_directory_what_it_reads(settings: Settings) -> None:
    """A PATCH of 40 filtered operations on a user with 50 emails reads ~2,000 values: 80 requests' worth at 25 per
    request, so with a burst of 60 the directory's next request waits; a small PATCH costs one request."""
    application = create_app(
        dataclasses.replace(settings, scim_rate_limit=1.0, scim_rate_burst=60, scim_patch_values_per_request=25)
    )
    async with application.router.lifespan_context(application):
        directory: DirectoryFixture = await make_directory(application.state.database)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=PUBLIC_URL) as http:
            emails = [{"value": f"e{i}@example.com", "type": "work"} for i in range(50)]
            created = await http.post(
                f"{directory.path}/Users",
                json={"userName": "big@example.com", "emails": emails},
                headers=directory.headers,
            )
            assert created.status_code == 201, created.text
            user = f"{directory.path}/Users/{created.json()['id']}"
            small = {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "B"}]}
            for _ in range(3):
                assert (await http.patch(user, json=small, headers=directory.headers)).status_code == 200
            ops = [{"op": "replace", "path": f'emails[value co "e{i}@"].type', "value": "home"} for i in range(40)]
            large = await http.patch(user, json={"schemas": [PATCH], "Operations": ops}, headers=directory.headers)
            assert large.status_code == 200, large.text
            after = await http.get(f"{directory.path}/Users", headers=directory.headers)
            assert after.status_code == 429 and int(after.headers["retry-after"]) > 1


async def test_refusals_wait_before_they_are_answered(settings: Settings) -> None:
    application = create_app(dataclasses.replace(settings, scim_refusal_delay_ms=300))
    async with application.router.lifespan_context(application):
        fixture: DirectoryFixture = await make_directory(application.state.database)
        async with httpx.AsyncClient(transport=httpx.ASGITransport(app=application), base_url=PUBLIC_URL) as http:
            started = asyncio.get_running_loop().time()
            wrong = await http.get(f"{fixture.path}/Users", headers={"Authorization": "Bearer wrong"})
            assert wrong.status_code == 401
            assert asyncio.get_running_loop().time() - started >= 0.3
            started = asyncio.get_running_loop().time()
            missing = await http.get(f"{fixture.path}/Users/nope", headers=fixture.headers)
            assert missing.status_code == 404  # an answer of a normal sync: not delayed
            assert asyncio.get_running_loop().time() - started < 0.3
