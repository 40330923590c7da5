"""FR402: blocking calls on the event loop thread, and loop stalls, while the app serves requests.

- **loop-stall timing** (:class:`LoopWatch`): while the valid requests are sent at the large data
  size, while the writes are sent, and in the last pass, a heartbeat task on the app's loop wakes
  every few milliseconds; how late it wakes, bounded by the CPU time the loop thread used
  meanwhile, is how long code ran on the loop (another thread holding the GIL delays the loop
  without being its fault). Garbage-collection pauses (``gc.callbacks``) are subtracted, the
  plugin's own work happens outside the measured windows, and a stall only counts when it repeats
  on a second request to the same route (a first call that imports or compiles something is not a
  pattern).
- **blockbuster**, in a last pass that re-sends every valid request once: it patches the blocking
  functions of the standard library (``time.sleep``, file and socket I/O, ``sqlite3``, lock
  waits...) for the duration of the pass; a call made on a thread that runs an event loop, with a
  frame of the app's own code on the stack, raises ``BlockingError`` (so the request fails). The
  error class is swapped for one that records where the call came from (the innermost frame of the
  app's code). Writes by the ``logging`` module are allowed: logging to a stream is accepted
  practice. The pass runs at the large data size; its answers also serve FR509 as a second sample
  at that size.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import math
import time
import traceback
from collections.abc import Awaitable, Iterator
from typing import TYPE_CHECKING, Any, TypeVar

from pytest_fastapi_rules.probing.requests import ProbeRequest
from pytest_fastapi_rules.probing.results import BlockingCall

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


def _own_frame(own_roots: tuple[str, ...]) -> str:
    for frame in reversed(traceback.extract_stack()[:-2]):
        if frame.filename.startswith(own_roots):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "?"


@contextlib.contextmanager
def _blockbuster(run: ProbeRun, calls: list[tuple[str, str]]) -> Iterator[bool]:
    """Activate blockbuster on the app's own packages, recording each blocking call."""
    try:
        import blockbuster.blockbuster as bb_module
    except ImportError:
        yield False
        return
    import sys

    roots = tuple(run.own_roots)
    packages = [sys.modules[name] for name in sorted(run.facts.own_packages) if name in sys.modules]
    packages = [m for m in packages if getattr(m, "__path__", None) or getattr(m, "__file__", None)]
    if not packages:
        yield False
        return
    original_error = bb_module.BlockingError

    class RecordingBlockingError(original_error):  # type: ignore[misc, valid-type]
        def __init__(self, func: str) -> None:
            super().__init__(func)
            calls.append((func, _own_frame(roots)))

    detector = bb_module.BlockBuster(scanned_modules=packages)
    # Patching a static built-in type (io, sqlite3, thread locks) needs forbiddenfruit, which rewrites
    # the type's dict while other threads (xdist's, the app's) may be calling it; that has crashed
    # worker processes. Only functions and heap classes are patched (time.sleep, os.*, sockets).
    detector.functions = {
        name: function
        for name, function in detector.functions.items()
        if not isinstance(function.module, type) or _patchable(function.module)
    }
    for function in detector.functions.values():
        function.can_block_in("logging/__init__.py", {"emit", "flush", "handle", "callHandlers"})
        for driver_file in _DRIVER_SETUP_FILES:
            function.can_block_in(driver_file, _AnyFunction())  # type: ignore[arg-type]
    bb_module.BlockingError = RecordingBlockingError  # type: ignore[misc]
    detector.activate()
    try:
        yield True
    finally:
        detector.deactivate()
        bb_module.BlockingError = original_error  # type: ignore[misc]


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


def _requests(run: ProbeRun) -> list[tuple[ProbeRequest, str]]:
    assert run.builder is not None
    batch: list[tuple[ProbeRequest, str]] = []
    for route in run.routes:
        if route.method == "DELETE":
            continue
        request = run.builder.happy(route)
        if request is not None:
            batch.append((request, route.target))
    return batch


def blocking_pass(run: ProbeRun) -> None:
    """Re-send the valid requests with blockbuster on; record blocking calls and stalls."""
    from pytest_fastapi_rules.probing.seeding import LARGE

    results = run.results
    if run.builder is None:
        return
    run._seed(LARGE)
    batch = _requests(run)
    if not batch:
        results.blocking_skipped = "no request could be built"
        return
    calls: list[tuple[str, str]] = []

    async def go() -> None:
        async with run._client() as client, LoopWatch() as watch:
            for request, target in batch:
                calls_before = len(calls)
                exchange, lag = await watch.timed(run._send_one(client, request, "blocking", target))
                run.results.exchanges.append(exchange)
                results.stalls.setdefault(target, []).append(lag)
                for func, where in calls[calls_before:]:
                    results.blocking_calls.append(BlockingCall(target=target, call=func, where=where))

    with _blockbuster(run, calls) as active:
        if not active:
            results.notes.append("blockbuster is not available: FR402 relies on loop-stall timing only")
        run.run(go(), timeout=60 + 30 * len(batch))
