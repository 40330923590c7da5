"""Show the app's exceptions as the app's: its own frames, the root cause first.

When the app fails (at import, in its factory, in its lifespan), the user needs the frames of their
code, not those of importlib, asyncio, asgi-lifespan, Starlette or this plugin that sit around them.
Library frames are dropped except the one that raised, so an exception raised inside a library
still shows where.
"""

from __future__ import annotations

import contextlib
import traceback
from collections.abc import Iterator
from pathlib import Path
from typing import IO, NoReturn

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
        #: What the app printed meanwhile (shortened), shown with the error it belongs to.
        self.output = ""

    def render(self) -> str:
        text = self.message
        if self.app_traceback:
            text += f"\n\nThe app's own traceback:\n{self.app_traceback.rstrip()}"
        if self.output.strip():
            text += f"\n\nWhat the app printed meanwhile:\n{self.output.rstrip()}"
        return text


#: How much of what the app printed an error shows: its end, where the cause usually is.
OUTPUT_SHOWN = 4000

#: Emptied sinks of ended :func:`captured_output` blocks, reused: the plugin enters one around every
#: rule item's shared work, and creating a temporary file each time cost 13,446 file creations
#: (seconds) at 1,000 routes. A list, not one file, because blocks can nest.
_SPARE_SINKS: list[IO[bytes]] = []


@contextlib.contextmanager
def captured_output() -> Iterator[list[str]]:
    """Keep what the app writes to stdout/stderr (file descriptors 1 and 2) inside the block.

    Importing an app runs its module code, and an app that prints megabytes there flooded the
    terminal report. The text (its last :data:`OUTPUT_SHOWN` characters, with a note of how much
    was cut) is put in the yielded list when the block ends, for the error it belongs to.
    """
    import os
    import sys
    import tempfile

    holder: list[str] = []
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    try:
        saved = (os.dup(1), os.dup(2))
    except OSError:  # no file descriptors to redirect (an embedded interpreter): leave it be
        yield holder
        return
    sink = _SPARE_SINKS.pop() if _SPARE_SINKS else tempfile.TemporaryFile()  # noqa: SIM115
    try:
        os.dup2(sink.fileno(), 1)
        os.dup2(sink.fileno(), 2)
        try:
            yield holder
        finally:
            for stream in (sys.stdout, sys.stderr):
                with contextlib.suppress(Exception):
                    stream.flush()
            os.dup2(saved[0], 1)
            os.dup2(saved[1], 2)
            os.close(saved[0])
            os.close(saved[1])
            size = sink.seek(0, os.SEEK_END)
            sink.seek(max(size - OUTPUT_SHOWN, 0))
            text = sink.read().decode("utf-8", errors="replace")
            if size > OUTPUT_SHOWN:
                text = f"[... {size - OUTPUT_SHOWN:,} earlier bytes not shown ...]\n{text}"
            holder.append(text)
            sink.seek(0)
            sink.truncate()
    except BaseException:
        sink.close()
        raise
    _SPARE_SINKS.append(sink)


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
    text = _one(exc)
    if cause is not exc:
        return f"{_one(cause)} (and then {text})"
    return text


def _one(exc: BaseException) -> str:
    message = str(exc)
    return f"{type(exc).__name__}: {message}" if message else type(exc).__name__


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
