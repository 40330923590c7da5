"""The app on a throwaway database for one of the user's tests, and clients that talk to it.

The same isolation the rules use (``probing/isolation.py``): every engine the app creates or holds
is pointed at a throwaway database beside the app's PostgreSQL server (or the embedded SQLite), the
app's tables are created there, and the lifespan runs on the plugin's event-loop thread, where the
app's engines and pools live. Each test gets a fresh database, created empty at the start and
dropped at the end, so nothing one test wrote is seen by the next; the app's dependency overrides
are put back as they were.

The requests run on the app's loop too (an async engine's connections belong to the loop that made
them): the sync client waits for them, and the async client awaits them from the test's own loop
(pytest-asyncio, anyio) without blocking it.
"""

from __future__ import annotations

import asyncio
import contextlib
import warnings
from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import httpx

from pytest_fastapi_rules.probing.isolation import IsolatedStart
from pytest_fastapi_rules.probing.metadata import metadatas_of
from pytest_fastapi_rules.probing.seeding import Seeder

if TYPE_CHECKING:
    from pytest_fastapi_rules.session import RulesSession

T = TypeVar("T")

#: How long one request of the user's test may take on the app's loop, in seconds.
REQUEST_TIMEOUT = 300.0

_METHODS = ("get", "options", "head", "post", "put", "patch", "delete")


class IsolatedApp:
    """The app started on its own throwaway database, for one test."""

    def __init__(self, state: RulesSession) -> None:
        self.state = state
        self.facts = state.facts()
        self.runtime = self.facts.runtime
        self._start: IsolatedStart | None = None
        self._overrides: dict[Any, Any] | None = None
        self.client: httpx.AsyncClient | None = None

    def start(self) -> None:
        """Stop whatever the rules left running, start the app isolated, create its tables."""
        options = self.state.options
        if self.runtime.started:
            self.runtime.stop()
        overrides = getattr(self.facts.app, "dependency_overrides", None)
        self._overrides = dict(overrides) if isinstance(overrides, dict) else None
        self._start = IsolatedStart(self.facts, options.db_url, options.sources.get("fastapi_rules_db_url"))
        self._start.start(options.engine_paths, options.session_factory_paths)
        self._create_tables()
        transport = httpx.ASGITransport(app=self.runtime.asgi_app)
        self.client = httpx.AsyncClient(transport=transport, base_url=options.base_url)

    def _create_tables(self) -> None:
        assert self._start is not None
        metadatas = metadatas_of(list(self.facts.mapped_classes))
        if not metadatas:
            return
        database = self._start.pending.get()
        engine = database.create_plugin_engine()
        self._start.monitor.allow(engine.sync_engine)
        seeder = Seeder(metadatas, dialect=engine.sync_engine.dialect)

        async def create() -> None:
            try:
                await seeder.create_schema(engine, database.stable_description)
            finally:
                await engine.dispose()

        self.runtime.run(create(), timeout=REQUEST_TIMEOUT)
        for table, why in sorted(seeder.broken.items()):
            warnings.warn(
                f"fastapi_client: table {table!r} does not exist on the test database: {why}",
                stacklevel=1,
            )

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return self.runtime.run(coro, timeout=REQUEST_TIMEOUT)

    def stop(self) -> None:
        """Close the client, stop the app (its database is dropped) and put the overrides back."""
        if self.client is not None:
            with contextlib.suppress(Exception):
                self.run(self.client.aclose())
            self.client = None
        self.runtime.stop()
        overrides = getattr(self.facts.app, "dependency_overrides", None)
        if self._overrides is not None and isinstance(overrides, dict):
            overrides.clear()
            overrides.update(self._overrides)


class _Client:
    """What both clients share: the isolated app's client and its settings."""

    def __init__(self, isolated: IsolatedApp) -> None:
        self._isolated = isolated
        assert isolated.client is not None
        self._client = isolated.client

    @property
    def base_url(self) -> httpx.URL:
        return self._client.base_url

    @property
    def headers(self) -> httpx.Headers:
        return self._client.headers

    @property
    def cookies(self) -> httpx.Cookies:
        return self._client.cookies


class SyncClient(_Client):
    """An ``httpx.Client``-like client whose requests run on the app's loop."""

    def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return self._isolated.run(self._client.request(method, url, **kwargs))

    def __getattr__(self, name: str) -> Any:
        if name in _METHODS:
            return lambda url, **kwargs: self.request(name.upper(), url, **kwargs)
        raise AttributeError(name)


class AsyncClient(_Client):
    """An ``httpx.AsyncClient``-like client: awaited from the test's loop, run on the app's."""

    async def request(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        return await asyncio.to_thread(self._isolated.run, self._client.request(method, url, **kwargs))

    def __getattr__(self, name: str) -> Any:
        if name in _METHODS:

            async def send(url: str, **kwargs: Any) -> httpx.Response:
                return await self.request(name.upper(), url, **kwargs)

            return send
        raise AttributeError(name)
