"""FR802: how the app logs in production, seen by a fresh child process.

Like ``pytest_fastapi_rules.production`` (whose conventions this follows: the parent's ``sys.path``,
the production variables set, one JSON document on the real stdout), the child imports the app
with the production environment set, because settings are read once at import. Unlike it, the child
redirects every engine to a temporary SQLite database first (``database.Redirector``), so starting
the production lifespan never reaches a real database. It then:

1. starts the lifespan, and asks ``structlog.is_configured()``;
2. logs one warning event through structlog with fds 1 and 2 sent to a file, and reads back the
   line that carries it: JSON or not.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import traceback
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules.childproc import ChildProcess, ChildTimeout
from pytest_fastapi_rules.facts import AppFacts
from pytest_fastapi_rules.loading import AppLoadError, load_app
from pytest_fastapi_rules.probing.counting import SqlMonitor
from pytest_fastapi_rules.probing.database import Redirector
from pytest_fastapi_rules.probing.placement import SQLITE, DatabasePlacement, PendingDatabase
from pytest_fastapi_rules.production import _restore_parent_sys_path, describe_env, production_env
from pytest_fastapi_rules.runtime import AppRuntime, AppStartupError

if TYPE_CHECKING:
    from pytest_fastapi_rules.options import RulesOptions

PROTOCOL = 1
EVENT = "fastapi_rules_probe_event"
_CACHE: weakref.WeakKeyDictionary[Any, LoggingFacts | Exception] = weakref.WeakKeyDictionary()
_STARTED: weakref.WeakKeyDictionary[Any, tuple[dict[str, str], ChildProcess]] = weakref.WeakKeyDictionary()


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
    """The child could not start the app in production mode; the message is for the user."""

    def __init__(self, message: str, output: str = "") -> None:
        super().__init__(message)
        self.output = output


def start_logging_child(facts: AppFacts, options: RulesOptions) -> None:
    """Start the child now, in the background; :func:`logging_facts` reads it (a ``background`` hook)."""
    if facts not in _CACHE and facts not in _STARTED:
        env = _production_env(facts, options)
        _STARTED[facts] = (env, _start_child(facts.loaded.spec, options.app_dir, env, options))


def logging_facts(facts: AppFacts, options: RulesOptions) -> LoggingFacts:
    """Run the child once per session (or read the one already started); the result is cached."""
    cached = _CACHE.get(facts)
    if cached is None:
        env, child = _STARTED.pop(facts, (None, None))
        if env is None or child is None:
            env = _production_env(facts, options)
            child = _start_child(facts.loaded.spec, options.app_dir, env, options)
        try:
            cached = _read_child(child, env)
        except LoggingProbeError as exc:
            cached = exc
        _CACHE[facts] = cached
    if isinstance(cached, Exception):
        raise cached
    return cached


def _production_env(facts: AppFacts, options: RulesOptions) -> dict[str, str]:
    """The production variables the other production checks use (the default adapted to the app:
    ``ENVIRONMENT=Production`` for an app whose settings accept only that spelling)."""
    try:
        return dict(production_env(facts, options).env)
    except Exception:  # noqa: BLE001 - an older core, or odd settings: the configured variables
        return dict(options.production_env)


def _start_child(spec: str, app_dir: Path, env: dict[str, str], options: RulesOptions) -> ChildProcess:
    args = ["--app", spec, "--app-dir", str(app_dir), "--startup-timeout", str(options.startup_timeout)]
    timeout = max(60.0, options.startup_timeout * 2 + 10)
    return ChildProcess("pytest_fastapi_rules.probing.logchild", args, env, timeout, options.count_coverage)


def _read_child(child: ChildProcess, env: dict[str, str]) -> LoggingFacts:
    try:
        completed = child.output()
    except ChildTimeout:
        raise LoggingProbeError(
            f"with the production environment set ({describe_env(env)}), starting the app to look "
            "at its logging did not finish in time"
        ) from None
    document = None
    for line in reversed(completed.stdout.splitlines()):
        if line.startswith("{"):
            try:
                candidate = json.loads(line)
            except ValueError:
                continue
            if isinstance(candidate, dict) and candidate.get("protocol") == PROTOCOL:
                document = candidate
                break
    tail = "\n".join(completed.stderr.strip().splitlines()[-30:])
    if document is None or not document.get("ok"):
        error = (document or {}).get("error", f"the child exited with code {completed.returncode}")
        raise LoggingProbeError(
            f"with the production environment set ({describe_env(env)}), the app could not be "
            f"started to look at its logging: {error}",
            tail,
        )
    return LoggingFacts(
        env=env,
        structlog_installed=bool(document.get("structlog_installed")),
        configured=bool(document.get("configured")),
        line=document.get("line"),
        is_json=bool(document.get("is_json")),
    )


# -- child side -------------------------------------------------------------------------------------


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


def gather(spec: str, app_dir: Path, startup_timeout: float) -> dict[str, Any]:
    base: dict[str, Any] = {"protocol": PROTOCOL}
    try:
        import structlog
    except ImportError:
        return {**base, "ok": True, "structlog_installed": False}
    try:
        loaded = load_app(spec, app_dir)
    except AppLoadError as exc:
        sys.stderr.write(exc.render() + "\n")
        return {**base, "ok": False, "error": exc.message}
    runtime = AppRuntime(loaded.app, timeout=startup_timeout)
    facts = AppFacts(loaded, root=app_dir, runtime=runtime)
    monitor = SqlMonitor()
    # Whether structlog is configured does not depend on the database: the embedded one will do.
    pending = PendingDatabase(DatabasePlacement(SQLITE, "the logging child"), monitor.allow)
    redirector = Redirector(pending, monitor)
    monitor.install()
    redirector.patch_creation()
    redirector.redirect_existing(facts, (), ())
    try:
        try:
            runtime.start()
        except AppStartupError as exc:
            sys.stderr.write(exc.render() + "\n")
            return {**base, "ok": False, "error": exc.message}
        configured = structlog.is_configured()
        line, is_json = _render_probe_event()
        return {
            **base,
            "ok": True,
            "structlog_installed": True,
            "configured": configured,
            "line": line,
            "is_json": is_json,
        }
    finally:
        runtime.stop()
        redirector.restore()
        monitor.remove()
        runtime.run(redirector.dispose_all())
        runtime.close()
        if pending.database is not None:
            pending.database.drop_blocking()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pytest_fastapi_rules.probing.logchild")
    parser.add_argument("--app", required=True)
    parser.add_argument("--app-dir", required=True)
    parser.add_argument("--startup-timeout", type=float, default=30.0)
    args = parser.parse_args(argv)
    _restore_parent_sys_path()
    sys.stdout.flush()
    document_fd = os.dup(1)
    os.dup2(2, 1)
    try:
        document = gather(args.app, Path(args.app_dir), args.startup_timeout)
    except BaseException as exc:  # noqa: BLE001 - reported to the parent
        traceback.print_exc()
        document = {"protocol": PROTOCOL, "ok": False, "error": f"{type(exc).__name__}: {exc}"}
    with os.fdopen(document_fd, "w", encoding="utf-8") as out:
        json.dump(document, out, default=str)
        out.write("\n")
    sys.stderr.flush()
    os._exit(0 if document.get("ok") else 3)


if __name__ == "__main__":
    main()
