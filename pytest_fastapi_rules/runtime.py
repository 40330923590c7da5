"""Run the app's lifespan once per session, on an event loop of the plugin's own.

The loop lives in a dedicated thread, so the plugin never touches the event loop (or the event loop
policy) of the main thread that the user's own async tests and their pytest-asyncio or anyio plugins
use. Everything the plugin does with the running app (discovering engines created at startup, and the
probes) runs as coroutines submitted to this loop, so an ``AsyncEngine`` is only ever used from one
loop.
"""

from __future__ import annotations

import asyncio
import threading
import traceback
from collections.abc import Callable, Coroutine, MutableMapping
from concurrent.futures import Future
from typing import Any, TypeVar

from asgi_lifespan import LifespanManager
from starlette.types import ASGIApp

from pytest_fastapi_rules.tracebacks import AppError, describe, format_app_exception, raise_again

T = TypeVar("T")


class AppStartupError(AppError):
    """The app's lifespan failed (or timed out) at startup; the message is for the user."""


class _LoopThread:
    """An asyncio loop running forever in a daemon thread, to which coroutines are submitted."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._run, name="pytest-fastapi-rules-loop", daemon=True)
        self._thread.start()

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.run_forever()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def close(self) -> None:
        if self.loop.is_closed():
            return

        async def _drain() -> None:
            await self.loop.shutdown_asyncgens()

        try:
            self.submit(_drain()).result(timeout=10)
        finally:
            self.loop.call_soon_threadsafe(self.loop.stop)
            self._thread.join(timeout=10)
            if not self._thread.is_alive():
                self.loop.close()


class AppRuntime:
    """Starts the app's lifespan on demand and stops it when the plugin is done with it."""

    def __init__(self, app: ASGIApp, timeout: float) -> None:
        self._app = app
        self._timeout = timeout
        self._loop_thread: _LoopThread | None = None
        self._stop_event: asyncio.Event | None = None
        self._holder: Future[None] | None = None
        self._manager: LifespanManager | None = None
        self._startup_error: AppStartupError | None = None
        self._stop_callbacks: list[Callable[[], None]] = []

    @property
    def started(self) -> bool:
        return self._manager is not None

    @property
    def asgi_app(self) -> ASGIApp:
        """The app wrapped so that requests see the lifespan state (``request.state``)."""
        assert self._manager is not None, "the app is not running"
        return self._manager.app

    @property
    def lifespan_state(self) -> MutableMapping[str, Any]:
        assert self._manager is not None, "the app is not running"
        return self._manager._state

    def run(self, coro: Coroutine[Any, Any, T], timeout: float | None = None) -> T:
        """Run ``coro`` on the plugin's loop (where the app runs) and return its result."""
        loop_thread = self._ensure_loop()
        return loop_thread.submit(coro).result(timeout=timeout)

    def _ensure_loop(self) -> _LoopThread:
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread

    def start(self) -> None:
        """Run the lifespan's startup; raises :class:`AppStartupError` with the app's traceback."""
        if self._manager is not None:
            return
        if self._startup_error is not None:
            raise_again(self._startup_error)
        loop_thread = self._ensure_loop()
        started: Future[LifespanManager] = Future()

        async def hold() -> None:
            self._stop_event = asyncio.Event()
            manager = LifespanManager(
                self._app, startup_timeout=self._timeout, shutdown_timeout=self._timeout
            )
            try:
                async with manager:
                    started.set_result(manager)
                    await self._stop_event.wait()
            except BaseException as exc:
                if not started.done():
                    started.set_exception(exc)
                    return
                raise

        self._holder = loop_thread.submit(hold())
        try:
            self._manager = started.result(timeout=self._timeout + 5)
        except TimeoutError as exc:
            self._startup_error = AppStartupError(
                f"The app's lifespan did not finish starting within {self._timeout:g} s. "
                "Raise --fastapi-rules-startup-timeout if it is slow, or check that startup does "
                "not wait on a service that is not running."
            )
            raise self._startup_error from exc
        except BaseException as exc:
            if isinstance(exc, KeyboardInterrupt):
                raise
            self._startup_error = _startup_error_from(exc, self._timeout)
            raise self._startup_error from None

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, after the next shutdown (undoing what was set up for this start)."""
        self._stop_callbacks.append(callback)

    def stop(self) -> str | None:
        """Run the lifespan's shutdown. Returns the app's shutdown error text, if it failed."""
        error: str | None = None
        if self._manager is not None and self._stop_event is not None and self._loop_thread:
            self._loop_thread.loop.call_soon_threadsafe(self._stop_event.set)
            assert self._holder is not None
            try:
                self._holder.result(timeout=self._timeout + 5)
            except BaseException as exc:
                if isinstance(exc, KeyboardInterrupt):
                    raise
                error = "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))
        self._manager = None
        self._stop_event = None
        self._holder = None
        callbacks, self._stop_callbacks = self._stop_callbacks, []
        for callback in callbacks:
            callback()
        return error

    def close(self) -> str | None:
        """Stop the app and the loop thread; the runtime cannot be used afterwards."""
        error = self.stop()
        if self._loop_thread is not None:
            self._loop_thread.close()
            self._loop_thread = None
        return error


def _startup_error_from(exc: BaseException, timeout: float) -> AppStartupError:
    if isinstance(exc, TimeoutError):
        return AppStartupError(
            f"The app's lifespan did not finish starting within {timeout:g} s. Raise "
            "--fastapi-rules-startup-timeout if it is slow, or check that startup does not wait "
            "on a service that is not running."
        )
    return AppStartupError(
        f"The app's lifespan failed at startup with {describe(exc)}. Checks that need "
        "the running app cannot run until startup works in the test environment (a database or "
        "service that is not reachable, or a missing environment variable, is the usual cause).",
        format_app_exception(exc),
    )
