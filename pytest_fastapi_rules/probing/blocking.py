"""FR402: blocking calls on the event loop thread, and loop stalls, while the app serves requests.

Both watch the same requests the other rules measure: the valid requests at the large data size
and the writes (POST, PUT, PATCH). No request is sent for FR402 alone, except to confirm a stall.

- **loop-stall timing** (:class:`LoopWatch`): a heartbeat task on the app's loop wakes every few
  milliseconds; how late it wakes, bounded by the CPU time the loop thread used meanwhile, is how
  long code ran on the loop (another thread holding the GIL delays the loop without being its
  fault). Garbage-collection pauses (``gc.callbacks``) are subtracted, the plugin's own work
  happens outside the measured windows, and a stall only counts when it repeats on a second request
  to the same route (a first call that imports or compiles something is not a pattern): a request
  that stalled is sent once more (see ``ProbeRun._send_repeats``).
- **blockbuster** (:class:`BlockingCallRecorder`): it patches the blocking functions of the standard
  library (``time.sleep``, file and socket I/O through ``os``, sockets); a call made on a thread
  that runs an event loop, with a frame of the app's own code on the stack, is recorded with the
  innermost frame of the app's code. blockbuster would raise ``BlockingError`` there, which would
  turn the request into a 500; the recorder lets the call run instead, so the answers stay the
  app's. Writes by the ``logging`` module are allowed: logging to a stream is accepted practice.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from pytest_fastapi_rules.probing.runner import ProbeRun

#: A loop stall longer than this, on two requests to the same route, is reported.
STALL_THRESHOLD = 0.1
HEARTBEAT = 0.005
T = TypeVar("T")
#: Loop turns to wait at most for an overdue heartbeat to record its sample.
_MAX_TURNS = 10


#: Connection setup of async drivers reads small local files (``~/.pgpass``, CA certificates) on
#: the loop by design; that is the driver's business, not the app's.
_DRIVER_SETUP_FILES = ("asyncpg/connect_utils.py", "/ssl.py", "psycopg/conninfo.py", "psycopg/_dns.py")


_HEAP_TYPE = 1 << 9  # Py_TPFLAGS_HEAPTYPE
_IMMUTABLE_TYPE = 1 << 8  # Py_TPFLAGS_IMMUTABLETYPE


def _patchable(cls: type) -> bool:
    """Whether ``setattr`` can patch the class (a Python class, not a built-in or immutable type)."""
    flags = cls.__flags__
    return bool(flags & _HEAP_TYPE) and not flags & _IMMUTABLE_TYPE


class _AnyFunction:
    """A set of function names that contains every name (blockbuster matches frames by name)."""

    def __contains__(self, name: object) -> bool:
        return True


class _GcClock:
    """Total time spent in garbage collection, from ``gc.callbacks``."""

    def __init__(self) -> None:
        self.total = 0.0
        self._started: float | None = None

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        elif self._started is not None:
            self.total += time.perf_counter() - self._started
            self._started = None


@contextlib.contextmanager
def _gc_clock() -> Iterator[_GcClock]:
    clock = _GcClock()
    gc.callbacks.append(clock)
    try:
        yield clock
    finally:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(clock)


def _package_dirs(*names: str) -> tuple[str, ...]:
    """The directories of the installed packages ``names`` (with a trailing separator)."""
    import importlib.util
    import os

    dirs = []
    for name in names:
        spec = importlib.util.find_spec(name)
        for location in (spec.submodule_search_locations or []) if spec else []:
            dirs.append(os.path.join(location, ""))
    return tuple(dirs)


class BlockingCallRecorder:
    """blockbuster's patches of the blocking functions, recording instead of raising.

    blockbuster wraps each blocking function so that a call on a thread running an event loop, with
    a frame of the scanned modules on the stack, raises ``BlockingError``. Raising would turn the
    request into a 500, so the detector could not watch the same requests the other rules measure.
    Each function's ``can_block_predicate`` (blockbuster's hook that decides whether a call may
    block) is given one of :meth:`_recording`'s: it makes the same decision blockbuster would, records
    a call blockbuster would refuse, and lets every call run. Detection therefore costs no request of
    its own: it is on while the valid requests are sent at the large data size and the writes.
    """

    def __init__(self, scanned: tuple[str, ...]) -> None:
        #: ``(blocking function, innermost frame of the app's code)`` of every call seen, in order.
        self.calls: list[tuple[str, str]] = []
        #: The files and package directories of the app's own code (blockbuster's scanned modules).
        self._scanned = scanned
        self._framework = _package_dirs("fastapi", "starlette")
        self._detector: Any = None
        #: Why blocking calls cannot be detected, when they cannot (FR402 then relies on stalls).
        self.unavailable: str | None = None
        try:
            import blockbuster.blockbuster  # noqa: F401
        except ImportError:
            self.unavailable = "blockbuster is not installed"
        else:
            if not scanned:
                self.unavailable = "no module of the app's own was found to watch"

    @classmethod
    def for_run(cls, run: ProbeRun) -> BlockingCallRecorder:
        import os
        import sys

        scanned = []
        for name in sorted(run.facts.own_packages):
            module = sys.modules.get(name)
            path = getattr(module, "__path__", None)
            file = os.path.join(path[0], "") if path else getattr(module, "__file__", None)
            if file:
                scanned.append(str(file))
        return cls(tuple(scanned))

    def _build(self) -> Any:
        import blockbuster.blockbuster as bb_module

        detector = bb_module.BlockBuster(scanned_modules=[])
        # Patching a static built-in type (io, sqlite3, thread locks) needs forbiddenfruit, which
        # rewrites the type's dict while other threads (xdist's, the app's) may be calling it; that
        # has crashed worker processes. Only functions and heap classes are patched (time.sleep,
        # os.*, sockets).
        detector.functions = {
            name: function
            for name, function in detector.functions.items()
            if not isinstance(function.module, type) or _patchable(function.module)
        }
        for function in detector.functions.values():
            function.can_block_in("logging/__init__.py", {"emit", "flush", "handle", "callHandlers"})
            for driver_file in _DRIVER_SETUP_FILES:
                function.can_block_in(driver_file, _AnyFunction())  # type: ignore[arg-type]
            function.can_block_predicate = self._recording(function)
        return detector

    def _recording(self, function: Any) -> Any:
        """``function``'s predicate: blockbuster's own first, then the stack walk it would make."""
        may_block = function.can_block_predicate
        allowed: list[tuple[str, Any]] = function.can_block_functions
        name = str(function.full_name)

        def predicate(*args: Any, **kwargs: Any) -> bool:
            if may_block(*args, **kwargs):
                return True
            where = self._app_frame(allowed)
            if where is not None:
                self.calls.append((name, where))
            return True

        return predicate

    def _app_frame(self, allowed: list[tuple[str, Any]]) -> str | None:
        """The innermost frame of the app's code that makes this a refused call, or None.

        Refused as blockbuster refuses: a frame of the app's packages on the stack and no frame of
        a function allowed to block. One more exception: when the app's innermost frame handed
        control to FastAPI or Starlette (a middleware's ``await self.app(...)``), the framework
        made the call on its own account, not the app (FastAPI reads an endpoint's source file the
        first time the endpoint raises).
        """
        import sys

        frame: Any = sys._getframe(2)
        callee: Any = None
        innermost: str | None = None
        while frame is not None:
            code = frame.f_code
            filename = code.co_filename
            if innermost is None and filename.startswith(self._scanned):
                if callee is not None and callee.f_code.co_filename.startswith(self._framework):
                    return None
                innermost = f"{filename}:{frame.f_lineno} in {code.co_name}"
            normalized = filename.replace("\\", "/")
            for allowed_file, functions in allowed:
                if normalized.endswith(allowed_file) and code.co_name in functions:
                    return None
            callee, frame = frame, frame.f_back
        return innermost

    @contextlib.contextmanager
    def watching(self) -> Iterator[None]:
        """Patch the blocking functions for the duration of the block (no-op when unavailable)."""
        if self.unavailable is not None:
            yield
            return
        if self._detector is None:
            self._detector = self._build()
        self._detector.activate()
        try:
            yield
        finally:
            self._detector.deactivate()


class LoopWatch:
    """How long each request held the app's event loop (see the module docstring).

    Used as ``async with LoopWatch() as watch: exchange, lag = await watch.timed(send(...))`` on
    the app's loop; ``lag`` is in seconds, garbage collection removed.
    """

    def __init__(self) -> None:
        self._samples: list[tuple[float, float]] = []
        self._stop = asyncio.Event()
        #: When the heartbeat is next due to wake (``inf`` while it is awake).
        self._due = math.inf
        self._task: asyncio.Task[None] | None = None

    async def __aenter__(self) -> LoopWatch:
        self._task = asyncio.create_task(self._heartbeat())
        await asyncio.sleep(0)  # the heartbeat starts and goes to sleep: measuring from now on
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        self._stop.set()
        if self._task is not None:
            await self._task

    async def _heartbeat(self) -> None:
        # How late the heartbeat wakes is how long the loop was held, but only the part the loop
        # thread spent on the CPU counts: a thread pool worker that holds the GIL (bcrypt in
        # asyncio.to_thread, done right) delays the loop without anything running on it.
        loop = asyncio.get_running_loop()
        while not self._stop.is_set():
            expected = self._due = loop.time() + HEARTBEAT
            cpu_before = time.thread_time()
            await asyncio.sleep(HEARTBEAT)
            self._due = math.inf
            late = max(loop.time() - expected, 0.0)
            on_loop = time.thread_time() - cpu_before
            self._samples.append((time.perf_counter(), min(late, on_loop)))

    async def _let_heartbeat_land(self) -> None:
        # A wake-up delayed by the request is overdue now; it runs within a few loop turns (its
        # timer fires, then its task steps), which puts its sample in this request's window rather
        # than the next one's. No fixed sleep: that would cost a heartbeat period per request.
        loop = asyncio.get_running_loop()
        for _ in range(_MAX_TURNS):
            if loop.time() < self._due:
                return
            await asyncio.sleep(0)

    async def timed(self, sending: Awaitable[T]) -> tuple[T, float]:
        """Await ``sending``; return its result and the longest loop stall while it ran."""
        first_sample = len(self._samples)
        start = time.perf_counter()
        with _gc_clock() as clock:
            result = await sending
            await self._let_heartbeat_land()
        end = time.perf_counter()
        lag = max((lag for at, lag in self._samples[first_sample:] if start <= at <= end), default=0.0)
        return result, max(lag - clock.total, 0.0)
