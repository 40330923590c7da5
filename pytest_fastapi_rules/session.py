"""The per-session state of the plugin: options, the loaded app, its facts, its runtime, results.

One :class:`RulesSession` lives in ``config.stash`` for the whole pytest session. The app is imported
lazily, at collection, and only once; facts are gathered once and shared by every item.
"""

from __future__ import annotations

import contextlib
import gc
import sys
from collections.abc import Callable
from types import FrameType
from typing import TYPE_CHECKING

import pytest

from pytest_fastapi_rules.baseline import Baseline
from pytest_fastapi_rules.coexistence import coverage_paused
from pytest_fastapi_rules.options import RulesOptions
from pytest_fastapi_rules.production.launcher import stop_spares, stop_unfinished
from pytest_fastapi_rules.tracebacks import captured_output

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts
    from pytest_fastapi_rules.loading import AppLoadError
    from pytest_fastapi_rules.runtime import AppRuntime

#: What the collector's permanent generation held when pytest loaded the plugin. Not always 0: the
#: CPython 3.12 interpreter starts with a few hundred objects there (375 on 3.12.1).
_FROZEN_AT_PYTEST_START = gc.get_freeze_count()


class RulesSession:
    """Holds everything the plugin knows during one pytest session."""

    def __init__(self, config: pytest.Config, options: RulesOptions) -> None:
        self.config = config
        self.options = options
        self._facts: AppFacts | None = None
        self._load_error: AppLoadError | None = None
        self._runtime: AppRuntime | None = None
        self._sys_path_before = list(sys.path)
        #: The first item that showed the app's startup traceback; later items refer to it.
        self.startup_error_shown_at: str | None = None
        #: Per crashed probe phase, the item that showed its traceback; later items refer to it.
        self.phase_errors_shown: dict[str, str] = {}
        #: Whether the rules' background work (``Rule.background``) was started in this process.
        self.background_started = False
        #: The steps of the session's shared work done so far (see ``RuleItem.has_shared_work_left``).
        self.shared_work_done: set[object] = set()
        self._sigterm_before: object = None
        self._watch_sigterm()
        #: Whether :meth:`freeze_long_lived` froze the heap (then :meth:`_unfreeze_heap` unfreezes it).
        self._froze_heap = False
        #: Whether :meth:`freeze_after_probes` had its one chance.
        self._probes_frozen = False
        #: Whether an item that is not the plugin's (the user's own test) has started.
        self.other_items_started = False
        # Registered now, in pytest_configure, so that it runs after every other cleanup (they run
        # last-registered first): see _unfreeze_heap.
        config.add_cleanup(self._unfreeze_heap)
        #: Raises BaselineError (a usage error) when the file is missing or unreadable.
        self.baseline: Baseline | None = (
            Baseline.load(options.baseline_path, updating=options.update_baseline)
            if options.baseline_path
            else None
        )

    def facts(self) -> AppFacts:
        """Import the app and gather its facts, once; raises :class:`AppLoadError` every time it failed."""
        if self._load_error is not None:
            raise self._load_error
        if self._facts is None:
            # Deferred on purpose: the app, FastAPI and SQLAlchemy come with these, and pytest
            # imports this module at its start, with or without --fastapi-app.
            from pytest_fastapi_rules.facts import AppFacts
            from pytest_fastapi_rules.loading import AppLoadError, load_app
            from pytest_fastapi_rules.runtime import AppRuntime

            assert self.options.app_spec
            with captured_output() as output:
                try:
                    loaded = load_app(self.options.app_spec, self.options.app_dir)
                except AppLoadError as exc:
                    self._load_error = exc
            if self._load_error is not None:
                self._load_error.output = output[0] if output else ""
                raise self._load_error
            self._runtime = AppRuntime(loaded.app, timeout=self.options.startup_timeout)
            self._facts = AppFacts(loaded, root=self.config.rootpath, runtime=self._runtime)
            self.freeze_long_lived()
        return self._facts

    def stop_app(self) -> None:
        """Stop the app's lifespan (it is started again if another item needs it)."""
        if self._runtime is not None:
            with self.coverage_paused():
                self._runtime.stop()

    def coverage_paused(self) -> contextlib.AbstractContextManager[None]:
        """The plugin's own work, kept out of the user's coverage unless ``fastapi_rules_count_coverage``
        (see ``coexistence``)."""
        return coverage_paused(self.config, self.options.count_coverage, self._call_on_loop)

    def _call_on_loop(self, function: Callable[[], None]) -> None:
        if self._runtime is not None:
            self._runtime.call_on_loop(function)

    def _watch_sigterm(self) -> None:
        """Turn SIGTERM (a CI job's timeout, ``kill``) into an interruption, like Ctrl-C.

        Python's default for SIGTERM ends the process at once: no ``finally``, no ``atexit``, and the
        throwaway databases stay on the server. Only when nobody else handles SIGTERM, and only in
        the main thread; :meth:`close` puts the default back.
        """
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread() or not hasattr(signal, "SIGTERM"):
            return
        if signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
            return

        def interrupted(signum: int, _frame: object) -> None:
            raise KeyboardInterrupt(f"signal {signum} (SIGTERM)")

        signal.signal(signal.SIGTERM, interrupted)
        self._sigterm_before = signal.SIG_DFL

    def freeze_long_lived(self) -> None:
        """Move everything alive now out of the cyclic garbage collector's sight until the session
        ends: once the app is imported, and again after collection (the app, its facts, the items).

        Those objects live for the whole session, yet every full collection walked them again: at
        1,000 routes, 13 full collections took 4.9 s, 0.7 s each by the end; on mealie (Python
        3.12), 17 took 6.7 s of a 25 s run. Frozen once the app is imported too, the collections
        while the facts and the items are built walk only what was made since (at 1,000 routes, two
        of them: 0.54 s before, 0.02 s after). Only when nothing but the plugin froze the heap
        since pytest started (another plugin or the user's conftest has its own reasons, and
        ``gc.unfreeze`` would undo them); what was frozen before is the interpreter's (see
        :data:`_FROZEN_AT_PYTEST_START`).
        """
        if self._froze_heap or gc.get_freeze_count() <= _FROZEN_AT_PYTEST_START:
            gc.freeze()
            self._froze_heap = True

    def freeze_after_probes(self) -> None:
        """Once the probe run is done, collect once and freeze what it leaves alive (its answers,
        the app's caches and pools), so that the full collections while the rule items run walk
        only what was made since.

        At 1,000 routes the probe run leaves about 700,000 objects, and the five full collections
        after it took 1.3 s. Only once, after the first probe item's shared work, and only when no
        test but the plugin's items ran before it: the user's tests' objects (their fixtures, torn
        down later) are not the plugin's to keep from the collector.
        """
        if self._probes_frozen or self.other_items_started or not self._froze_heap:
            return
        self._probes_frozen = True
        gc.collect()
        gc.freeze()

    def freeze_for_exit(self) -> None:
        """In a process that ends with the session, collect once and freeze what the session made
        since :meth:`freeze_long_lived` (the probe answers, the items' reports), so that the
        collections still to come walk none of it.

        Those are pytest's own (its unraisable-exception check collects in its
        ``pytest_unconfigure`` and again in a cleanup) and the interpreter's at exit, which walked
        and freed that part of the heap object by object: about 2 s of a 40 s run at 1,000 routes.
        The collection here comes first and runs while pytest's unraisable-exception hook is
        installed, so garbage the session left (the user's tests' too) is still finalized and
        reported as before; only what is still alive is frozen. The plugin's ``pytest_unconfigure``
        calls this after closing its own session, and before pytest's (pytest's built-in plugins'
        hooks run after the plugins registered later). A process that goes on gets everything back
        in :meth:`_unfreeze_heap`, so nothing is frozen again there.
        """
        if self._froze_heap and _process_ends_with_session(self.config):
            gc.collect()
            gc.freeze()

    def _unfreeze_heap(self) -> None:
        """Give the frozen objects back to the collector, as the last thing of the session, when the
        process goes on after it.

        After pytest's own full collections at the end (its unraisable-exception check collects in
        ``pytest_unconfigure`` and again in a cleanup): unfrozen before them, each walked the whole
        heap again, 1 to 2 s apiece at 1,000 routes. What was frozen is the app and the items, whose
        finalizers are not the user's tests'. A process that ends with the session (the ``pytest``
        command, an xdist worker) keeps the heap frozen: the interpreter's own collections at exit
        would walk it all again for nothing (a tenth of the run's CPU at 100 routes). A process
        that goes on (``pytest.main()`` in a script, an IDE, ``pytester``) gets it back, and with it
        what the interpreter froze before pytest started (``gc.unfreeze`` cannot tell them apart):
        for those few hundred objects the collector only walks a little more.
        """
        if self._froze_heap and not _process_ends_with_session(self.config):
            gc.unfreeze()
            self._froze_heap = False

    def close(self) -> None:
        """Leave the process as the plugin found it: lifespan stopped, loop closed, children ended,
        sys.path restored, the SIGTERM handler as it was (the heap is unfrozen by a cleanup)."""
        if self._sigterm_before is not None:
            import signal

            signal.signal(signal.SIGTERM, self._sigterm_before)  # type: ignore[arg-type]
            self._sigterm_before = None
        if self.background_started:
            stop_unfinished()
        stop_spares()
        if self._runtime is not None:
            with self.coverage_paused():
                self._runtime.close()
            self._runtime = None
        added = [entry for entry in sys.path if entry not in self._sys_path_before]
        for entry in added:
            while entry in sys.path:
                sys.path.remove(entry)


SESSION_KEY = pytest.StashKey[RulesSession]()


def _process_ends_with_session(config: pytest.Config) -> bool:
    """Whether this process exits once the pytest session ends: an xdist worker (a process made for
    the session), or a run of pytest's command-line entry point (``pytest``, ``python -m pytest``),
    which exits with the session's code as soon as the innermost ``main`` returns to it. Anything
    else (``pytest.main()`` called from code, ``pytester``'s in-process runs) goes on."""
    if hasattr(config, "workerinput"):
        return True
    frame: FrameType | None = sys._getframe()
    while frame is not None:
        if _is_pytest_config_function(frame, ("main", "_main")):
            caller = frame.f_back
            return caller is not None and _is_pytest_config_function(
                caller, ("console_main", "_console_main")
            )
        frame = frame.f_back
    return False


def _is_pytest_config_function(frame: FrameType, names: tuple[str, ...]) -> bool:
    return frame.f_code.co_name in names and frame.f_globals.get("__name__") == "_pytest.config"
