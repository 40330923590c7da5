"""Show the app's exceptions as the app's: its own frames, the root cause first.

When the app fails (at import, in its factory, in its lifespan), the user needs the frames of their
code, not those of importlib, asyncio, asgi-lifespan, Starlette or this plugin that sit around them.
Library frames are dropped except the one that raised, so an exception raised inside a library
still shows where.
"""

from __future__ import annotations

import contextlib
import traceback
from pathlib import Path
from typing import NoReturn

_PLUGIN_DIR = str(Path(__file__).resolve().parent)
_NOISE = (
    "<frozen importlib",
    "/asyncio/",
    "/contextlib.py",
    "/concurrent/futures/",
    "/threading.py",
    "/asgi_lifespan/",
    "/starlette/",
    "/fastapi/",
    "/anyio/",
)


class AppError(Exception):
    """A failure of the user's app (import, factory, lifespan): a message for the user, as is, and
    the app's own traceback when its code raised."""

    def __init__(self, message: str, app_traceback: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.app_traceback = app_traceback

    def render(self) -> str:
        if not self.app_traceback:
            return self.message
        return f"{self.message}\n\nThe app's own traceback:\n{self.app_traceback.rstrip()}"


def _is_noise(filename: str) -> bool:
    return filename.startswith(_PLUGIN_DIR) or any(part in filename for part in _NOISE)


def _trim(stack: traceback.StackSummary) -> traceback.StackSummary:
    frames = list(stack)
    kept = [
        frame
        for index, frame in enumerate(frames)
        if index == len(frames) - 1 or not _is_noise(frame.filename)
    ]
    return traceback.StackSummary.from_list(kept)


def format_app_exception(exc: BaseException) -> str:
    """The exception and its chain, formatted with library and plugin frames dropped."""
    summary = traceback.TracebackException.from_exception(exc)
    current: traceback.TracebackException | None = summary
    seen = 0
    while current is not None and seen < 16:
        current.stack = _trim(current.stack)
        current = current.__cause__ or current.__context__
        seen += 1
    return "".join(summary.format())


def root_cause(exc: BaseException) -> BaseException:
    """The first exception of the chain: what went wrong before the app's cleanup code failed too."""
    current = exc
    for _ in range(16):
        inner = current.__cause__ or (None if current.__suppress_context__ else current.__context__)
        if inner is None:
            return current
        current = inner
    return current


def describe(exc: BaseException) -> str:
    """``Type: message``, naming the root cause too when the last exception is a consequence."""
    cause = root_cause(exc)
    text = f"{type(exc).__name__}: {exc}"
    if cause is not exc:
        return f"{type(cause).__name__}: {cause} (and then {text})"
    return text


_FIRST_TRACEBACK = "_fastapi_rules_first_traceback"


def raise_again(exc: BaseException) -> NoReturn:
    """Raise a remembered failure again, with the traceback of its first raise only.

    A failure is cached and raised again by every item that depends on it (the probe run, the
    runtime facts, the lifespan's startup). Raising the same object again prepends the new frames to
    its ``__traceback__``: on an app of a thousand routes the last item printed every earlier
    item's frames (a gigabyte of log). Each raise starts again from the first traceback instead.
    """
    first = getattr(exc, _FIRST_TRACEBACK, None)
    if first is None:
        first = exc.__traceback__
        # An exception type that takes no attributes keeps growing; none of the plugin's does.
        with contextlib.suppress(AttributeError):
            setattr(exc, _FIRST_TRACEBACK, first)
    raise exc.with_traceback(first)
