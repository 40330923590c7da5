"""FR802: how the app logs in production, seen by the production-mode child.

The production-mode child (this package's ``__main__``) imports and starts the app with the
production environment set, its databases redirected to a throwaway one; when FR802 is selected it
then runs :func:`logging_document` in the started app, and puts the result in its JSON document
under ``"logging"``. One child serves FR108, FR503 and FR802: a second child imported the app with
the same environment again. This module is both halves of FR802's part:

1. in the child, once the lifespan has started: ask ``structlog.is_configured()``, then log one
   warning event through structlog with fds 1 and 2 sent to a file, and read back the line that
   carries it: JSON or not;
2. in the parent, :func:`read_logging` turns that part of the document into :class:`LoggingFacts`.

A crash of the logging half is caught in the child and written as this part's error: only FR802
reports it, the production facts stay usable.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
import traceback
from dataclasses import dataclass
from typing import Any

EVENT = "fastapi_rules_probe_event"


@dataclass(frozen=True)
class LoggingFacts:
    """What the child saw of the app's logging in production mode."""

    env: dict[str, str]
    structlog_installed: bool
    configured: bool
    #: The line the probe event was rendered as (None: it did not appear on stdout/stderr).
    line: str | None
    is_json: bool


class LoggingProbeError(Exception):
    """The app's logging in production mode could not be looked at; the message is for the user."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def read_logging(part: Any, env: dict[str, str], env_text: str) -> LoggingFacts:
    """FR802's facts from the ``"logging"`` part of the child's document (raises
    :class:`LoggingProbeError` when that part says it failed)."""
    if not isinstance(part, dict) or not part.get("ok"):
        error = part.get("error") if isinstance(part, dict) else None
        raise LoggingProbeError(
            f"with the production environment set ({env_text}), looking at the app's logging "
            f"failed: {error or 'the child did not report it'}"
        )
    return LoggingFacts(
        env=env,
        structlog_installed=bool(part.get("structlog_installed")),
        configured=bool(part.get("configured")),
        line=part.get("line"),
        is_json=bool(part.get("is_json")),
    )


# -- child side -------------------------------------------------------------------------------------


def logging_document() -> dict[str, Any]:
    """In the child, once the app has started: FR802's part of the document (never raises)."""
    try:
        try:
            import structlog
        except ImportError:
            return {"ok": True, "structlog_installed": False}
        configured = structlog.is_configured()
        line, is_json = _render_probe_event()
        return {
            "ok": True,
            "structlog_installed": True,
            "configured": configured,
            "line": line,
            "is_json": is_json,
        }
    except Exception as exc:  # noqa: BLE001 - FR802's failure, reported by FR802 alone
        traceback.print_exc()
        return {"ok": False, "error": f"{type(exc).__name__}: {exc}"}


def _render_probe_event() -> tuple[str | None, bool]:
    import structlog

    sys.stdout.flush()
    sys.stderr.flush()
    with tempfile.TemporaryFile(mode="w+b") as sink:
        saved = os.dup(1), os.dup(2)
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            structlog.get_logger("fastapi_rules").warning(EVENT, probe=True)
            sys.stdout.flush()
            sys.stderr.flush()
        finally:
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
        sink.seek(0)
        output = sink.read().decode("utf-8", errors="replace")
    for line in output.splitlines():
        if EVENT in line:
            text = line.strip()
            try:
                parsed = json.loads(text)
            except ValueError:
                return text, False
            return text, isinstance(parsed, dict)
    return None, False
