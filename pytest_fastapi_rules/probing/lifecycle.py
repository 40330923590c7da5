"""Injected failures and their observation.

- FR306 (session lifecycle): the dependency that sits right above the session dependency in a
  route's tree (``get_post_repository(session)``) is overridden, with the same signature so FastAPI
  hands it the request's own session, by one that writes a marker row through that session and
  then either calls the original (success) or raises (failure). Without such a dependency (the
  endpoints take the session themselves), the session dependency itself is wrapped: the app's own
  generator runs, the marker is written through the session it yields, and the failure is thrown
  into the generator at its ``yield``. Afterwards the marker must be in the database after success
  (committed) and absent after failure (rolled back), and no session may still hold a transaction
  or a connection (closed). Sessions are tracked with SQLAlchemy's ``after_begin`` session event.
  The session dependency is chosen by its return annotation first (``-> AsyncIterator[async_
  sessionmaker]`` is not one, whatever its name); the probe user's override is never replaced; and
  when the write could not be made, or the successful request did not answer 2xx, FR306 is skipped
  with the reason, never failed.
- FR105/FR803 (generic error handler): a dependency of a GET route is overridden by one that
  raises a ``RuntimeError`` with a unique text; the answer must be a JSON 500 without that text,
  tracebacks or file paths, and the handler must log it with the request's path and method (log
  records are captured from the stdlib root logger and from structlog's processor chain).
- FR511 (connection loss, PostgreSQL only): every connection of the isolated database is
  terminated with ``pg_terminate_backend`` between two identical requests (one that answered 2xx and
  ran SQL earlier, sent again with the probe user's override in place); the warm-up must answer 2xx
  with SQL again, or FR511 is skipped with the reason; the second must succeed.
"""

from __future__ import annotations

import contextlib
import inspect
import logging
import weakref
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules.facts import type_hints, unwrap_callable
from pytest_fastapi_rules.probing import auth as auth_mod
from pytest_fastapi_rules.probing.requests import ProbeRequest
from pytest_fastapi_rules.probing.results import LogRecordSeen, SessionCheck
from pytest_fastapi_rules.sqla import is_session_class

if TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant

    from pytest_fastapi_rules.facts import RouteFacts
    from pytest_fastapi_rules.probing.runner import ProbeRun


class InjectedFailure(RuntimeError):
    """The exception the probes raise inside a request on purpose."""


# -- FR306 ------------------------------------------------------------------------------------------


def _session_parent(route: RouteFacts, avoid: set[int] | None = None) -> tuple[Dependant, Dependant] | None:
    """``(parent, session dependant)``: a dependency that takes the session directly.

    ``avoid`` holds calls the probes already override (the probe user replacing
    ``get_current_user``): injecting there would replace the probe user by the real, token-checking
    dependency, and the request would answer 401 before anything was written.
    """
    sessions = {id(d.call) for d in auth_mod.session_dependants(route)}
    if not sessions:
        return None
    for dependant in route.iter_dependants():
        if dependant.call is None or dependant is route.dependant or id(dependant.call) in (avoid or set()):
            continue
        for sub in dependant.dependencies:
            if (
                id(sub.call) in sessions
                and not inspect.isasyncgenfunction(dependant.call)
                and not inspect.isgeneratorfunction(dependant.call)
            ):
                return dependant, sub
    return None


@contextlib.contextmanager
def _tracked_sessions() -> Iterator[list[weakref.ref[Any]]]:
    from sqlalchemy import event
    from sqlalchemy.orm import Session

    sessions: list[weakref.ref[Any]] = []

    def began(session: Any, transaction: Any, connection: Any) -> None:
        if not any(ref() is session for ref in sessions):
            sessions.append(weakref.ref(session))

    event.listen(Session, "after_begin", began)
    try:
        yield sessions
    finally:
        event.remove(Session, "after_begin", began)


async def _close_leftovers(sessions: list[weakref.ref[Any]]) -> int:
    """Roll back and close sessions the app left open (returns how many); the probes go on."""
    from sqlalchemy.util import greenlet_spawn

    left = 0
    for ref in sessions:
        session = ref()
        if session is None or not session.in_transaction():
            continue
        left += 1
        with contextlib.suppress(Exception):
            await greenlet_spawn(session.close)
    return left


#: How many routes FR306 tries before it gives up finding one whose request reaches the session.
SESSION_ROUTE_TRIES = 5


