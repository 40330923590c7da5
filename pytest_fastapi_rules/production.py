"""Facts about the app in production mode, gathered by a fresh child process.

Why a child process: the app under check was imported once, in development mode, and its settings
objects are cached (``lru_cache``) and its app and engines are built from them at import or startup.
Setting ``ENVIRONMENT=production`` in this process would change nothing the app already read, and
re-importing the app here would leave two copies of every module. So the parent runs::

    python -m pytest_fastapi_rules.production --app SPEC --app-dir DIR

with ``os.environ`` plus the production variables (``fastapi_rules_production_env``, default
``ENVIRONMENT=production``). The child imports the app with the same loader, starts its lifespan with
the same :class:`AppRuntime`, discovers engines with the same discovery code, asks ``/docs``,
``/redoc`` and ``/openapi.json`` for their status, prints one JSON document on its stdout, and exits.
Anything the app prints goes to the child's stderr, which the parent shows, labelled as the app's
output, when production mode fails.

The parent runs the child at most once per (session, production environment): the result, or the
failure, is cached on the session's :class:`AppFacts`.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import traceback
import weakref
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules.facts import DiscoveryError
from pytest_fastapi_rules.runtime import AppStartupError

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts
    from pytest_fastapi_rules.options import RulesOptions

#: Version of the JSON document the child prints (bumped when its shape changes incompatibly).
PROTOCOL = 1
#: How long the child may take to import, start, probe and stop the app, at least.
CHILD_TIMEOUT = 60.0
#: The documentation routes FR108 asks about (their status in production mode).
DOCS_PATHS = ("/docs", "/redoc", "/openapi.json")
#: The parent's ``sys.path``, so that the child imports exactly what the parent imported.
SYS_PATH_ENV = "PYTEST_FASTAPI_RULES_SYS_PATH"
#: How much of the app's output a failure message shows.
OUTPUT_TAIL_LINES = 40


class ProductionModeError(AppStartupError):
    """The app could not be imported or started with the production environment set.

    A subclass of :class:`AppStartupError` so that items report it as "cannot check, the app did not
    start", with the app's own output (the child's stderr) below the message.
    """

    def __init__(self, message: str, output: str | None = None) -> None:
        super().__init__(message)
        self.output = output

    def render(self) -> str:
        if not self.output or not self.output.strip():
            return self.message
        return (
            f"{self.message}\n\nThe app's output in production mode (stderr, last "
            f"{OUTPUT_TAIL_LINES} lines):\n{self.output.rstrip()}"
        )


@dataclass(frozen=True)
class ProductionEngine:
    """An engine the app created with the production environment set."""

    where: str
    #: The engine's ``echo`` flag as SQLAlchemy holds it: False/None (off), True, or "debug".
    echo: bool | str | None
    pool: str


@dataclass(frozen=True)
class ProductionFacts:
    """What the child saw of the app in production mode."""

    env: dict[str, str]
    engines: list[ProductionEngine] = field(default_factory=list)
    #: Status code of ``GET path`` for each of :data:`DOCS_PATHS` (absent when the request failed).
    docs_status: dict[str, int] = field(default_factory=dict)
    #: ``path -> "ExceptionType: text"`` for requests that raised instead of answering.
    docs_errors: dict[str, str] = field(default_factory=dict)

    @property
    def env_text(self) -> str:
        return describe_env(self.env)


def describe_env(env: dict[str, str]) -> str:
    """``ENVIRONMENT=production`` (several variables joined by spaces), for messages."""
    return " ".join(f"{name}={value}" for name, value in env.items()) or "(no variables)"


# -- parent side ------------------------------------------------------------------------------------

_Cached = ProductionFacts | ProductionModeError | DiscoveryError
_CACHE: weakref.WeakKeyDictionary[AppFacts, dict[tuple[Any, ...], _Cached]] = weakref.WeakKeyDictionary()


def production_facts(facts: AppFacts, options: RulesOptions) -> ProductionFacts:
    """The app's facts in production mode, gathered once per session and environment.

    Raises :class:`ProductionModeError` when the app cannot be imported or started in production
    mode, and :class:`DiscoveryError` when an engine path named in the ini cannot be resolved there.
    Both are cached, so every rule that asks gets the same answer without a second child.
    """
    env = dict(options.production_env)
    key = (
        facts.loaded.spec,
        str(options.app_dir),
        tuple(sorted(env.items())),
        options.engine_paths,
        options.session_factory_paths,
    )
    per_facts = _CACHE.setdefault(facts, {})
    if key not in per_facts:
        try:
            per_facts[key] = run_child(
                spec=facts.loaded.spec,
                app_dir=options.app_dir,
                env=env,
                engine_paths=options.engine_paths,
                factory_paths=options.session_factory_paths,
                startup_timeout=options.startup_timeout,
            )
        except (ProductionModeError, DiscoveryError) as exc:
            per_facts[key] = exc
    cached = per_facts[key]
    if isinstance(cached, Exception):
        raise cached
    return cached


def _tail(text: str, lines: int = OUTPUT_TAIL_LINES) -> str:
    return "\n".join(text.rstrip().splitlines()[-lines:])


def _text(stream: str | bytes | None) -> str:
    if stream is None:
        return ""
    if isinstance(stream, bytes):
        return stream.decode("utf-8", errors="replace")
    return stream


def run_child(
    *,
    spec: str,
    app_dir: Path,
    env: dict[str, str],
    engine_paths: tuple[str, ...] = (),
    factory_paths: tuple[str, ...] = (),
    startup_timeout: float = 30.0,
    timeout: float | None = None,
) -> ProductionFacts:
    """Run the child process once and turn its JSON document (or its failure) into facts.

    ``timeout`` bounds the whole child (import, startup, probes, shutdown); by default
    :data:`CHILD_TIMEOUT`, or more when the app's own startup timeout is long.
    """
    command = [
        sys.executable,
        "-m",
        "pytest_fastapi_rules.production",
        "--app",
        spec,
        "--app-dir",
        str(app_dir),
        "--startup-timeout",
        str(startup_timeout),
    ]
    for path in engine_paths:
        command += ["--engine", path]
    for path in factory_paths:
        command += ["--session-factory", path]
    for name in env:
        command += ["--env", name]
    child_env = {**os.environ, **env, SYS_PATH_ENV: os.pathsep.join(p for p in sys.path if p)}
    if timeout is None:
        timeout = max(CHILD_TIMEOUT, startup_timeout * 2 + 10)
    env_text = describe_env(env)
    try:
        completed = subprocess.run(
            command,
            env=child_env,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as exc:
        raise ProductionModeError(
            f"With the production environment set ({env_text}), importing and starting the app "
            f"did not finish within {timeout:g} s (the plugin runs it in a separate process to "
            "see production settings). Check that production mode does not wait on a service "
            "that is not reachable from the test environment.",
            _tail(_text(exc.stderr)),
        ) from None
    stderr_tail = _tail(completed.stderr)
    document = _parse_document(completed.stdout)
    if document is None:
        raise ProductionModeError(
            f"With the production environment set ({env_text}), the process that imports the app "
            f"exited with code {completed.returncode} without a result (the app may have called "
            "sys.exit or os._exit, or crashed the interpreter).",
            stderr_tail,
        )
    if not document.get("ok"):
        raise _failure_from(document, env, stderr_tail)
    return ProductionFacts(
        env=env,
        engines=[
            ProductionEngine(where=str(e["where"]), echo=e.get("echo"), pool=str(e.get("pool", "")))
            for e in document.get("engines", [])
        ],
        docs_status={str(k): int(v) for k, v in document.get("docs_status", {}).items()},
        docs_errors={str(k): str(v) for k, v in document.get("docs_errors", {}).items()},
    )


def _parse_document(stdout: str) -> dict[str, Any] | None:
    """The child's JSON document: the whole stdout, or failing that its last JSON line."""
    candidates = [stdout.strip()] + [line.strip() for line in reversed(stdout.splitlines())]
    for candidate in candidates:
        if not candidate.startswith("{"):
            continue
        try:
            document = json.loads(candidate)
        except ValueError:
            continue
        if isinstance(document, dict) and document.get("protocol") == PROTOCOL:
            return document
    return None


