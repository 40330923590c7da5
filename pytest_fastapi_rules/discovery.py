"""The app's engines and session factories, found once its lifespan runs on the isolated database.

Apps usually create their engines and session factories in their lifespan, so the lifespan is started
(``probing.isolation``: redirected to a throwaway database) and the app's globals, ``app.state``, the
lifespan state and the objects named in the ini are searched. The facts found are kept on the
session's :class:`~pytest_fastapi_rules.facts.AppFacts`; this module sits above the isolated
database, which ``facts.py`` never imports.

The probe run starts the lifespan with the same redirection, and records these facts while the app
runs (:func:`record_while_running`): when it comes first, as it does in the rules' order, the
lifespan is not started a second time for them. On a real app a start can cost seconds (mealie runs
its migrations at startup).
"""

from __future__ import annotations

import importlib
import types
from collections.abc import Callable
from typing import Any

from pytest_fastapi_rules.facts import AppFacts, Discovered, RuntimeFacts, instance_of, namespace_of
from pytest_fastapi_rules.probing.isolation import IsolatedStart
from pytest_fastapi_rules.sqla import engine_key, is_session_factory
from pytest_fastapi_rules.tracebacks import raise_again


def runtime_facts(
    facts: AppFacts,
    engine_paths: tuple[str, ...],
    factory_paths: tuple[str, ...],
    db_url: str | None = None,
    db_url_source: str | None = None,
) -> RuntimeFacts:
    """Engines and session factories, found once the lifespan runs (raises AppStartupError).

    The lifespan runs with the app's databases redirected to a throwaway one (see
    ``probing.isolation``), so starting the app never touches the database it is configured
    with; each engine found is reported as the app configured it. A failure is remembered: every
    rule that needs these facts reports it at once, without starting the app again.
    """
    if facts.runtime_facts_error is not None:
        raise_again(facts.runtime_facts_error)
    if facts.runtime_facts_found is None:
        isolated = IsolatedStart(facts, db_url, db_url_source)
        try:
            isolated.start(engine_paths, factory_paths)
        except Exception as exc:
            facts.runtime_facts_error = exc
            raise
        facts.runtime_facts_found = _found_while_running(
            facts, engine_paths, factory_paths, isolated.original_of
        )
    return facts.runtime_facts_found


def record_while_running(
    facts: AppFacts,
    engine_paths: tuple[str, ...],
    factory_paths: tuple[str, ...],
    original_of: Callable[[Any], Any],
) -> None:
    """Record the runtime facts from a lifespan another step started with the same redirection.

    The probe run calls this once the app has started on its throwaway database, ``original_of``
    being its redirector's. Nothing is recorded when the facts are already known, or when discovery
    fails here: :func:`runtime_facts` then starts the app itself and reports the failure to the
    rules that read these facts, as it would have without the probe run.
    """
    if facts.runtime_facts_found is not None or facts.runtime_facts_error is not None:
        return
    try:
        found = _found_while_running(facts, engine_paths, factory_paths, original_of)
    except Exception:  # noqa: BLE001 - runtime_facts reports it, from a start of its own
        return
    facts.runtime_facts_found = found


def _found_while_running(
    facts: AppFacts,
    engine_paths: tuple[str, ...],
    factory_paths: tuple[str, ...],
    original_of: Callable[[Any], Any],
) -> RuntimeFacts:
    """What :func:`discover_runtime_objects` finds, each engine reported as the app configured it."""
    found = discover_runtime_objects(facts, engine_paths, factory_paths)
    engines: list[Discovered] = []
    seen: set[int] = set()
    for discovered in found.engines:
        original = original_of(discovered.obj)
        if id(original) not in seen:
            seen.add(id(original))
            engines.append(Discovered(original, discovered.where))
    found.engines = engines
    return found


def _resolve_path(path: str) -> Any:
    module_name, _, attr = path.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    return target


class DiscoveryError(Exception):
    """An explicitly named engine or session factory could not be resolved."""


def _held(value: Any, where: str) -> list[tuple[str, Any]]:
    """``(where, object)`` for what a holder of engines holds: a dict's entries (``engines =
    {"writer": ..., "reader": ...}``), else an object's attributes (a session manager)."""
    if instance_of(value, dict):
        return [(f"{where}[{key!r}]", inner) for key, inner in list(value.items())[:100]]
    if instance_of(value, types.ModuleType) or engine_key(value) is not None or is_session_factory(value):
        return []
    return [(f"{where}.{attr}", inner) for attr, inner in list(namespace_of(value).items())]


def _already_found(found: RuntimeFacts, named: Any) -> bool:
    """Whether ``named`` (or something it holds) was found under an earlier path."""
    values = [named, *(inner for _, inner in _held(named, ""))]
    known = {engine_key(d.obj) for d in found.engines} | {id(d.obj) for d in found.session_factories}
    return any(engine_key(v) in known or id(v) in known for v in values)


def discover_runtime_objects(
    facts: AppFacts, engine_paths: tuple[str, ...], factory_paths: tuple[str, ...]
) -> RuntimeFacts:
    """Find engines and session factories without the user naming them.

    Looks at: objects named in ini; globals of the app's own modules; attributes of objects of the
    app's own classes held in those globals (session managers); ``app.state`` and the lifespan
    state; the engine a session factory is bound to.
    """
    found = RuntimeFacts()
    engine_ids: set[int] = set()
    factory_ids: set[int] = set()

    def consider(obj: Any, where: str) -> None:
        key = engine_key(obj)
        if key is not None:
            if key not in engine_ids:
                engine_ids.add(key)
                found.engines.append(Discovered(obj, where))
            return
        if is_session_factory(obj) and id(obj) not in factory_ids:
            factory_ids.add(id(obj))
            found.session_factories.append(Discovered(obj, where))
            bind = getattr(obj, "kw", {}).get("bind")
            if bind is not None:
                consider(bind, f"{where} (bind)")

    for path in engine_paths + factory_paths:
        try:
            named = _resolve_path(path)
        except Exception as exc:  # noqa: BLE001 - reported to the user as a discovery error
            raise DiscoveryError(
                f"fastapi_rules_engines / fastapi_rules_session_factories: cannot resolve {path!r} "
                f"({type(exc).__name__}: {exc}). Use module:attribute, e.g. src.database:engine."
            ) from None
        if named is None:
            continue  # set by the lifespan: found once the app runs
        before = len(found.engines) + len(found.session_factories)
        consider(named, path)
        for where, inner in _held(named, path):
            consider(inner, where)
        if len(found.engines) + len(found.session_factories) == before and not _already_found(found, named):
            raise DiscoveryError(
                f"fastapi_rules_engines / fastapi_rules_session_factories: {path!r} is a "
                f"{type(named).__name__} that holds no SQLAlchemy engine or session factory. Name "
                "the engine itself, a session factory, or a dict or object that holds them, e.g. "
                "src.database:engine."
            )

    for where, value in [*facts.own_globals(), *facts.sibling_globals()]:
        consider(value, where)
        # A registry such as `state = {"engine": ...}`, or an object of the app's own class.
        if instance_of(value, dict) or facts.is_own_object(type(value)):
            for inner_where, inner in _held(value, where):
                consider(inner, inner_where)

    state = getattr(getattr(facts.app, "state", None), "_state", {}) or {}
    for key, value in list(state.items()):
        consider(value, f"app.state.{key}")
    if facts.runtime.started:
        for key, value in list(facts.runtime.lifespan_state.items()):
            consider(value, f"lifespan state[{key!r}]")
    return found
