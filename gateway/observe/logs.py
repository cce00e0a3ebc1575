"""Logging for ``dsync serve``: one configuration for the gateway's and uvicorn's loggers, text or JSON lines, each
record with the id of the request it belongs to, and secrets redacted whatever a library chose to log.

Request ids: every HTTP request and WebSocket connection gets one (a sane incoming ``X-Request-Id``, else a new one),
echoed in the response's ``X-Request-Id`` header and carried in a context variable, so any log record written while
handling it (uvicorn's access log line included) carries it.
"""

from __future__ import annotations

import itertools
import json
import logging
import os
import re
import sys
from contextvars import ContextVar
from datetime import UTC, datetime
from typing import Any, TextIO

from starlette.types import ASGIApp, Message, Receive, Scope, Send

REQUEST_ID: ContextVar[str | None] = ContextVar("dsync_request_id", default=None)

LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")
# What the gateway's own loggers and uvicorn's follow; other libraries log warnings and errors only (SQLAlchemy at
# debug would log every statement's parameters, i.e. directory data).
_OWN_LOGGERS = ("dsync", "uvicorn")

_HEADER = b"x-request-id"
# Any character outside these could forge log lines or headers; 128 is plenty for a UUID or a trace id.
_SANE_REQUEST_ID = re.compile(r"[A-Za-z0-9._:/+=-]{1,128}", re.ASCII)

# Credentials in whatever a library logs: header lines and dict/JSON fields named authorization or cookie (a
# WebSocket handshake's headers at debug level), "Bearer ..." anywhere, token query parameters, and the gateway's own
# secrets by their prefixes (SCIM tokens, API keys, setup links).
_SECRET = re.compile(
    r"(?P<field>(?:authorization|cookie)[\"']?\s*[:=]\s*[\"']?)[^\"'\r\n,}]+"
    r"|(?P<scheme>bearer\s+)[^\s\"',;}]+"
    r"|(?P<param>[?&](?:access_)?token=)[^&\s\"']+"
    r"|dsync_(?:scim|key|setup)_[A-Za-z0-9_-]+",
    re.IGNORECASE,
)
# What a client sent over a WebSocket, as the websockets library logs it at debug level (through uvicorn's logger):
# a connection_init carries the API key, and the library elides the middle of long frames, which can leave a key's
# tail with nothing around it to recognise. Only the frame's type and size are kept.
_INCOMING_FRAME = re.compile(r"^(< (?:TEXT|BINARY|CONT) ).*?((?: \[[^\[\]]*\])?)$", re.DOTALL)
REDACTED = "[redacted]"


def redact(text: str) -> str:
    """``text`` with every credential it seems to hold replaced by ``[redacted]``."""
    return _SECRET.sub(_redacted, _INCOMING_FRAME.sub(rf"\1{REDACTED}\2", text))


def _redacted(match: re.Match[str]) -> str:
    prefix = match.group("field") or match.group("scheme") or match.group("param") or ""
    return prefix + REDACTED


# A random prefix per process and a counter: unique across processes, and far cheaper than random bytes per request.
_PROCESS_PREFIX = os.urandom(6).hex()
_SEQUENCE = itertools.count(1)


def new_request_id() -> str:
    return f"{_PROCESS_PREFIX}-{next(_SEQUENCE):x}"


def request_id_of(scope: Scope) -> tuple[str, tuple[bytes, bytes]]:
    """The id of an HTTP request or WebSocket connection (the client's ``X-Request-Id`` when sane, else a new one)
    and the response header that echoes it."""
    request_id = _incoming_request_id(scope) or new_request_id()
    return request_id, (_HEADER, request_id.encode("ascii"))


def _incoming_request_id(scope: Scope) -> str | None:
    for name, value in scope["headers"]:
        if name == _HEADER:
            candidate: str = value.decode("latin-1")
            if _SANE_REQUEST_ID.fullmatch(candidate) and not _SECRET.search(candidate):
                return candidate
            return None
    return None


class RequestIds:
    """ASGI middleware: a request id per HTTP request and WebSocket connection, in ``REQUEST_ID`` and echoed back."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        request_id, header = request_id_of(scope)

        async def send_with_id(message: Message) -> None:
            if message["type"] in ("http.response.start", "websocket.accept", "websocket.http.response.start"):
                message["headers"] = [*message.get("headers", ()), header]
            await send(message)

        token = REQUEST_ID.set(request_id)
        # Not reset when the app raises: the server's "Exception in ASGI application" record, written next in this
        # request's own task (and context), then carries the id too.
        await self.app(scope, receive, send_with_id)
        REQUEST_ID.reset(token)


class _RequestContext(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get()
        return True


def _time(record: logging.LogRecord) -> str:
    moment = datetime.fromtimestamp(record.created, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


def _is_access_record(record: logging.LogRecord) -> bool:
    # uvicorn.access: '%s - "%s %s HTTP/%s" %d' with (client, method, path, http version, status).
    return record.name == "uvicorn.access" and isinstance(record.args, tuple) and len(record.args) == 5


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, request_id (in a request), exception (if any);
    access log lines add method, path, status and client."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": redact(record.getMessage()),
        }
        request_id = getattr(record, "request_id", None)
        if request_id:
            entry["request_id"] = request_id
        if _is_access_record(record):
            assert isinstance(record.args, tuple)
            client, method, path, _version, status = record.args
            entry.update(method=method, path=redact(str(path)), status=status, client=client)
        if record.exc_info:
            entry["exception"] = redact(self.formatException(record.exc_info))
        if record.stack_info:
            entry["stack"] = redact(self.formatStack(record.stack_info))
        return json.dumps(entry, ensure_ascii=False, default=str)


class TextFormatter(logging.Formatter):
    """``time LEVEL logger [request id] message``, for people reading a terminal."""

    def format(self, record: logging.LogRecord) -> str:
        request_id = getattr(record, "request_id", None)
        context = f" [{request_id}]" if request_id else ""
        line = f"{_time(record)} {record.levelname:<7} {record.name}{context} {redact(record.getMessage())}"
        if record.exc_info:
            line += "\n" + redact(self.formatException(record.exc_info))
        if record.stack_info:
            line += "\n" + redact(self.formatStack(record.stack_info))
        return line


def configure_logging(*, log_format: str, level: str, access_log: bool, stream: TextIO | None = None) -> None:
    """Route every logger (uvicorn's too: start it with ``log_config=None``) through one handler on stderr."""
    if log_format not in LOG_FORMATS:
        raise ValueError(f"DSYNC_LOG_FORMAT must be one of {', '.join(LOG_FORMATS)}, got {log_format!r}")
    if level not in LOG_LEVELS:
        raise ValueError(f"DSYNC_LOG_LEVEL must be one of {', '.join(LOG_LEVELS)}, got {level!r}")
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if log_format == "json" else TextFormatter())
    handler.addFilter(_RequestContext())
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.captureWarnings(True)  # Python warnings too become records (JSON lines), not bare text on stderr
    for name in _OWN_LOGGERS:
        own = logging.getLogger(name)
        own.setLevel(level.upper())
        own.handlers.clear()
        own.propagate = True
    # uvicorn's own configuration (a uvicorn.Config created earlier in the process) sets this one's level directly:
    # let it follow "uvicorn" again.
    error = logging.getLogger("uvicorn.error")
    error.setLevel(logging.NOTSET)
    error.handlers.clear()
    error.propagate = True
    error.disabled = False
    access = logging.getLogger("uvicorn.access")
    access.handlers.clear()
    access.setLevel(logging.INFO)
    access.propagate = access_log
    access.disabled = not access_log
