"""Run the app's lifespan once per session, on an event loop of the plugin's own.

The loop lives in a dedicated thread, so the plugin never touches the event loop (or the event loop
policy) of the main thread that the user's own async tests and their pytest-asyncio or anyio plugins
use. Everything the plugin does with the running app (discovering engines created at startup, and the
probes) runs as coroutines submitted to this loop, so an ``AsyncEngine`` is only ever used from one
loop.

The app runs on that loop, and the app is wrong by definition, so the loop is guarded:

- ``SystemExit``, ``KeyboardInterrupt`` or any other ``BaseException`` raised by the app's code in a
  task ends ``run_forever()`` (asyncio re-raises the first two out of the loop): the loop thread runs
  the loop again, and :meth:`AppRuntime.run` hands the exception back as :class:`AppRaised`, an
  ordinary ``Exception`` that names it. A real Ctrl-C reaches the main thread, never this one.
- A call that blocks the loop (``time.sleep`` in an ``async def``) stops its heartbeat:
  :meth:`AppRuntime.run` notices within its ``stall_limit`` and raises :class:`LoopStalled`, naming
  where the loop thread is stuck; the stuck thread is abandoned (a daemon) and a new loop takes its
  place, so every later step runs at once instead of waiting for a loop that will never run it.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import sys
import threading
import time
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


class AppRaised(Exception):
    """The app's code raised a ``BaseException`` that is not an ``Exception`` (``SystemExit``,
    ``KeyboardInterrupt``, its own subclass) on the plugin's loop: handed back as an ordinary
    exception, so it is reported as the app's failure and never ends the test run."""

    def __init__(self, original: BaseException) -> None:
        super().__init__(f"the app raised {describe(original)}")
        self.original = original


class LoopStalled(Exception):
    """The app blocked the plugin's event loop for longer than allowed; ``where`` is the loop
    thread's innermost frame at that moment (the blocking call)."""

    def __init__(self, seconds: float, where: str, stack: str) -> None:
        super().__init__(f"the app blocked the event loop for over {seconds:g} s (at {where})")
        self.seconds = seconds
        self.where = where
        self.stack = stack


#: Seconds between two beats of the loop's heartbeat.
_BEAT = 0.1


class _LoopThread:
    """An asyncio loop running forever in a daemon thread, to which coroutines are submitted.

    It survives the app's ``SystemExit``/``KeyboardInterrupt`` (see the module docstring) and beats
    a heartbeat, so a caller can tell a busy coroutine from a blocked loop.
    """

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.last_beat = time.monotonic()
        self._closing = False
        self._thread = threading.Thread(target=self._run, name="pytest-fastapi-rules-loop", daemon=True)
        self._thread.start()

    def _beat(self) -> None:
        self.last_beat = time.monotonic()
        if not self._closing:
            self.loop.call_later(_BEAT, self._beat)

    def _run(self) -> None:
        asyncio.set_event_loop(self.loop)
        self.loop.call_soon(self._beat)
        while True:
            try:
                self.loop.run_forever()
            except BaseException:  # noqa: BLE001 - the app's SystemExit/KeyboardInterrupt in a task
                # The task that raised holds the exception; whoever awaits it gets it. Go on.
                if self._closing or self.loop.is_closed():
                    return
                continue
            if self._closing:
                return

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def stalled_for(self) -> float:
        return time.monotonic() - self.last_beat

    def where(self) -> tuple[str, str]:
        """``(innermost frame, formatted stack)`` of the loop thread now (where it is blocked)."""
        frame = sys._current_frames().get(self._thread.ident or -1)
        if frame is None:
            return "an unknown place", ""
        stack = traceback.extract_stack(frame)
        innermost = next(
            (f for f in reversed(stack) if _is_app_frame(f.filename)),
            stack[-1] if stack else None,
        )
        shown = f"{innermost.filename}:{innermost.lineno} in {innermost.name}" if innermost else "?"
        return shown, "".join(traceback.format_list(stack[-12:]))

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        return asyncio.run_coroutine_threadsafe(coro, self.loop)

    def abandon(self) -> None:
        """Leave a blocked loop to its thread (a daemon: it does not keep the process alive)."""
        self._closing = True

    def close(self) -> None:
        """Cancel what still runs on the loop (the app's own background tasks included), stop it,
        and close it; quietly, and in bounded time, whatever state the app left it in."""
        if self.loop.is_closed() or self._closing:
            return

        async def _drain() -> None:
            current = asyncio.current_task()
            tasks = [task for task in asyncio.all_tasks() if task is not current]
            for task in tasks:
                task.cancel()
            if tasks:
                await asyncio.wait(tasks, timeout=2)
            await self.loop.shutdown_asyncgens()

        if self.alive and self.stalled_for() < 5:
            with contextlib.suppress(BaseException):
                self.submit(_drain()).result(timeout=5)
        self._closing = True
        with contextlib.suppress(RuntimeError):
            self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=5)
        if not self._thread.is_alive():
            self.loop.close()