def _failure_from(
    document: dict[str, Any], env: dict[str, str], output: str
) -> ProductionModeError | DiscoveryError:
    stage = document.get("stage")
    error = str(document.get("error", "unknown error"))
    env_text = describe_env(env)
    if stage == "discovery":
        return DiscoveryError(f"with the production environment set ({env_text}): {error}")
    rejected = [name for name in document.get("rejected_env", []) if name in env]
    if rejected:
        named = ", ".join(f"{name}={env[name]}" for name in rejected)
        return ProductionModeError(
            f"With the production environment set ({env_text}), the app's settings reject "
            f"{named}: {error} Set the ini key fastapi_rules_production_env to the NAME=VALUE "
            "lines your app uses in production (e.g. ENVIRONMENT=prod).",
            output,
        )
    what = {
        "lifespan": "the app's lifespan failed at startup",
        "import": "importing the app failed",
    }.get(str(stage), "the process that imports the app failed")
    return ProductionModeError(
        f"With the production environment set ({env_text}), {what}: {error} Production-mode "
        "checks cannot run until the app starts with these variables in the test environment; "
        "add the other variables production needs to the ini key fastapi_rules_production_env "
        "(NAME=VALUE lines).",
        output,
    )


# -- child side -------------------------------------------------------------------------------------


