"""The production-mode child: ``python -m pytest_fastapi_rules.production`` (see the package).

Why a child process: the app under check was imported once, in development mode, and its settings
objects are cached (``lru_cache``) and its app and engines are built from them at import or startup.
Setting ``ENVIRONMENT=production`` in the parent would change nothing the app already read, and
re-importing the app there would leave two copies of every module. So the parent
(:mod:`~pytest_fastapi_rules.production.facts`) starts this module in a fresh interpreter with the
production variables set. It imports the app with the same loader, starts its lifespan with the same
:class:`AppRuntime`, discovers engines with the same discovery code, asks ``/docs``, ``/redoc`` and
``/openapi.json`` (and the documentation paths the app declares) what they serve, gathers FR802's
part when asked (:mod:`~pytest_fastapi_rules.production.app_logging`), prints one JSON document on
its stdout, and exits. Anything the app prints goes to its stderr.

Its import path is what it uses, nothing more (issue #20: it runs once per session, and every module
it imports is paid for before the app starts): it never imports the parent's side, pytest, or the
probe run's data generation.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import traceback
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pytest_fastapi_rules.discovery import DiscoveryError, runtime_facts
from pytest_fastapi_rules.facts import AppFacts
from pytest_fastapi_rules.loading import AppLoadError, load_app
from pytest_fastapi_rules.production.app_logging import logging_document
from pytest_fastapi_rules.production.launcher import restore_parent_sys_path
from pytest_fastapi_rules.production.protocol import (
    AWAIT_RUN_FLAG,
    CHILD_MODULE,
    DB_URL_ENV,
    DOCS_KINDS,
    PROTOCOL,
)
from pytest_fastapi_rules.runtime import AppRuntime, AppStartupError


def looks_like_docs(kind: str, content_type: str, body: bytes) -> bool:
    """Whether an answer is the documentation itself, not something else served at its path
    (a single-page app's fallback page, a login redirect's target)."""
    text = body[:200_000].decode("utf-8", "replace")
    if kind == "openapi":
        try:
            document = json.loads(text)
        except ValueError:
            return False
        return isinstance(document, dict) and bool({"openapi", "swagger"} & set(document))
    marker = "swagger-ui" if kind == "docs" else "redoc"
    return "html" in content_type.lower() and marker in text.lower()


def _rejected_env(exc: BaseException, env: dict[str, str]) -> list[str]:
    """Production variables that a pydantic ValidationError in ``exc``'s chain complains about."""
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


async def _probe_docs(
    app: Any, paths: dict[str, str]
) -> tuple[dict[str, int], dict[str, str], dict[str, bool]]:
    """Status of GET on each documentation path (redirects followed), whether the answer was the
    documentation, and the requests that raised; in-process (base URL http://localhost)."""
    import httpx  # deferred: only a child whose app started asks for the documentation

    statuses: dict[str, int] = {}
    errors: dict[str, str] = {}
    served: dict[str, bool] = {}
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(
        transport=transport, base_url="http://localhost", follow_redirects=True
    ) as client:
        for path, kind in paths.items():
            try:
                response = await client.get(path)
            except Exception as exc:  # noqa: BLE001 - the app's failure is a fact to report
                errors[path] = f"{type(exc).__name__}: {exc}"
            else:
                statuses[path] = response.status_code
                served[path] = response.is_success and looks_like_docs(
                    kind, response.headers.get("content-type", ""), response.content
                )
    return statuses, errors, served


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
    docs_paths: dict[str, str] | None = None,
    logging: bool = False,
) -> dict[str, Any]:
    """Import and start the app, and describe it as the JSON document the parent reads.

    ``docs_paths`` (``path -> kind``) are the documentation paths the app declares when it is not
    in production mode; the rulebook's ``/docs``, ``/redoc`` and ``/openapi.json`` are always asked.
    ``logging``: once the app has started, FR802's part (``"logging"``), before the documentation
    requests, as the app is right after startup.
    """
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
            found = runtime_facts(
                facts, engine_paths, factory_paths, os.environ.get(DB_URL_ENV) or None, "the parent's setting"
            )
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
            return {**base, **_logging_part(logging), "ok": False, "stage": "discovery", "error": str(exc)}
        base.update(_logging_part(logging))
        paths = {**DOCS_KINDS, **(docs_paths or {})}
        try:
            statuses, errors, served = runtime.run(
                _probe_docs(runtime.asgi_app, paths), timeout=startup_timeout + 30
            )
        except Exception as exc:  # noqa: BLE001 - a hung or broken app is a fact, not a crash
            statuses, errors, served = {}, dict.fromkeys(paths, f"{type(exc).__name__}: {exc}"), {}
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
            "docs_served": served,
        }
    finally:
        shutdown_error = runtime.close()
        if shutdown_error:
            sys.stderr.write(f"The app's lifespan failed at shutdown:\n{shutdown_error}\n")


def _logging_part(wanted: bool) -> dict[str, Any]:
    return {"logging": logging_document()} if wanted else {}


def _await_run() -> list[str]:
    """A spare child's run (``launcher.start_spare``): its imports are done; read its arguments,
    environment and working directory from stdin and take them as its own, as a child started now
    would have them. Exits when stdin ends first: the parent did not need it."""
    line = sys.stdin.buffer.readline()
    if not line.strip():
        os._exit(0)
    request = json.loads(line)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    return [str(arg) for arg in request["args"]]


def main(argv: list[str] | None = None) -> int:
    """Child entry point: print one JSON document on the real stdout, the app's output on stderr."""
    if argv is None:
        argv = sys.argv[1:]
    if argv == [AWAIT_RUN_FLAG]:
        argv = _await_run()
    parser = argparse.ArgumentParser(prog=f"python -m {CHILD_MODULE}")
    parser.add_argument("--app", required=True)
    parser.add_argument("--app-dir", required=True)
    parser.add_argument("--startup-timeout", type=float, default=30.0)
    parser.add_argument("--engine", action="append", default=[])
    parser.add_argument("--session-factory", action="append", default=[])
    parser.add_argument("--docs", action="append", default=[], help="KIND=PATH of documentation to probe")
    parser.add_argument(
        "--env",
        action="append",
        default=[],
        help="NAME of a production variable (its value is read from the environment)",
    )
    parser.add_argument("--logging", action="store_true", help="also gather FR802's logging facts")
    args = parser.parse_args(argv)
    restore_parent_sys_path()

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
            {path: kind for kind, _, path in (item.partition("=") for item in args.docs) if path},
            logging=args.logging,
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
