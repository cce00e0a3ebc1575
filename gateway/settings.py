"""The one settings object, read from ``DSYNC_*`` environment variables."""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from functools import lru_cache

DEFAULT_DATABASE_URL = "sqlite+aiosqlite:///./dsync.db"


def _int(name: str, default: int) -> int:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return int(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be an integer, got {raw!r}") from exc


def _float(name: str, default: float) -> float:
    raw = os.environ.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        return float(raw)
    except ValueError as exc:
        raise ValueError(f"{name} must be a number, got {raw!r}") from exc


ROLES = ("all", "ingest", "realtime")
WS_IMPLEMENTATIONS = ("websockets", "websockets-sansio")


def _choice(name: str, choices: tuple[str, ...], default: str) -> str:
    raw = (os.environ.get(name) or default).strip().lower()
    if raw not in choices:
        raise ValueError(f"{name} must be one of {', '.join(choices)}, got {raw!r}")
    return raw


def _list(raw: str | None) -> tuple[str, ...]:
    return tuple(item.strip() for item in (raw or "").split(",") if item.strip())


def _flag(raw: str | None) -> bool:
    return (raw or "").strip().lower() in ("1", "true", "yes", "on")


@dataclass(frozen=True)
class Settings:
    database_url: str = field(default=DEFAULT_DATABASE_URL, repr=False)  # may carry a password
    broadcast_url: str = "memory://"
    public_url: str = "http://localhost:8000"
    admin_key: str | None = field(default=None, repr=False)  # secrets stay out of reprs (and so out of logs)
    # SCIM request bodies above this size answer 413 (RFC 7644 §3.1 leaves the limit to the server).
    scim_max_body_bytes: int = 2 * 1024 * 1024
    scim_max_page_size: int = 1000
    scim_default_page_size: int = 100
    sqlite_busy_timeout_ms: int = 10_000
    access_log: bool = False
    graphiql: bool = False
    graphql_timeout_seconds: float = 30.0
    # The most an operation may cost (gateway/graphql/cost.py says how it is counted); above it: QUERY_TOO_COSTLY.
    graphql_max_cost: int = 2000
    # Per-API-key GraphQL rate limit: a token bucket refilled at this many operations per second (HTTP requests and
    # WebSocket operations alike), holding up to `graphql_rate_burst`; 0 turns it off. Counted per process.
    graphql_rate_limit: float = 20.0
    graphql_rate_burst: int = 60
    # Per-API-key GraphQL cost rate: each operation takes its cost (gateway/graphql/cost.py) from a bucket refilled
    # at this many units per second, holding up to `graphql_cost_burst`; empty: COST_RATE_LIMITED. 0 turns it off.
    # A cost unit is ~0.1 ms of CPU (the most expensive allowed query, 1,802, takes ~0.2 s): at 500/s one key uses at
    # most ~5% of a core, running one 2,000-cost operation every four seconds, or a dashboard page (cost ~60-110)
    # five to eight times a second; the burst holds one operation at the budget.
    graphql_cost_rate: float = 500.0
    graphql_cost_burst: int = 2000
    # Refusals (rate or cost limits, over budget, unauthenticated) wait this long before they are answered, so a
    # client that ignores them cannot make the server answer them as fast as it asks. 0 answers at once.
    graphql_refusal_delay_ms: int = 100
    # Queries and mutations costing more than this run at background priority (gateway/ops/priority.py): one step at
    # a time, taking at most a quarter of the event loop while other HTTP requests are in flight, so SCIM requests and
    # cheap queries (a dashboard page costs ~60-110) are not held up behind them. 0: by loop time only.
    graphql_background_cost: int = 300
    # Any other query or mutation moves to background priority once it has held the event loop this long (a cost does
    # not always tell the CPU: a page of groups' member pages costs the same with 1 or 100 members in each).
    graphql_foreground_ms: float = 10.0
    # Browser origins (besides the gateway's own) whose pages may call /graphql: CORS and WebSocket handshakes.
    allowed_origins: tuple[str, ...] = ()
    # The pump re-reads the event log's head this often, bounding the delay when a notification is lost.
    event_poll_seconds: float = 1.0
    # Events older than this many days are pruned (in small batches, in the background); 0 keeps them for ever.
    event_retention_days: float = 30.0
    ws_max_subscriptions: int = 20
    ws_init_timeout_seconds: float = 10.0
    # graphql-transport-ws ping to every connection this often; no pong before the next ping closes it.
    ws_ping_seconds: float = 15.0
    # Per-directory SCIM rate limit (scim/rate_limit.py): a token bucket refilled at this many requests per second,
    # holding up to `scim_rate_burst`; 0 turns it off. Counted per process. 200/s moves an initial sync of 50,000
    # users and their memberships in about 8 minutes, while one runaway client can use at most ~1/9 of what the
    # embedded store writes (~1,800 req/s on the reference machine), leaving the rest to other directories.
    scim_rate_limit: float = 200.0
    scim_rate_burst: int = 400
    # Requests with a missing or wrong bearer token, per second per client address (a burst of twice as many):
    # beyond it they answer 429 before reaching the database. 0 turns it off.
    scim_unauthenticated_rate_limit: float = 10.0
    # A PATCH costs the directory's rate limit one request per this many values it touches (operations × the
    # entries of the attribute each one reads), charged after it ran: the bucket may go below empty. 0: one each.
    scim_patch_values_per_request: int = 25
    # Refusals (401, 429, 413, a body over the limits) wait this long before they are answered: a client flooding
    # refused requests then gets ten per second per connection, not as many as the CPU can answer. 0: at once.
    scim_refusal_delay_ms: int = 100
    # Bounded work per SCIM request (scim/protocol/limits.py): PATCH operations per request, and values of any
    # multi-valued attribute of a stored resource (emails, phoneNumbers … ; group members are rows, not counted).
    scim_max_patch_operations: int = 100
    scim_max_multi_values: int = 100
    # Logs of `dsync serve` (gateway/logs.py): text or json lines; the gateway's and uvicorn's level.
    log_format: str = "text"
    log_level: str = "info"
    # When set, GET /metrics wants `Authorization: Bearer <this>`; unset, /metrics is open (it holds no tenant data).
    metrics_token: str | None = field(default=None, repr=False)
    # Webhooks (gateway/webhooks): whether this instance runs the delivery worker, whether organization keys may
    # target private networks, the HTTP timeout, how long a failing endpoint is retried before it is marked failed,
    # the backoff's first step and cap, how many endpoints one instance delivers to at once, and (below) how many
    # requests it sends at once.
    webhook_worker: bool = True
    webhook_allow_private: bool = False
    webhook_timeout_seconds: float = 10.0
    webhook_retry_hours: float = 72.0
    webhook_backoff_base_seconds: float = 1.0
    webhook_max_backoff_seconds: float = 3600.0
    webhook_concurrency: int = 32
    # HTTP requests in flight at once per instance: deliveries cost CPU (HTTP client, TLS) in the process that serves
    # SCIM, so they take a bounded share of it whatever the number of endpoints.
    webhook_sends: int = 2
    # `dsync serve` delivers from a child process (`dsync webhooks deliver`) at this nice level, so sending never
    # takes CPU from SCIM; 0 runs the worker inside the server process (tests). The child polls the log this often
    # when no broadcaster tells it about new events (memory://, SQLite).
    webhook_process: bool = True
    webhook_nice: int = 19
    webhook_poll_seconds: float = 0.25
    # Roles and custom attributes (gateway/ops/rule_evaluator.py): users re-evaluated per write transaction after a
    # mapping changes (small enough that SCIM writes queued behind one wait little), and how often the evaluator
    # looks for work queued by another process (a change made in this one wakes it at once).
    rule_evaluation_chunk: int = 50
    rule_evaluation_poll_seconds: float = 2.0
    # What `dsync serve` runs (gateway/app.py): "all"; "ingest" (SCIM, REST, GraphQL over HTTP, webhooks: no
    # WebSocket subscriptions); "realtime" (GraphQL over HTTP and WebSocket, fed by the broadcaster: no SCIM). A split
    # keeps live fan-out off the ingest process's CPU; it needs a redis:// or postgres:// DSYNC_BROADCAST_URL.
    role: str = "all"
    # `dsync serve --role realtime` runs at least this nice level: where it shares cores with an ingest process, a
    # burst's fan-out takes the CPU SCIM leaves instead of half of it (subscribers then get the events in fewer,
    # larger batches once the burst is in). Not applied to role "all", whose one process also serves SCIM.
    realtime_nice: int = 10
    # Costly work known before it runs (a large PATCH's application, a GraphQL query over
    # `graphql_background_cost` answered by a read plan) goes to this many worker processes at this nice level, so it
    # never competes with the event loop for the GIL (gateway/ops/costly_work.py); 0 does it on threads of the server
    # process (tests, library use). `dsync serve` starts one by default.
    costly_workers: int = 0
    costly_nice: int = 10
    # uvicorn's WebSocket implementation for `dsync serve`: "websockets-sansio" delivered 41,000 events/s to 1,000
    # subscribers where "websockets" (the legacy protocol: three tasks per connection) delivered 31,000, and holds
    # less per connection (bench/subscriptions.py --scenario a, README's Performance).
    ws_implementation: str = "websockets-sansio"

    @property
    def is_sqlite(self) -> bool:
        return self.database_url.startswith("sqlite")

    @classmethod
    def from_env(cls) -> Settings:
        env = os.environ
        return cls(
            database_url=env.get("DSYNC_DATABASE_URL") or DEFAULT_DATABASE_URL,
            broadcast_url=env.get("DSYNC_BROADCAST_URL") or "memory://",
            public_url=(env.get("DSYNC_PUBLIC_URL") or "http://localhost:8000").rstrip("/"),
            admin_key=env.get("DSYNC_ADMIN_KEY") or None,
            scim_max_body_bytes=_int("DSYNC_SCIM_MAX_BODY_BYTES", 2 * 1024 * 1024),
            scim_max_page_size=_int("DSYNC_SCIM_MAX_PAGE_SIZE", 1000),
            scim_default_page_size=_int("DSYNC_SCIM_DEFAULT_PAGE_SIZE", 100),
            sqlite_busy_timeout_ms=_int("DSYNC_SQLITE_BUSY_TIMEOUT_MS", 10_000),
            access_log=_flag(env.get("DSYNC_ACCESS_LOG")),
            graphiql=_flag(env.get("DSYNC_GRAPHIQL")),
            graphql_timeout_seconds=float(_int("DSYNC_GRAPHQL_TIMEOUT_SECONDS", 30)),
            graphql_max_cost=_int("DSYNC_GRAPHQL_MAX_COST", 2000),
            graphql_rate_limit=_float("DSYNC_GRAPHQL_RATE_LIMIT", 20.0),
            graphql_rate_burst=_int("DSYNC_GRAPHQL_RATE_BURST", 60),
            graphql_cost_rate=_float("DSYNC_GRAPHQL_COST_RATE", 500.0),
            graphql_cost_burst=_int("DSYNC_GRAPHQL_COST_BURST", 2000),
            graphql_refusal_delay_ms=_int("DSYNC_GRAPHQL_REFUSAL_DELAY_MS", 100),
            graphql_background_cost=_int("DSYNC_GRAPHQL_BACKGROUND_COST", 300),
            graphql_foreground_ms=_float("DSYNC_GRAPHQL_FOREGROUND_MS", 10.0),
            allowed_origins=_list(env.get("DSYNC_ALLOWED_ORIGINS")),
            event_poll_seconds=_float("DSYNC_EVENT_POLL_SECONDS", 1.0),
            event_retention_days=_float("DSYNC_EVENT_RETENTION_DAYS", 30.0),
            ws_max_subscriptions=_int("DSYNC_WS_MAX_SUBSCRIPTIONS", 20),
            ws_init_timeout_seconds=_float("DSYNC_WS_INIT_TIMEOUT_SECONDS", 10.0),
            ws_ping_seconds=_float("DSYNC_WS_PING_SECONDS", 15.0),
            scim_rate_limit=_float("DSYNC_SCIM_RATE_LIMIT", 200.0),
            scim_rate_burst=_int("DSYNC_SCIM_RATE_BURST", 400),
            scim_unauthenticated_rate_limit=_float("DSYNC_SCIM_UNAUTHENTICATED_RATE_LIMIT", 10.0),
            scim_patch_values_per_request=_int("DSYNC_SCIM_PATCH_VALUES_PER_REQUEST", 25),
            scim_refusal_delay_ms=_int("DSYNC_SCIM_REFUSAL_DELAY_MS", 100),
            scim_max_patch_operations=_int("DSYNC_SCIM_MAX_PATCH_OPERATIONS", 100),
            scim_max_multi_values=_int("DSYNC_SCIM_MAX_MULTI_VALUES", 100),
            log_format=(env.get("DSYNC_LOG_FORMAT") or "text").strip().lower(),
            log_level=(env.get("DSYNC_LOG_LEVEL") or "info").strip().lower(),
            metrics_token=env.get("DSYNC_METRICS_TOKEN") or None,
            webhook_worker=_flag(env.get("DSYNC_WEBHOOK_WORKER") or "1"),
            rule_evaluation_chunk=max(1, _int("DSYNC_RULE_EVALUATION_CHUNK", 50)),
            rule_evaluation_poll_seconds=_float("DSYNC_RULE_EVALUATION_POLL_SECONDS", 2.0),
            webhook_allow_private=_flag(env.get("DSYNC_WEBHOOK_ALLOW_PRIVATE")),
            webhook_timeout_seconds=_float("DSYNC_WEBHOOK_TIMEOUT_SECONDS", 10.0),
            webhook_retry_hours=_float("DSYNC_WEBHOOK_RETRY_HOURS", 72.0),
            webhook_max_backoff_seconds=_float("DSYNC_WEBHOOK_MAX_BACKOFF_SECONDS", 3600.0),
            webhook_concurrency=_int("DSYNC_WEBHOOK_CONCURRENCY", 32),
            webhook_sends=max(1, _int("DSYNC_WEBHOOK_SENDS", 2)),
            webhook_process=_flag(env.get("DSYNC_WEBHOOK_PROCESS") or "1"),
            webhook_nice=_int("DSYNC_WEBHOOK_NICE", 19),
            webhook_poll_seconds=_float("DSYNC_WEBHOOK_POLL_SECONDS", 0.25),
            role=_choice("DSYNC_ROLE", ROLES, "all"),
            realtime_nice=min(19, max(0, _int("DSYNC_REALTIME_NICE", 10))),
            costly_workers=max(0, _int("DSYNC_COSTLY_WORKERS", 1)),
            costly_nice=min(19, max(0, _int("DSYNC_COSTLY_NICE", 10))),
            ws_implementation=_choice("DSYNC_WS_IMPLEMENTATION", WS_IMPLEMENTATIONS, "websockets-sansio"),
        )


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    return Settings.from_env()