def _restore_parent_sys_path() -> None:
    """Put the parent's import path first, so the child imports the same app and libraries."""
    entries = [entry for entry in os.environ.get(SYS_PATH_ENV, "").split(os.pathsep) if entry]
    sys.path[:] = entries + [entry for entry in sys.path if entry not in entries]


def _rejected_env(exc: BaseException, env: dict[str, str]) -> list[str]:
    """Production variables that a pydantic ValidationError in ``exc``'s chain complains about."""
    from pydantic import ValidationError

    seen: set[int] = set()
    current: BaseException | None = exc
    rejected: list[str] = []
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, ValidationError):
            for error in current.errors():
                loc = [str(part).lower() for part in error.get("loc", ())]
                value = error.get("input")
                for name, expected in env.items():
                    field_matches = bool(loc) and (
                        loc[0] == name.lower() or name.lower().endswith("_" + loc[0])
                    )
                    if (field_matches or value == expected) and name not in rejected:
                        rejected.append(name)
        current = current.__cause__ or current.__context__
    return rejected


async def _probe_docs(app: Any) -> tuple[dict[str, int], dict[str, str]]:
    """Status of GET on each documentation path, in-process (base URL http://localhost)."""
    import httpx

    statuses: dict[str, int] = {}
    errors: dict[str, str] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://localhost") as client:
        for path in DOCS_PATHS:
            try:
                response = await client.get(path)
            except Exception as exc:  # noqa: BLE001 - the app's failure is a fact to report
                errors[path] = f"{type(exc).__name__}: {exc}"
            else:
                statuses[path] = response.status_code
    return statuses, errors


def _echo_of(engine: Any) -> bool | str | None:
    value = getattr(getattr(engine, "sync_engine", engine), "echo", None)
    return value if isinstance(value, bool | str) or value is None else bool(value)


