"""Living beside the plugins users run: coverage (pytest-cov, coverage.py).

The plugin runs the app's code on the user's behalf (lifespan, probe requests, child processes). A
user's ``--cov-fail-under`` measures the user's own tests; the probes alone raised the bundled blog
sample from about 66 % (import only) to 90 %, so the plugin's work would silently pass a gate the
tests do not. By default that work is kept out of the measurement: the active collector is paused
around it and resumed afterwards, and the plugin's children do not inherit the variables that make
coverage start in a subprocess. Importing the app still counts, as a user's test importing it would.
``fastapi_rules_count_coverage`` opts in to counting everything.

Nothing here starts, erases or saves a collector: a paused collector is the user's, started again
as it was. Without coverage.py installed (or imported) every function here does nothing.
"""

from __future__ import annotations

import contextlib
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    # Annotations only: the production-mode child imports this module (``production.launcher``)
    # and must not pay for importing pytest (issue #20).
    import pytest

#: Environment variables through which pytest-cov (``COV_CORE_*``, before 7.0) and coverage.py
#: (``COVERAGE_PROCESS_START``; ``COVERAGE_PROCESS_CONFIG`` for ``[run] patch = subprocess``) start
#: measuring in a child process.
_COVERAGE_ENV_PREFIXES = ("COV_CORE_",)
_COVERAGE_ENV_NAMES = ("COVERAGE_PROCESS_START", "COVERAGE_PROCESS_CONFIG")


def without_coverage_env(env: Mapping[str, str]) -> dict[str, str]:
    """``env`` without the variables that would make a child process measure coverage."""
    return {
        name: value
        for name, value in env.items()
        if name not in _COVERAGE_ENV_NAMES and not name.startswith(_COVERAGE_ENV_PREFIXES)
    }


def _active_coverage() -> Any:
    """The started ``coverage.Coverage`` of this process, or None.

    Read from ``sys.modules``, never imported: when nobody imported coverage.py, nothing measures,
    and the plugin must not import (or require) it.
    """
    module = sys.modules.get("coverage")
    control = getattr(module, "Coverage", None)
    current = getattr(control, "current", None)
    if current is None:
        return None
    try:
        return current()
    except Exception:  # noqa: BLE001 - an unexpected coverage.py: measure as if the plugin were absent
        return None


def _pytest_cov_controller(config: pytest.Config, cov: Any) -> Any:
    """pytest-cov's controller when it drives ``cov``: its ``pause``/``resume`` (what its own
    ``no_cover`` marker uses) keep its bookkeeping (``started``, test contexts) right."""
    plugin = config.pluginmanager.get_plugin("_cov")
    controller = getattr(plugin, "cov_controller", None)
    if (
        controller is not None
        and getattr(controller, "cov", None) is cov
        and getattr(controller, "started", False)
        and callable(getattr(controller, "pause", None))
        and callable(getattr(controller, "resume", None))
    ):
        return controller
    return None


@contextlib.contextmanager
def coverage_paused(
    config: pytest.Config, count: bool, rearm: Callable[[Callable[[], None]], None] | None = None
) -> Iterator[None]:
    """Keep the block's code out of the active coverage measurement, unless ``count``.

    ``rearm`` runs a function on the plugin's event-loop thread. A paused collector (coverage.py's
    C and Python tracers) leaves that thread untraced for good, and the user's own tests send their
    requests there too (``fastapi_client``): once resumed, the thread is given coverage's thread
    hook again so their requests count as before.
    """
    cov = None if count else _active_coverage()
    if cov is None:
        yield
        return
    controller = _pytest_cov_controller(config, cov)
    if controller is not None:
        controller.pause()
    else:
        cov.stop()
    try:
        yield
    finally:
        if controller is not None:
            controller.resume()
        else:
            cov.start()
        if rearm is not None:
            _rearm_thread(rearm)


def _rearm_thread(rearm: Callable[[Callable[[], None]], None]) -> None:
    """Install coverage's per-thread hook (``threading.settrace``) on the loop thread; the next
    call there starts a tracer of the resumed collector. Nothing happens where coverage traces
    without ``settrace`` (``sys.monitoring``), nor when the loop cannot take the call."""
    hook = threading.gettrace() if hasattr(threading, "gettrace") else None
    if hook is None:
        return

    def install() -> None:
        sys.settrace(hook)

    with contextlib.suppress(Exception):
        rearm(install)
