"""Fixtures for the user's own tests: the app the rules judge, clients on the app running on a
throwaway database (``client.py``), and SQL statement counts.

Registered only when the run names an app (``--fastapi-app`` or the ini key), like the rest of the
plugin, so installing it never changes another project's run. The counting fixtures follow
pytest-django's ``django_assert_num_queries``: a context manager that counts the statements inside
the block and fails listing them when the count is off.

Statements are counted on every SQLAlchemy engine of the process (one listener on the ``Engine``
class, attached only inside the block): an ``AsyncEngine`` runs its statements on the sync
``Engine`` behind it, and an engine the test itself created or the app built in its lifespan is
counted as well as the ones the plugin discovered. SQLAlchemy is imported only when a counting
fixture is used.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from pytest_fastapi_rules.session import SESSION_KEY

if TYPE_CHECKING:
    from pytest_fastapi_rules.client import AsyncClient, IsolatedApp, SyncClient

#: How many statements a failure lists before it says how many more there were.
_LISTED = 50

#: What the counting fixtures hand out: ``counter(n)`` is a context manager.
QueryCounter = Callable[[int], contextlib.AbstractContextManager["CapturedStatements"]]


@dataclass
class CapturedStatements:
    """The SQL statements run inside one counting block, in order (``len()`` is their count)."""

    statements: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.statements)

    def __iter__(self) -> Iterator[str]:
        return iter(self.statements)

    def listing(self) -> str:
        shown = [f"  {number}. {sql}" for number, sql in enumerate(self.statements[:_LISTED], start=1)]
        if len(self.statements) > _LISTED:
            shown.append(f"  ... and {len(self.statements) - _LISTED} more")
        return "\n".join(shown) if shown else "  (none)"


@contextlib.contextmanager
def _counting() -> Iterator[CapturedStatements]:
    from sqlalchemy import event
    from sqlalchemy.engine import Engine

    captured = CapturedStatements()

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        captured.statements.append(" ".join(str(statement).split()))

    event.listen(Engine, "before_cursor_execute", record)
    try:
        yield captured
    finally:
        event.remove(Engine, "before_cursor_execute", record)


def _assert_count(expected: int, *, exact: bool) -> contextlib.AbstractContextManager[CapturedStatements]:
    if not isinstance(expected, int) or isinstance(expected, bool) or expected < 0:
        raise TypeError(f"the number of queries must be a whole number of 0 or more, not {expected!r}")

    @contextlib.contextmanager
    def block() -> Iterator[CapturedStatements]:
        with _counting() as captured:
            yield captured
        count = len(captured)
        if (count != expected) if exact else (count > expected):
            wanted = f"{expected}" if exact else f"at most {expected}"
            pytest.fail(
                f"expected {wanted} SQL statement{'s' if expected != 1 else ''}, the block ran "
                f"{count}:\n{captured.listing()}",
                pytrace=False,
            )

    return block()


@pytest.fixture
def _fastapi_isolated_app(request: pytest.FixtureRequest) -> Iterator[IsolatedApp]:
    """The app started on a fresh throwaway database for this test, stopped (and the database
    dropped) after it."""
    state = request.config.stash.get(SESSION_KEY, None)
    if state is None:  # pragma: no cover - the fixtures are registered only with an app
        pytest.fail("fastapi_client needs an app: pass --fastapi-app=module:app.", pytrace=False)
    from pytest_fastapi_rules.client import IsolatedApp  # deferred: the probes' database machinery

    try:
        isolated = IsolatedApp(state)
        isolated.start()
    except Exception as exc:  # noqa: BLE001 - the app's or the database's failure, said plainly
        message = getattr(exc, "message", None) or str(exc) or type(exc).__name__
        pytest.fail(
            f"fastapi_client: the app could not be started on a throwaway database: {message}",
            pytrace=False,
        )
    try:
        yield isolated
    finally:
        isolated.stop()


@pytest.fixture
def fastapi_client(_fastapi_isolated_app: IsolatedApp) -> SyncClient:
    """An ``httpx.Client``-like client on the app, running its lifespan, with every engine of the
    app pointed at a throwaway database that starts empty (the app's tables created) for each
    test and is dropped after it. Your configured database is never touched."""
    from pytest_fastapi_rules.client import SyncClient  # deferred: the probes' database machinery

    return SyncClient(_fastapi_isolated_app)


@pytest.fixture
def fastapi_async_client(_fastapi_isolated_app: IsolatedApp) -> AsyncClient:
    """The ``httpx.AsyncClient``-like twin of ``fastapi_client``, for async tests (pytest-asyncio,
    anyio): ``await fastapi_async_client.get(...)``."""
    from pytest_fastapi_rules.client import AsyncClient  # deferred: the probes' database machinery

    return AsyncClient(_fastapi_isolated_app)


@pytest.fixture
def fastapi_app(request: pytest.FixtureRequest) -> Any:
    """The app named by ``--fastapi-app``: the same object the rules judge (not started; use your
    own client, or ``asgi_lifespan.LifespanManager``, to run its lifespan)."""
    state = request.config.stash.get(SESSION_KEY, None)
    if state is None:  # pragma: no cover - the fixtures are registered only with an app
        pytest.fail("fastapi_app needs an app: pass --fastapi-app=module:app.", pytrace=False)
    from pytest_fastapi_rules.loading import AppLoadError  # deferred: Starlette and the app's imports

    try:
        return state.facts().app
    except AppLoadError as exc:
        pytest.fail(f"fastapi_app: the app could not be loaded: {exc}", pytrace=False)


@pytest.fixture
def fastapi_assert_num_queries() -> QueryCounter:
    """``with fastapi_assert_num_queries(2): ...`` fails unless the block runs exactly 2 SQL
    statements, listing the ones it ran; the statements are also what the ``as`` target holds."""
    return lambda expected: _assert_count(expected, exact=True)


@pytest.fixture
def fastapi_assert_max_num_queries() -> QueryCounter:
    """``with fastapi_assert_max_num_queries(3): ...`` fails when the block runs more than 3 SQL
    statements, listing them (an N+1 guard for one endpoint)."""
    return lambda expected: _assert_count(expected, exact=False)