def _is_app_frame(filename: str) -> bool:
    """A frame of the app's (or a library's) code, not of asyncio or this plugin."""
    return (
        "/asyncio/" not in filename
        and "/pytest_fastapi_rules/" not in filename
        and "threading.py" not in filename
    )


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
        #: Blocked loops given up on, and what ran on them (see :meth:`_replace_loop`).
        self._abandoned: list[tuple[Any, ...]] = []

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

    def run(
        self, coro: Coroutine[Any, Any, T], timeout: float | None = None, stall_limit: float | None = None
    ) -> T:
        """Run ``coro`` on the plugin's loop (where the app runs) and return its result.

        Raises :class:`AppRaised` for the app's ``SystemExit``/``KeyboardInterrupt``/other
        ``BaseException``, ``TimeoutError`` after ``timeout``, and :class:`LoopStalled` when the loop
        stops beating for ``stall_limit`` seconds (default: the startup timeout); the blocked loop
        is then replaced, so the next call runs at once.
        """
        loop_thread = self._ensure_loop()
        future = loop_thread.submit(coro)
        try:
            return _wait(
                future, loop_thread, timeout, stall_limit if stall_limit is not None else self._timeout
            )
        except LoopStalled:
            self._replace_loop(loop_thread)
            raise

    def call_on_loop(self, function: Callable[[], None], wait: float = 1.0) -> None:
        """Run ``function`` on the loop thread, if there is one, and wait for it at most ``wait``
        seconds (a blocked loop must not block the caller); see ``coexistence.coverage_paused``."""
        loop_thread = self._loop_thread
        if loop_thread is None or not loop_thread.alive or loop_thread.loop.is_closed():
            return
        done = threading.Event()

        def call() -> None:
            try:
                function()
            finally:
                done.set()

        loop_thread.loop.call_soon_threadsafe(call)
        done.wait(wait)

    def _ensure_loop(self) -> _LoopThread:
        if self._loop_thread is None:
            self._loop_thread = _LoopThread()
        return self._loop_thread

    def _replace_loop(self, stuck: _LoopThread) -> None:
        """Abandon a blocked loop and everything that ran on it (the lifespan, its engines)."""
        stuck.abandon()
        # Keep what ran there referenced: collected, the lifespan's coroutine would be closed
        # outside any loop and print errors about it.
        self._abandoned.append((stuck, self._holder, self._stop_event, self._manager))
        if self._loop_thread is stuck:
            self._loop_thread = None
        self._manager = None
        self._stop_event = None
        self._holder = None

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
            self._manager = _wait(started, loop_thread, self._timeout + 5, self._timeout)
        except TimeoutError as exc:
            self._startup_error = AppStartupError(
                f"The app's lifespan did not finish starting within {self._timeout:g} s. "
                "Raise --fastapi-rules-startup-timeout if it is slow, or check that startup does "
                "not wait on a service that is not running."
            )
            raise self._startup_error from exc
        except LoopStalled as exc:
            self._replace_loop(loop_thread)
            self._startup_error = AppStartupError(
                f"The app's lifespan blocked the event loop for over {exc.seconds:g} s at startup, at "
                f"{exc.where}: a blocking call in async startup code (time.sleep, a sync client). "
                "Make it async, or run it with asyncio.to_thread.",
                exc.stack,
            )
            raise self._startup_error from None
        except AppRaised as exc:
            self._startup_error = _startup_error_from(exc.original, self._timeout)
            raise self._startup_error from None
        except Exception as exc:  # noqa: BLE001 - the app's startup error, reported by FR102
            self._startup_error = _startup_error_from(exc, self._timeout)
            raise self._startup_error from None

    def on_stop(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once, after the next shutdown (undoing what was set up for this start)."""
        self._stop_callbacks.append(callback)

    def stop(self) -> str | None:
        """Run the lifespan's shutdown. Returns the app's shutdown error text, if it failed."""
        error: str | None = None
        loop_thread = self._loop_thread
        if self._manager is not None and self._stop_event is not None and loop_thread is not None:
            loop_thread.loop.call_soon_threadsafe(self._stop_event.set)
            assert self._holder is not None
            try:
                _wait(self._holder, loop_thread, self._timeout + 5, self._timeout)
            except AppRaised as exc:
                original = exc.original
                error = "".join(traceback.format_exception(type(original), original, original.__traceback__))
            except LoopStalled as exc:
                self._replace_loop(loop_thread)
                error = (
                    f"the lifespan's shutdown blocked the event loop for over {exc.seconds:g} s, "
                    f"at {exc.where}\n"
                )
            except Exception as exc:  # noqa: BLE001 - the app's shutdown error, reported by FR102
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


def _wait(future: Future[T], loop_thread: _LoopThread, timeout: float | None, stall_limit: float) -> T:
    """The result of ``future``, computed on ``loop_thread``; see :meth:`AppRuntime.run`."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        try:
            return future.result(timeout=0.25)
        except concurrent.futures.TimeoutError:
            pass
        except BaseException as exc:
            if isinstance(exc, Exception) or not future.done() or future.exception() is not exc:
                raise  # the plugin's own error, or the user's Ctrl-C in this thread
            raise AppRaised(exc) from None
        if loop_thread.stalled_for() > stall_limit or not loop_thread.alive:
            where, stack = loop_thread.where()
            raise LoopStalled(stall_limit, where, stack)
        if deadline is not None and time.monotonic() > deadline:
            future.cancel()
            raise TimeoutError(f"the app did not finish within {timeout:g} s")


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