def _session_routes(run: ProbeRun) -> list[tuple[RouteFacts, Dependant | None, Dependant]]:
    """The GET routes to inject into, in the order to try: ``(route, parent or None, session
    dependant)``.

    Routes with a parent that takes the session (``get_post_repository(session)``) come first;
    then routes whose session dependency itself can be wrapped (endpoints that take the session
    themselves, as most apps do). Routes whose valid request did not answer 2xx are of no use. The
    structure cannot promise that a request reaches the session (an override of the probe user,
    a service that answers from a cache): the caller tries them in turn.
    """
    avoid = {id(override.call) for override in run.auth.overrides} if run.auth is not None else set()
    parents: list[tuple[RouteFacts, Dependant | None, Dependant]] = []
    wrapped: list[tuple[RouteFacts, Dependant | None, Dependant]] = []
    for route in run.facts.routes:
        if route.method != "GET" or not [e for e in run.large_answers(route) if e.ok]:
            continue
        found = _session_parent(route, avoid)
        if found is not None:
            parents.append((route, found[0], found[1]))
            continue
        generators = [
            d
            for d in auth_mod.session_dependants(route)
            if inspect.isasyncgenfunction(unwrap_callable(d.call))
            or inspect.isgeneratorfunction(unwrap_callable(d.call))
        ]
        if generators:
            wrapped.append((route, None, generators[0]))
    return (parents + wrapped)[:SESSION_ROUTE_TRIES]


def check_session_lifecycle(run: ProbeRun) -> None:
    """FR306: commit on success, roll back on failure, close always (see the module docstring)."""
    results = run.results
    if run.seeder is None or not run.seeder.usable_tables or run.builder is None or run.seed is None:
        return
    candidates = _session_routes(run)
    if not candidates:
        return
    usable = run.seeder.usable_tables
    table = next((t for t in usable if not t.foreign_key_constraints), usable[0])
    generator = run.seeder.generator
    run.seeder.generator = generator.salted("s306")
    try:
        rows = [run.seeder.row(table, 7000 + i, run.seed.rows) for i in range(2)]
    finally:
        run.seeder.generator = generator
    first_route, _, first_session = candidates[0]
    check = SessionCheck(route=first_route.target, dependency=_name(first_session.call))
    results.session_checks.append(check)
    if any(row is None for row in rows):
        check.skipped = f"no marker row could be generated for table {table.name!r}"
        return
    markers: list[dict[str, Any]] = [row for row in rows if row is not None]
    for row in markers:
        if run.run(_row_present(run, table, row)) is not False:
            check.skipped = (
                f"no marker row of table {table.name!r} can be told apart from the seeded rows, so a "
                "committed write could not be recognised"
            )
            return
    unusable: list[str] = []
    for route, parent, session_dependant in candidates:
        original: Any = parent.call if parent is not None else session_dependant.call
        check.route, check.dependency = route.target, _name(session_dependant.call)
        why_not = _inject_and_observe(run, check, route, original, parent is not None, table, markers)
        if why_not is None:
            return
        unusable.append(f"{route.target} ({why_not})")
    check.skipped = (
        f"no route's request let the plugin write through its session; tried: {'; '.join(unusable)}"
    )


def _inject_and_observe(
    run: ProbeRun,
    check: SessionCheck,
    route: RouteFacts,
    original: Any,
    into_parent: bool,
    table: Any,
    markers: list[dict[str, Any]],
) -> str | None:
    """Send the route's request twice with the marker write injected into ``original``: once
    succeeding, once failing after the write. None when the verdict (or a reason to skip, in
    ``check.skipped``) is reached; otherwise why this route could not be used, so that another
    one is tried (nothing was written: the database is as before)."""
    assert run.builder is not None
    name = f"`{_name(original)}`"
    try:
        signature = _resolved_signature(original)
    except (TypeError, ValueError):
        return f"the signature of {name} cannot be read to inject a write into it"
    wrote: list[bool] = []
    if into_parent:
        injected = _parent_injection(original, signature, table, wrote)
    else:
        injected = _session_injection(original, signature, table, wrote)
    request = run.builder.happy(route)
    if request is None:
        return "no request could be built"
    for row, fail in ((markers[0], False), (markers[1], True)):
        before = _outstanding(run)
        wrote.clear()
        with _tracked_sessions() as sessions, run.overrides.temporarily(original, injected(row, fail)):
            phase = "session-failure" if fail else "session-success"
            (exchange,) = run.send([(request, phase, route.target)])
            left_open = run.run(_close_leftovers(sessions))
        leaked = max(_outstanding(run) - before, 0) + left_open
        # The write must have happened, in a request that got as far as the injection; otherwise
        # there is nothing to judge (never "not committed" for a write that was never made).
        if not wrote:
            reason = (
                f"no SQLAlchemy session reached {name}"
                if exchange.ok
                else f"{exchange.outcome} before the write injected into {name} was made"
            )
            if not fail:
                return reason
            check.skipped = f"{route.target}: {reason}, on the request meant to fail after the write"
            return None
        if not fail and not exchange.ok:
            check.skipped = (
                f"{route.target} {exchange.outcome} after the write injected into {name}, so there "
                "was no successful request whose commit could be checked"
            )
            return None
        present = run.run(_row_present(run, table, row))
        if fail:
            check.rolled_back_on_error = not present
            check.leaked_on_error = leaked
        else:
            check.committed_on_success = present
            check.leaked_on_success = leaked
    check.detail = f"a marker row in table {table.name!r}, written through the session of {route.target}"
    return None


