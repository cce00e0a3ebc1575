"""``dsync simulate``: its options, their validation, and the exit status an operator's script can rely on."""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
from collections.abc import Callable
from typing import TypeVar
from urllib.parse import urlsplit

from gateway.simulate.client import SimulationError, run_session
from gateway.simulate.providers import PROVIDERS
from gateway.simulate.report import Progress, summary_json, summary_text
from gateway.simulate.roster import build_roster

MAX_USERS = 100_000
MAX_GROUPS = 10_000


def _endpoint(value: str) -> str:
    parts = urlsplit(value.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"expected an http(s) URL such as https://host/scim/v2/ID, got {value!r}")
    if parts.query or parts.fragment:
        raise argparse.ArgumentTypeError(f"the endpoint takes no query or fragment: {value!r}")
    try:
        parts.port  # noqa: B018  (raises on a malformed port)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(f"invalid port in {value!r}") from exc
    return value.strip().rstrip("/")


def _token(value: str) -> str:
    token = value.strip()
    if not token or not token.isascii() or any(c.isspace() or not c.isprintable() for c in token):
        raise argparse.ArgumentTypeError("the bearer token must be one non-empty word of ASCII characters")
    return token


N = TypeVar("N", int, float)


def _bounded(convert: Callable[[str], N], minimum: N, maximum: N, *, what: str, range_text: str) -> Callable[[str], N]:
    """An argparse type: ``convert`` the text, then refuse it outside ``minimum``..``maximum`` (inclusive)."""

    def parse(value: str) -> N:
        try:
            number = convert(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected {what}, got {value!r}") from None
        if not minimum <= number <= maximum:
            raise argparse.ArgumentTypeError(range_text.format(minimum=minimum, maximum=maximum, value=value))
        return number

    return parse


# Directory types call Entra ID `azure` (WorkOS's name): the simulator answers to both.
_PROVIDER_ALIASES = {"azure": "entra"}
_COUNT_RANGE = "expected a number from {minimum} to {maximum}, got {value}"
_SECONDS_RANGE = "expected {minimum:g} to {maximum:g} seconds, got {value}"


def _count(minimum: int, maximum: int) -> Callable[[str], int]:
    return _bounded(int, minimum, maximum, what="a whole number", range_text=_COUNT_RANGE)


def _seconds(minimum: float, maximum: float) -> Callable[[str], float]:
    return _bounded(float, minimum, maximum, what="a number of seconds", range_text=_SECONDS_RANGE)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.description = (
        "Play an identity provider's SCIM 2.0 provisioning session against any SCIM endpoint: Test Connection, "
        "users (each looked up first), groups, memberships, updates, a deactivation and a removal, in that "
        "provider's request shapes. Prints what the server answered; exits 1 if anything failed."
    )
    parser.add_argument(
        "--endpoint", required=True, type=_endpoint, metavar="URL", help="the directory's SCIM base URL"
    )
    parser.add_argument(
        "--token",
        type=_token,
        default=None,
        help="the directory's SCIM bearer token; required unless DSYNC_SCIM_TOKEN is set (preferred: a command line "
        "is visible to other users)",
    )
    parser.add_argument(
        "--provider",
        choices=sorted([*PROVIDERS, *_PROVIDER_ALIASES]),
        default="jumpcloud",
        help="whose session to play (azure is entra, as directory types name it)",
    )
    parser.add_argument("--users", type=_count(1, MAX_USERS), default=25, metavar="N", help="users to provision")
    parser.add_argument("--groups", type=_count(0, MAX_GROUPS), default=5, metavar="M", help="groups to push")
    parser.add_argument("--seed", type=_count(0, 2**63 - 1), help="reproduce a run's data (default: a new run)")
    parser.add_argument(
        "--delay", type=_seconds(0, 60), default=0.0, metavar="SECONDS", help="pause after each request (default: none)"
    )
    parser.add_argument("--timeout", type=_seconds(0.1, 600), default=15.0, metavar="SECONDS", help="per request")
    parser.add_argument("--json", action="store_true", help="print the summary as one JSON object")


def run(args: argparse.Namespace) -> int:
    if args.token is None:
        try:
            args.token = _token(os.environ.get("DSYNC_SCIM_TOKEN") or "")
        except argparse.ArgumentTypeError:
            print("error: give the directory's bearer token with --token or in DSYNC_SCIM_TOKEN", file=sys.stderr)
            return 2
    seed: int = args.seed if args.seed is not None else secrets.randbelow(2**31)
    provider = PROVIDERS[_PROVIDER_ALIASES.get(args.provider, args.provider)]
    roster = build_roster(seed=seed, users=args.users, groups=args.groups)
    progress = Progress(stream=sys.stderr)
    try:
        summary = run_session(
            provider=provider,
            roster=roster,
            seed=seed,
            endpoint=args.endpoint,
            token=args.token,
            timeout=args.timeout,
            delay=args.delay,
            progress=progress,
        )
    except SimulationError as exc:
        progress.close(finished=False)
        print(f"error: {exc}", file=sys.stderr)
        if args.json:
            print(json.dumps({"ok": False, "provider": provider.name, "endpoint": args.endpoint, "error": str(exc)}))
        return 1
    except KeyboardInterrupt:
        progress.close(finished=False)
        print("interrupted", file=sys.stderr)
        return 130
    progress.close()
    print(json.dumps(summary_json(summary)) if args.json else summary_text(summary))
    return 1 if summary.failures else 0
