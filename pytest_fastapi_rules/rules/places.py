"""Where an object the plugin discovered lives in the app's code: how to name it in a message and
which ``file:line`` to point at (the engine and session-factory rules, and the probe rules' engines).
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import sys
from pathlib import Path
from typing import Any

from pytest_fastapi_rules.facts import AppFacts, unwrap_callable
from pytest_fastapi_rules.registry import Location
from pytest_fastapi_rules.rules.common import _lifespan_parts
from pytest_fastapi_rules.sqla import engine_key, is_session_factory, is_sync_engine

#: Calls that create what discovery finds: engines and session factories.
_ENGINE_CALLS = frozenset({"create_engine", "create_async_engine"})


_FACTORY_CALLS = frozenset({"sessionmaker", "async_sessionmaker", "scoped_session", "async_scoped_session"})


def _called_name(node: ast.AST) -> str | None:
    if isinstance(node, ast.Call):
        func = node.func
        if isinstance(func, ast.Name):
            return func.id
        if isinstance(func, ast.Attribute):
            return func.attr
    return None


@functools.lru_cache(maxsize=256)
def _assignments(file: str) -> dict[str, tuple[int, frozenset[str]]]:
    """First top-level assignment of each name in a module's source: its line, and the names of
    the calls its value makes (``engine = create_async_engine(...)`` -> ``{create_async_engine}``)."""
    try:
        tree = ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return {}
    found: dict[str, tuple[int, frozenset[str]]] = {}
    for node in tree.body:
        targets: list[ast.expr] = []
        value: ast.expr | None = None
        if isinstance(node, ast.Assign):
            targets, value = list(node.targets), node.value
        elif isinstance(node, ast.AnnAssign) and node.value is not None:
            targets, value = [node.target], node.value
        if not targets or value is None:
            continue
        calls = frozenset(name for n in ast.walk(value) if (name := _called_name(n)))
        for target in targets:
            if isinstance(target, ast.Name):
                found.setdefault(target.id, (node.lineno, calls))
    return found


def _same_object(first: Any, second: Any) -> bool:
    """One engine (an AsyncEngine and its sync_engine count as one), or the very same object."""
    if first is second:
        return True
    key = engine_key(first)
    return key is not None and key == engine_key(second)


def _split_where(where: str) -> tuple[str, list[str]] | None:
    """``module.name`` (or the ini form ``module:name``) -> ``(module, [name, ...])``."""
    path = where.split(" ", 1)[0]
    if ":" in path:
        module_name, _, attr_text = path.partition(":")
        return module_name, attr_text.split(".")
    parts = path.split(".")
    for cut in range(len(parts) - 1, 0, -1):
        if ".".join(parts[:cut]) in sys.modules:
            return ".".join(parts[:cut]), parts[cut:]
    return None


def _defining_global(facts: AppFacts, obj: Any, first: tuple[str, str] | None) -> tuple[str, str] | None:
    """The ``(module, name)`` that creates ``obj``, among the own modules that hold it.

    Discovery meets an engine in the first module (by name) that holds it, often one that only
    imports it (``from app.core.db import engine`` in ``app/api/deps.py``). Every own module's
    globals are searched for the same object; the module whose top level assigns it from
    ``create_engine``/``create_async_engine`` (``sessionmaker``... for a factory) wins, then one
    that assigns it from any call, then ``first`` (the holder discovery met), then any holder.
    """
    creators = _ENGINE_CALLS | _FACTORY_CALLS
    best, best_score = first, -1.0
    for module in facts.own_modules:
        file = getattr(module, "__file__", None)
        for name, value in list(vars(module).items()):
            if name.startswith("__") or not _same_object(value, obj):
                continue
            assigned = _assignments(str(file)).get(name) if file else None
            score = 0.0 if assigned is None else 2.0 if assigned[1] & creators else 1.0
            if (module.__name__, name) == first:
                score += 0.5  # among equals, the holder discovery met first
            if score > best_score:
                best, best_score = (module.__name__, name), score
    return best


def _lifespan_creation(facts: AppFacts, obj: Any) -> Location | None:
    """Where the app's lifespan creates a lifespan-state or ``app.state`` object: the line of the
    creating call in the lifespan's source (``create_async_engine(`` for an engine), else the
    lifespan's ``def``."""
    router = getattr(facts.app, "router", None)
    context = getattr(router, "lifespan_context", None)
    if context is None:
        return None
    wanted = _ENGINE_CALLS if hasattr(obj, "sync_engine") or is_sync_engine(obj) else _FACTORY_CALLS
    pattern = re.compile(r"\b(" + "|".join(sorted(wanted)) + r")\s*\(")
    for part in _lifespan_parts(context):
        function = unwrap_callable(part)
        if not inspect.isfunction(function) or not facts.is_own_object(function):
            continue
        try:
            lines, start = inspect.getsourcelines(function)
            file = inspect.getsourcefile(function)
        except (OSError, TypeError):
            continue
        if not file:
            continue
        for offset, text in enumerate(lines):
            if pattern.search(text) and not text.lstrip().startswith("#"):
                return Location(file=facts.relative(file), line=start + offset)
        return facts.location_of(function)
    return None