def _resolved_signature(call: Any) -> inspect.Signature:
    """``call``'s signature with string annotations resolved in the app's module.

    The replacement carries this signature so that FastAPI hands it the same sub-dependencies; FastAPI
    would resolve string annotations (``from __future__ import annotations``) in the replacement's
    module, where the app's names do not exist.
    """
    signature = inspect.signature(call)
    hints = type_hints(unwrap_callable(call))
    parameters = [
        parameter.replace(annotation=hints.get(name, parameter.annotation))
        for name, parameter in signature.parameters.items()
    ]
    return signature.replace(parameters=parameters)


async def _write(session: Any, table: Any, row: dict[str, Any]) -> None:
    from sqlalchemy import insert

    outcome = session.execute(insert(table).values(**row))
    if inspect.isawaitable(outcome):
        await outcome


def _failure() -> InjectedFailure:
    return InjectedFailure("pytest-fastapi-rules injected a failure after a write (FR306)")


def _parent_injection(
    original: Any, signature: inspect.Signature, table: Any, wrote: list[bool]
) -> Callable[[dict[str, Any], bool], Any]:
    """A replacement of the parent dependency: write through the session it receives, then call it."""

    def injected(row: dict[str, Any], fail: bool) -> Any:
        async def replacement(*args: Any, **kwargs: Any) -> Any:
            session = next((v for v in kwargs.values() if is_session_class(type(v))), None)
            if session is not None:
                await _write(session, table, row)
                wrote.append(True)
            if fail:
                raise _failure()
            value = original(*args, **kwargs)
            if inspect.isawaitable(value):
                value = await value
            return value

        replacement.__signature__ = signature  # type: ignore[attr-defined]
        return replacement

    return injected


def _session_injection(
    original: Any, signature: inspect.Signature, table: Any, wrote: list[bool]
) -> Callable[[dict[str, Any], bool], Any]:
    """A replacement of the session dependency itself, driving the app's own generator.

    It takes the session the app's generator yields, writes the marker through it, and then either
    hands the session on to the request and lets the generator finish (success: its commit, if any,
    runs), or throws the failure into the generator at its ``yield`` (failure: its ``except``
    branch, if any, runs), exactly as FastAPI would for a request that failed there.
    """
    function = unwrap_callable(original)

    def injected(row: dict[str, Any], fail: bool) -> Any:
        if inspect.isasyncgenfunction(function):

            async def async_replacement(*args: Any, **kwargs: Any) -> Any:
                generator = original(*args, **kwargs)
                session = await generator.__anext__()
                if is_session_class(type(session)):
                    await _write(session, table, row)
                    wrote.append(True)
                if fail:
                    with contextlib.suppress(StopAsyncIteration):
                        await generator.athrow(_failure())
                    raise _failure()  # the app's generator swallowed the failure
                try:
                    yield session
                except BaseException as exc:
                    with contextlib.suppress(StopAsyncIteration):
                        await generator.athrow(exc)
                    raise
                with contextlib.suppress(StopAsyncIteration):
                    await generator.__anext__()

            async_replacement.__signature__ = signature  # type: ignore[attr-defined]
            return async_replacement

        def sync_replacement(*args: Any, **kwargs: Any) -> Any:
            generator = original(*args, **kwargs)
            session = next(generator)
            if is_session_class(type(session)) and not hasattr(session, "sync_session"):
                session.execute(_insert(table, row))
                wrote.append(True)
            if fail:
                with contextlib.suppress(StopIteration):
                    generator.throw(_failure())
                raise _failure()
            try:
                yield session
            except BaseException as exc:
                with contextlib.suppress(StopIteration):
                    generator.throw(exc)
                raise
            with contextlib.suppress(StopIteration):
                next(generator)

        sync_replacement.__signature__ = signature  # type: ignore[attr-defined]
        return sync_replacement

    return injected


