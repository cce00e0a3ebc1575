"""What a simulated session shows a person: progress on stderr while it runs, then a summary of the answers."""

from __future__ import annotations

import time
from typing import Any, TextIO

from gateway.simulate.client import Summary
from gateway.simulate.providers import PROVIDERS

_BAR_WIDTH = 30


class Progress:
    """A bar redrawn in place when ``stream`` is a terminal; otherwise one line per finished phase."""

    def __init__(self, *, stream: TextIO) -> None:
        self._total, self._stream = 0, stream
        self._interactive = stream.isatty()
        self._done = 0
        self._phase: str | None = None
        self._drawn_at = 0.0

    def start(self, total: int) -> None:
        self._total = total

    def advance(self, phase: str) -> None:
        if phase != self._phase:
            self._end_phase()
            self._phase = phase
        self._done += 1
        now = time.monotonic()
        # Redraw at most 20 times a second: a fast local server answers thousands of requests a second.
        if self._interactive and (now - self._drawn_at >= 0.05 or self._done == self._total):
            self._drawn_at = now
            filled = _BAR_WIDTH * self._done // max(self._total, 1)
            bar = "#" * filled + "." * (_BAR_WIDTH - filled)
            self._stream.write(f"\r[{bar}] {self._done}/{self._total} {phase:<16}")
            self._stream.flush()

    def close(self, *, finished: bool = True) -> None:
        if finished:
            self._end_phase()
        if self._interactive:
            self._stream.write("\r\x1b[K")
            self._stream.flush()

    def _end_phase(self) -> None:
        if self._phase is not None and not self._interactive:
            self._stream.write(f"{self._phase}: done ({self._done}/{self._total})\n")
            self._stream.flush()


def summary_json(summary: Summary) -> dict[str, Any]:
    return {
        "ok": not summary.failures,
        "provider": summary.provider,
        "endpoint": summary.endpoint,
        "seed": summary.seed,
        "domain": summary.domain,
        "users": summary.users,
        "groups": summary.groups,
        "requests": summary.requests,
        "failed": len(summary.failures),
        "linked": summary.linked,
        "skipped": summary.skipped,
        "elapsed_seconds": round(summary.elapsed, 3),
        "requests_per_second": round(summary.requests_per_second, 1),
        "responses": [
            {"method": method, "resource": resource, "status": status, "count": count}
            for (method, resource, status), count in sorted(summary.responses.items())
        ],
        "failures": [
            {
                "phase": f.phase,
                "method": f.method,
                "path": f.path,
                "status": f.status,
                "scim_type": f.scim_type,
                "detail": f.detail,
            }
            for f in summary.failures
        ],
    }


def _count(number: int, noun: str) -> str:
    return f"{number} {noun}" if number == 1 else f"{number} {noun}s"


def summary_text(summary: Summary) -> str:
    lines = [
        f"Played {PROVIDERS[summary.provider].title}'s provisioning session against {summary.endpoint}",
        f"  {_count(summary.users, 'user')} and {_count(summary.groups, 'group')} under {summary.domain} "
        f"(seed {summary.seed})",
        f"  {summary.requests} requests in {summary.elapsed:.2f} s ({summary.requests_per_second:.1f} requests/s), "
        f"{len(summary.failures)} failed"
        + (f", {summary.linked} existing resources linked" if summary.linked else "")
        + (f", {summary.skipped} skipped" if summary.skipped else ""),
        "",
        f"  {'method':<8}{'resource':<24}{'status':>6}{'count':>7}",
    ]
    for (method, resource, status), count in sorted(summary.responses.items()):
        lines.append(f"  {method:<8}{resource:<24}{status:>6}{count:>7}")
    if summary.failures:
        lines += ["", "Failures:"]
        for f in summary.failures:
            kind = f" {f.scim_type}" if f.scim_type else ""
            lines.append(f"  [{f.phase}] {f.method} {f.path} -> {f.status}{kind}: {f.detail}")
    return "\n".join(lines)