def _state_object(facts: AppFacts, where: str) -> Any:
    """The object behind an ``app.state.x`` or ``lifespan state['x']`` path (its bind for
    ``... (bind)``), or None."""
    match = re.match(r"lifespan state\[(?P<key>.+?)\]", where)
    value: Any = None
    if match:
        try:
            key = ast.literal_eval(match.group("key"))
        except (ValueError, SyntaxError):
            return None
        if not getattr(facts.runtime, "started", False):
            return None  # the lifespan has stopped (the probe run stops it), and its state with it
        state = facts.runtime.lifespan_state
        value = state.get(key) if isinstance(state, dict) else None
    elif where.startswith("app.state."):
        state = getattr(getattr(facts.app, "state", None), "_state", None) or {}
        value = state.get(where.split(" ", 1)[0][len("app.state.") :])
    if value is not None and where.endswith(" (bind)"):
        value = getattr(value, "kw", {}).get("bind")
    return value


def place_of_where(facts: AppFacts, where: str, found: Any = None) -> tuple[str, Location | None]:
    """How to name a discovered object's path in a message, and where it is in the app's code.

    ``module.name`` (or the ini form ``module:name``) is followed to the module that creates the
    object (see :func:`_defining_global`) and points at that assignment; ``module.obj.attr``
    points at the class of ``obj`` when it is the app's own (a session manager); ``app.state``
    and lifespan-state objects point at the line of the lifespan that creates them. ``found`` is
    the object discovery found there, if the caller has it: the lifespan state it came from is gone
    once the app stops.
    """
    suffix = " (bind)" if where.endswith(" (bind)") else ""
    if where.startswith(("app.state.", "lifespan state")):
        obj = found if found is not None else _state_object(facts, where)
        return where, _lifespan_creation(facts, obj) if obj is not None else None
    split = _split_where(where)
    if split is None:
        return where, None
    module_name, attrs = split
    module = sys.modules.get(module_name)
    if module is None or not attrs:
        return where, None
    if len(attrs) > 1:
        holder = getattr(module, attrs[0], None)
        if holder is not None and facts.is_own_object(type(holder)):
            return where, facts.location_of(type(holder))
    obj = getattr(module, attrs[0], None)
    shown = where
    bind = getattr(obj, "kw", {}).get("bind") if suffix and is_session_factory(obj) else None
    held = _defining_global(facts, bind, None) if bind is not None else None
    if held is not None:
        # The engine a session factory is bound to, held as a global of its own: name that.
        module_name, attrs = held[0], [held[1]]
        module = sys.modules.get(module_name, module)
        shown = f"{module_name}.{attrs[0]}"
    elif obj is not None and len(attrs) == 1 and ":" not in where:
        defining = _defining_global(facts, obj, (module_name, attrs[0]))
        if defining is not None and defining != (module_name, attrs[0]):
            module_name, attrs = defining[0], [defining[1]]
            module = sys.modules.get(module_name, module)
            shown = f"{module_name}.{attrs[0]}{suffix}"
    file = getattr(module, "__file__", None)
    if not file:
        return shown, None
    assigned = _assignments(str(file)).get(attrs[0])
    return shown, Location(file=facts.relative(file), line=assigned[0] if assigned else None)


def location_of_where(facts: AppFacts, where: str) -> Location | None:
    """Best-effort place in the app's code for a discovered object's path (see
    :func:`place_of_where`)."""
    return place_of_where(facts, where)[1]