def _insert(table: Any, row: dict[str, Any]) -> Any:
    from sqlalchemy import insert

    return insert(table).values(**row)


def _outstanding(run: ProbeRun) -> int:
    return sum(report.checked_out for report in run._pool_counts.values())


def _name(call: Any) -> str:
    return str(getattr(call, "__qualname__", None) or getattr(call, "__name__", None) or repr(call))


def _compares_as(column: Any, value: Any) -> bool:
    """Whether ``column = value`` is a plain comparison: the column's type holds values of this
    Python type (not a full-text vector or an app's own type written from text)."""
    try:
        python_type = column.type.python_type
    except Exception:  # noqa: BLE001 - NotImplementedError: a type without one (TSVECTOR)
        return False
    return python_type is not object and isinstance(value, python_type)


async def _row_present(run: ProbeRun, table: Any, row: dict[str, Any]) -> bool | None:
    """Whether the marker row is in the table; None when no value of it can identify it."""
    import datetime
    import uuid

    from sqlalchemy import and_, func, select

    assert run.plugin_engine is not None
    conditions = [
        table.c[name] == value
        for name, value in row.items()
        if name in table.c
        and value is not None
        and not isinstance(value, bool)
        and isinstance(value, str | int | uuid.UUID | datetime.date)
        and value != ""
        and _compares_as(table.c[name], value)
    ]
    if not conditions:
        return None
    async with run.plugin_engine.connect() as connection:
        count = await connection.scalar(select(func.count()).select_from(table).where(and_(*conditions)))
    return bool(count)


# -- FR105 / FR803 ----------------------------------------------------------------------------------


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.DEBUG)
        self.seen: list[LogRecordSeen] = []

    def emit(self, record: logging.LogRecord) -> None:
        fields = record.msg if isinstance(record.msg, dict) else {}
        try:
            text = record.getMessage() if not fields else repr(fields)
        except Exception:  # noqa: BLE001 - a broken format string is still a record
            text = str(record.msg)
        fields = {**fields, **{k: v for k, v in vars(record).items() if k in ("path", "method", "url")}}
        self.seen.append(
            LogRecordSeen(
                level=record.levelname.lower(),
                text=text,
                fields={k: str(v) for k, v in fields.items()},
                has_exception=bool(record.exc_info) or bool(fields.get("exc_info")),
            )
        )


@contextlib.contextmanager
def capture_logs() -> Iterator[list[LogRecordSeen]]:
    """Log events emitted meanwhile: stdlib records reaching the root logger, and structlog events."""
    handler = _Capture()
    root = logging.getLogger()
    root.addHandler(handler)
    seen = handler.seen
    processors: Any = None
    structlog_capture = None
    try:
        import structlog

        processors = structlog.get_config().get("processors")

        def structlog_capture(logger: Any, method: str, event_dict: Any) -> Any:
            fields = dict(event_dict)
            seen.append(
                LogRecordSeen(
                    level=str(method).lower(),
                    text=repr(fields),
                    fields={k: str(v) for k, v in fields.items()},
                    has_exception=bool(fields.get("exc_info")) or "exception" in fields,
                )
            )
            return event_dict

        if isinstance(processors, list):
            processors.insert(0, structlog_capture)
    except ImportError:
        processors = None
    try:
        yield seen
    finally:
        root.removeHandler(handler)
        if isinstance(processors, list) and structlog_capture in processors:
            processors.remove(structlog_capture)


def _raising_target(run: ProbeRun) -> tuple[RouteFacts, Any] | None:
    """A GET route that answered, and a dependency of it (not a security scheme) to make raise."""
    from fastapi.security.base import SecurityBase

    for route in run.facts.routes:
        if route.method != "GET" or not [e for e in run.large_answers(route) if e.ok]:
            continue
        for dependant in route.iter_dependants():
            call = dependant.call
            if call is None or dependant is route.dependant or isinstance(call, SecurityBase):
                continue
            return route, call
    return None


