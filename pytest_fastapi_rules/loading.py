"""Import the app under check from ``module:attribute``, with errors that say what to do.

Everything that can go wrong here is the user's input or the user's app, never the plugin: each case
raises :class:`AppLoadError` with one paragraph naming the problem and the fix, and, where the app's
own code raised, the app's traceback labelled as such.
"""

from __future__ import annotations

import importlib
import inspect
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from starlette.applications import Starlette

from pytest_fastapi_rules.tracebacks import AppError, describe, format_app_exception

_SPEC = re.compile(r"^(?P<module>[A-Za-z_][\w]*(\.[A-Za-z_]\w*)*):(?P<attr>[A-Za-z_]\w*(\.[A-Za-z_]\w*)*)$")
_MAX_UNWRAP = 8


class AppLoadError(AppError):
    """The app could not be loaded; the message is meant for the user, as is."""


@dataclass(frozen=True)
class LoadedApp:
    """The app object and where it came from."""

    spec: str
    module: ModuleType
    app: Starlette
    #: The object the spec named (the app itself, or the factory that built it).
    target: Any
    from_factory: bool


def parse_spec(spec: str) -> tuple[str, str]:
    """Split ``module:attribute``; raises :class:`AppLoadError` on anything else."""
    text = spec.strip()
    match = _SPEC.match(text)
    if not match:
        hint = ""
        if ":" not in text:
            hint = f" Did you mean --fastapi-app={text}:app?" if text else ""
        elif text.endswith(".py") or "/" in text or "\\" in text:
            hint = " Use the dotted module path, not a file path (src.main:app, not src/main.py:app)."
        raise AppLoadError(
            f"--fastapi-app={spec!r} is not of the form module:attribute.{hint} "
            "Give the module that defines the app and the name of the app or of its factory, "
            "e.g. --fastapi-app=src.main:app or --fastapi-app=src.main:create_application."
        )
    return match.group("module"), match.group("attr")


def _app_frames_only(exc: BaseException) -> str:
    """Format an exception raised by the app, without the importlib and plugin frames around it."""
    return format_app_exception(exc)


def _missing_is_the_spec_module(error: ModuleNotFoundError, module_name: str) -> bool:
    missing = error.name or ""
    return module_name == missing or module_name.startswith(missing + ".")


def import_app_module(module_name: str, spec: str, app_dir: Path) -> ModuleType:
    try:
        return importlib.import_module(module_name)
    except ModuleNotFoundError as exc:
        if _missing_is_the_spec_module(exc, module_name):
            raise AppLoadError(
                f"--fastapi-app={spec}: cannot import module {module_name!r} from {app_dir} "
                f"(no module named {exc.name!r}). Check the spelling, or point "
                "--fastapi-app-dir (ini: fastapi_app_dir) at the folder that contains the "
                "top-level package of your app."
            ) from None
        raise AppLoadError(
            f"--fastapi-app={spec}: importing {module_name!r} failed because the app imports "
            f"{exc.name!r}, which is not installed in this environment. Install the app's own "
            "dependencies into the environment pytest runs in.",
            _app_frames_only(exc),
        ) from None
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(
            f"--fastapi-app={spec}: importing {module_name!r} raised "
            f"{describe(exc)}. This is an error in the app's own code or "
            "configuration (a missing environment variable is the usual cause); fix it so that "
            f"`python -c 'import {module_name}'` works from {app_dir}.",
            _app_frames_only(exc),
        ) from None


def _describe_candidates(module: ModuleType) -> str:
    names = []
    for name, value in vars(module).items():
        if name.startswith("_"):
            continue
        if isinstance(value, Starlette):
            names.append(f"{name} ({type(value).__name__} app)")
        elif inspect.isfunction(value) and value.__module__ == module.__name__:
            names.append(f"{name} (function)")
    return ", ".join(names) if names else "no app and no function"


def _unwrap_asgi(obj: Any) -> Starlette | None:
    """Find the Starlette app inside ASGI wrappers (``CORSMiddleware(app)``, Socket.IO's ASGIApp)."""
    current = obj
    for _ in range(_MAX_UNWRAP):
        if isinstance(current, Starlette):
            return current
        inner = getattr(current, "app", None) or getattr(current, "other_asgi_app", None)
        if inner is None or inner is current:
            return None
        current = inner
    return None


def _call_factory(factory: Any, spec: str) -> Any:
    try:
        signature = inspect.signature(factory)
    except (TypeError, ValueError):
        signature = None
    if signature is not None:
        required = [
            p.name
            for p in signature.parameters.values()
            if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)
        ]
        if required:
            raise AppLoadError(
                f"--fastapi-app={spec} names a factory that needs arguments "
                f"({', '.join(required)}). The plugin calls factories without arguments: point "
                "--fastapi-app at the app object, or at a factory whose parameters all have defaults."
            )
    try:
        result = factory()
    except BaseException as exc:
        if isinstance(exc, KeyboardInterrupt):
            raise
        raise AppLoadError(
            f"--fastapi-app={spec}: calling the app factory raised {describe(exc)}. "
            "This is an error in the app's own code or configuration; fix it so that the factory "
            "returns an app when called without arguments.",
            _app_frames_only(exc),
        ) from None
    if inspect.isawaitable(result):
        close = getattr(result, "close", None)
        if close is not None:
            close()
        raise AppLoadError(
            f"--fastapi-app={spec} names an async factory. The plugin calls factories "
            "synchronously: point --fastapi-app at the app object or at a plain function."
        )
    return result


def load_app(spec: str, app_dir: Path) -> LoadedApp:
    """Import ``spec`` from ``app_dir`` and return the app (calling it first if it is a factory)."""
    module_name, attr_path = parse_spec(spec)
    if not app_dir.is_dir():
        raise AppLoadError(
            f"--fastapi-app-dir {app_dir} is not a folder. Point it at the folder that contains "
            "the top-level package of your app (default: pytest's rootdir)."
        )
    app_dir_text = str(app_dir)
    if app_dir_text not in sys.path:
        sys.path.insert(0, app_dir_text)
    module = import_app_module(module_name, spec, app_dir)

    target: Any = module
    for part in attr_path.split("."):
        if not hasattr(target, part):
            raise AppLoadError(
                f"--fastapi-app={spec}: module {module_name!r} ({getattr(module, '__file__', '?')}) "
                f"has no attribute {attr_path!r}. It defines: {_describe_candidates(module)}. "
                "Name the FastAPI app object or the function that creates it."
            )
        target = getattr(target, part)

    app = _unwrap_asgi(target)
    from_factory = False
    if app is None and callable(target) and not inspect.isclass(target):
        from_factory = True
        built = _call_factory(target, spec)
        app = _unwrap_asgi(built)
        if app is None:
            raise AppLoadError(
                f"--fastapi-app={spec}: the factory returned {type(built).__name__}, not a "
                "FastAPI (or Starlette) app. Return the app from the factory, or point "
                "--fastapi-app at the app object."
            )
    if app is None:
        raise AppLoadError(
            f"--fastapi-app={spec} is a {type(target).__name__}, not a FastAPI app or a factory "
            f"that returns one. Module {module_name!r} defines: {_describe_candidates(module)}."
        )
    return LoadedApp(spec=spec, module=module, app=app, target=target, from_factory=from_factory)
