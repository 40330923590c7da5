"""The app's own exception behind a 5xx answer to a probe request, in one line.

A 500 alone says nothing: it may be a bug in the app (igorbenav's ``vars(await job.info())`` on a
missing task), or data the app cannot handle (a seeded value its response schema rejects). Either
way the user must see *which* exception, raised *where*, or the finding and the skip reasons that
mention the 500 are useless.

Two sources, while one probe request is served:

- the exception leaving the app: Starlette's ``ServerErrorMiddleware`` answers 500 and then re-raises
  the exception (always, also after a generic handler ran), so a thin ASGI wrapper around the app
  sees it before httpx's transport (``raise_app_exceptions=False``) swallows it;
- log records that carry an exception (``logger.exception(...)``, ``exc_info=``) reaching the root
  logger: an app whose middleware catches everything and answers 500 itself still logs it.

The text is ``TypeError: vars() argument must have __dict__ attribute at app/api/v1/tasks.py:47``:
the innermost frame of the app's own code (not the libraries', not the plugin's), and a message
without memory addresses, so the same bug reads the same on every run.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
import os
import re
import traceback
from collections.abc import Callable, Iterator, Sequence
from typing import Any

_SINK: contextvars.ContextVar[list[tuple[int, str]] | None] = contextvars.ContextVar(
    "pytest_fastapi_rules_app_errors", default=None
)
_ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")
_UUID = re.compile(r"\b[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\b")
_PLUGIN = f"{os.sep}pytest_fastapi_rules{os.sep}"


def stable_text(text: str) -> str:
    """``text`` without what differs between runs of the same code (memory addresses, UUIDs).

    The probes' own data is deterministic, but an app that generates ``uuid4()`` ids puts new ones
    in its answers and errors on every run; a report must read the same every time.
    """
    return _UUID.sub("<uuid>", _ADDRESS.sub("", text))


def exception_detail(exc: BaseException) -> str:
    """The first line of SQLAlchemy's/the driver's message, without memory addresses or doc links.

    ``(in table 'user', column 'id'): SQLite does not support ...`` becomes ``table 'user', column
    'id': SQLite does not support ...``; a type the dialect cannot render is named as such.
    """
    text = str(exc).strip()
    text = text.splitlines()[0].strip() if text else type(exc).__name__
    text = re.sub(
        r"Compiler <[^>]*?\.?(\w+?)TypeCompiler object at 0x[0-9a-fA-F]+> can't render element of type (\w+)",
        r"\1 has no column type \2",
        text,
    )
    text = re.sub(r" object at 0x[0-9a-fA-F]+", "", text)
    text = re.sub(r"\s*\(Background on this error at: [^)]*\)", "", text)
    located = re.match(r"\(in table '([^']+)', column '([^']+)'\):\s*(.*)", text)
    if located:
        text = f"table '{located.group(1)}', column '{located.group(2)}': {located.group(3)}"
    return text if len(text) <= 300 else text[:297] + "..."


def _summary(exc: BaseException) -> str:
    """The exception's message in one line (a validation error: its first error)."""
    errors = getattr(exc, "errors", None)
    if callable(errors):
        with contextlib.suppress(Exception):
            listed = errors()
            if isinstance(listed, Sequence) and listed and isinstance(listed[0], dict):
                first = listed[0]
                loc = ".".join(str(part) for part in first.get("loc", ()) or ())
                text = f"{loc}: {first.get('msg', '')}" if loc else str(first.get("msg", ""))
                more = f" (+{len(listed) - 1} more)" if len(listed) > 1 else ""
                return stable_text(text + more)
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    text = lines[0] if lines else ""
    text = stable_text(text)
    return text if len(text) <= 200 else text[:197] + "..."


def _leaf(exc: BaseException) -> BaseException:
    """The first real exception inside exception groups (anyio task groups in middleware)."""
    for _ in range(10):
        inner = getattr(exc, "exceptions", None)
        if not isinstance(inner, Sequence) or not inner or not isinstance(inner[0], BaseException):
            break
        exc = inner[0]
    return exc


def own_frame(exc: BaseException, own_roots: Sequence[str], relative: Callable[[str], str]) -> str | None:
    """``file:line`` of the innermost frame of the app's own code, along the cause/context chain."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        found = None
        for frame in traceback.extract_tb(current.__traceback__):
            filename = os.path.realpath(frame.filename)
            if "site-packages" in filename or _PLUGIN in filename:
                continue
            if any(filename.startswith(root.rstrip(os.sep) + os.sep) for root in own_roots):
                found = f"{relative(filename)}:{frame.lineno}"
        if found:
            return found
        current = current.__cause__ or current.__context__
    return None


def describe(exc: BaseException, own_roots: Sequence[str], relative: Callable[[str], str]) -> str:
    """``TypeError: message at app/file.py:12`` (no location when no frame is the app's own)."""
    exc = _leaf(exc)
    summary = _summary(exc)
    text = f"{type(exc).__name__}: {summary}" if summary else type(exc).__name__
    where = own_frame(exc, own_roots, relative)
    return f"{text} at {where}" if where else text


class _LogCapture(logging.Handler):
    """Records with an exception, attributed to the probe request being served (context variable)."""

    def __init__(self, own_roots: Sequence[str], relative: Callable[[str], str]) -> None:
        super().__init__(level=logging.DEBUG)
        self.own_roots = own_roots
        self.relative = relative

    def emit(self, record: logging.LogRecord) -> None:
        sink = _SINK.get()
        exc_info = record.exc_info
        if sink is None or not exc_info or not isinstance(exc_info, tuple) or exc_info[1] is None:
            return
        exc = exc_info[1]
        if any(key == id(exc) for key, _text in sink):
            return
        with contextlib.suppress(Exception):
            sink.append((id(exc), describe(exc, self.own_roots, self.relative)))


class ErrorCapture:
    """Catches the app's exceptions per probe request (see the module docstring)."""

    def __init__(self, own_roots: Sequence[str], relative: Callable[[str], str]) -> None:
        self.own_roots = tuple(own_roots)
        self.relative = relative

    def wrap(self, app: Any) -> Any:
        """The ASGI app, wrapped so that an exception leaving it is recorded (and re-raised)."""
        own_roots, relative = self.own_roots, self.relative

        async def capturing_app(scope: Any, receive: Any, send: Any) -> None:
            try:
                await app(scope, receive, send)
            except asyncio.CancelledError:
                raise
            except BaseException as exc:  # SystemExit, KeyboardInterrupt: the app's, on this loop
                sink = _SINK.get()
                if sink is not None and not any(key == id(exc) for key, _text in sink):
                    with contextlib.suppress(Exception):
                        sink.append((id(exc), describe(exc, own_roots, relative)))
                raise

        return capturing_app

    @contextlib.contextmanager
    def request(self) -> Iterator[list[tuple[int, str]]]:
        """Collect the exceptions of the request sent inside the block (newest last)."""
        sink: list[tuple[int, str]] = []
        token = _SINK.set(sink)
        handler = _LogCapture(self.own_roots, self.relative)
        root = logging.getLogger()
        root.addHandler(handler)
        try:
            yield sink
        finally:
            root.removeHandler(handler)
            _SINK.reset(token)


__all__ = ["ErrorCapture", "describe", "own_frame", "stable_text"]