def gather(
    spec: str,
    app_dir: Path,
    env: dict[str, str],
    engine_paths: tuple[str, ...],
    factory_paths: tuple[str, ...],
    startup_timeout: float,
) -> dict[str, Any]:
    """Import and start the app, and describe it as the JSON document the parent reads."""
    from pytest_fastapi_rules.facts import AppFacts
    from pytest_fastapi_rules.loading import AppLoadError, load_app
    from pytest_fastapi_rules.runtime import AppRuntime

    base: dict[str, Any] = {"protocol": PROTOCOL, "env": env}
    try:
        loaded = load_app(spec, app_dir)
    except AppLoadError as exc:
        sys.stderr.write(exc.render() + "\n")
        return {
            **base,
            "ok": False,
            "stage": "import",
            "error": exc.message,
            "rejected_env": _rejected_env(exc, env),
        }
    runtime = AppRuntime(loaded.app, timeout=startup_timeout)
    try:
        facts = AppFacts(loaded, root=app_dir, runtime=runtime)
        try:
            found = facts.runtime_facts(engine_paths, factory_paths)
        except AppStartupError as exc:
            sys.stderr.write(exc.render() + "\n")
            return {
                **base,
                "ok": False,
                "stage": "lifespan",
                "error": exc.message,
                "rejected_env": _rejected_env(exc, env),
            }
        except DiscoveryError as exc:
            return {**base, "ok": False, "stage": "discovery", "error": str(exc)}
        try:
            statuses, errors = runtime.run(
                _probe_docs(runtime.asgi_app), timeout=startup_timeout + 30
            )
        except Exception as exc:  # noqa: BLE001 - a hung or broken app is a fact, not a crash
            statuses, errors = {}, dict.fromkeys(DOCS_PATHS, f"{type(exc).__name__}: {exc}")
        return {
            **base,
            "ok": True,
            "engines": [
                {
                    "where": discovered.where,
                    "echo": _echo_of(discovered.obj),
                    "pool": type(getattr(discovered.obj, "pool", None)).__name__,
                }
                for discovered in found.engines
            ],
            "docs_status": statuses,
            "docs_errors": errors,
        }
    finally:
        shutdown_error = runtime.close()
        if shutdown_error:
            sys.stderr.write(f"The app's lifespan failed at shutdown:\n{shutdown_error}\n")


def main(argv: list[str] | None = None) -> int:
    """Child entry point: print one JSON document on the real stdout, the app's output on stderr."""
    parser = argparse.ArgumentParser(prog="python -m pytest_fastapi_rules.production")
    parser.add_argument("--app", required=True)
    parser.add_argument("--app-dir", required=True)
    parser.add_argument("--startup-timeout", type=float, default=30.0)
    parser.add_argument("--engine", action="append", default=[])
    parser.add_argument("--session-factory", action="append", default=[])
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="NAME of a production variable (its value is read from the environment)",
    )
    args = parser.parse_args(argv)
    _restore_parent_sys_path()

    # The app may print (logging to stdout is common): keep fd 1 for the document alone.
    sys.stdout.flush()
    document_fd = os.dup(1)
    os.dup2(2, 1)
    env = {name: os.environ.get(name, "") for name in args.env}
    try:
        document = gather(
            args.app,
            Path(args.app_dir),
            env,
            tuple(args.engine),
            tuple(args.session_factory),
            args.startup_timeout,
        )
    except BaseException as exc:  # noqa: BLE001 - reported to the parent as a failure
        traceback.print_exc()
        document = {
            "protocol": PROTOCOL,
            "ok": False,
            "stage": "internal",
            "error": f"{type(exc).__name__}: {exc}",
        }
    with os.fdopen(document_fd, "w", encoding="utf-8") as out:
        json.dump(document, out, default=str)
        out.write("\n")
    sys.stdout.flush()
    sys.stderr.flush()
    # os._exit, not sys.exit: threads the app left running (an aiosqlite engine that was never
    # disposed, a scheduler) must not keep the child alive until the parent's timeout.
    os._exit(0 if document.get("ok") else 3)


if __name__ == "__main__":
    main()