def send_synthetic_error(run: ProbeRun) -> None:
    """FR105/FR803: make one request fail with an unexpected exception, watch answer and logs."""
    results = run.results
    if run.builder is None:
        return
    found = _raising_target(run)
    if found is None:
        results.synthetic_skipped = "no GET route with a dependency to inject an unexpected exception into"
        return
    route, call = found
    # Unique enough to be recognised in an answer or a log line, and the same on every run.
    marker = "fastapi-rules-synthetic-5f1c0de7 in /srv/app/internal/secret_module.py"
    results.synthetic_marker = marker

    async def explode() -> None:
        results.synthetic_raised = True
        raise RuntimeError(marker)

    request = run.builder.happy(route)
    if request is None:
        results.synthetic_skipped = f"no request could be built for {route.target}"
        return
    with capture_logs() as seen, run.overrides.temporarily(call, explode):
        (exchange,) = run.send([(request, "synthetic-error", route.target)])
    results.synthetic = exchange
    results.synthetic_logs = list(seen)


# -- FR511 ------------------------------------------------------------------------------------------


def connection_loss_applies(run: ProbeRun) -> bool:
    """Whether FR511 can run: it terminates connections with PostgreSQL's ``pg_terminate_backend``."""
    return run.database is not None and run.database.backend == "postgresql"


def check_connection_loss(run: ProbeRun) -> None:
    """FR511: terminate the isolated database's connections between two identical requests.

    The request is one that answered 2xx and ran SQL on the isolated database earlier in the run,
    sent again exactly (same path, body, headers, with the probe user's override in place). The
    warm-up must itself answer 2xx and run SQL, or the probe proves nothing (a 401 before and a
    401 after is not survival): then FR511 is skipped with the reason.
    """
    results = run.results
    database = run.database
    if database is None or not connection_loss_applies(run):
        why = results.database_fallback or ("pass --fastapi-rules-db-url=postgresql+asyncpg://... to run it")
        results.connection_loss_skipped = (
            "it runs only against PostgreSQL; the probes use "
            + (database.stable_description if database else "no database")
            + f" ({why})"
        )
        return
    if run.builder is None:
        return
    candidates: list[tuple[RouteFacts, ProbeRequest]] = []
    for route in run.facts.routes:
        if len(candidates) == 3:
            break
        if route.method != "GET":
            continue
        happy = [e for e in run.large_answers(route) if e.ok and e.count > 0]
        if happy:
            candidates.append((route, happy[0].request))
    if not candidates:
        results.connection_loss_skipped = (
            "no GET route answered 2xx and ran SQL on the isolated database during the probes, so "
            "there is no request whose database connection could be taken away"
        )
        return
    reasons = []
    for route, request in candidates:
        if run.auth is not None:
            for override in run.auth.overrides:
                run.overrides.set(override.call, override.replacement)
        (warm,) = run.send([(request, "connection-warm", route.target)])
        if not (warm.ok and warm.count > 0):
            reasons.append(
                f"{warm.request.shown} {warm.outcome}"
                + (" without running SQL" if warm.ok and warm.count == 0 else "")
            )
            continue
        run.run(_terminate(run))
        (after,) = run.send([(request, "connection-loss", route.target)])
        results.connection_loss = (warm, after)
        return
    results.connection_loss_skipped = (
        "the warm-up request did not answer 2xx with SQL on the isolated database ("
        + "; ".join(reasons)
        + "), so a lost connection could not be observed"
    )


async def _terminate(run: ProbeRun) -> None:
    from sqlalchemy import text

    assert run.plugin_engine is not None and run.database is not None
    import asyncio

    others = "WHERE application_name = :name AND pid <> pg_backend_pid()"
    name = {"name": run.database.application_name}
    async with run.plugin_engine.connect() as connection:
        await connection.execute(
            text(f"SELECT pg_terminate_backend(pid) FROM pg_stat_activity {others}"), name
        )
        # Terminating is asynchronous: wait (a few seconds at most) until the backends are gone, so
        # the next request meets closed connections, not ones in the middle of closing.
        for _ in range(50):
            left = await connection.scalar(text(f"SELECT count(*) FROM pg_stat_activity {others}"), name)
            if not left:
                break
            await asyncio.sleep(0.1)


__all__ = ["InjectedFailure", "ProbeRequest", "capture_logs", "check_connection_loss"]
