"""The redirection of the app onto the isolated database the probes run against (``placement.py``).

Probes never read or write the database the app is configured with.

**Where the isolated database lives** is decided once per session by ``placement.py``: beside the
app's own PostgreSQL when its server can be reached, else an SQLite file (aiosqlite) in a temporary
folder, whose dialect is fitted to hold PostgreSQL schemas (``sqlite_fit.py``); or where
``--fastapi-rules-db-url`` says. Each start of the app gets a database of its own, created when the
first engine needs it (:class:`~pytest_fastapi_rules.probing.placement.PendingDatabase`) and dropped
at the end, also when the run fails or is interrupted (``try/finally``; an ``atexit`` hook as the
last resort).

**How the app is pointed at it** (:class:`Redirector`), for the duration of the probe run only:

1. *Engine creation is intercepted.* ``create_async_engine``, ``create_engine``,
   ``async_engine_from_config`` and ``engine_from_config`` are replaced, in SQLAlchemy's modules and
   in every loaded module that imported them by name, by a wrapper that creates the engine the app
   asked for (same pool options, ``pool_pre_ping``, ``echo``...) on the isolated database. The probes
   run the app's lifespan anew under this interception, so an engine created at startup (the
   rulebook's ``sessionmanager.init(settings.DATABASE_URL)``), or even inside a request, is isolated
   from its creation on.
2. *Engines that already exist are swapped.* Engines created at import time are found where the
   discovery of the core looks (globals of the app's modules, attributes of the app's objects held
   there, ``app.state``, the names in ``fastapi_rules_engines``), replaced there by an isolated twin
   with the same pool options, and every session factory, scoped session or module-level session
   bound to them is rebound (``factory.kw["bind"]``). A repository or readiness check that opens a
   session from the session manager therefore lands on the isolated database too.
3. *Everything else is refused.* While probes run, any statement or new connection on an engine that
   is not isolated is refused by the guard of ``counting.py`` and reported (with the app's file and
   line), so a path the redirection cannot see fails loudly instead of touching the user's data.

Everything is restored afterwards: the create functions, every swapped reference, every factory's
original ``kw``, the app's ``dependency_overrides``, and the listeners; every engine the plugin
created is disposed (an undisposed aiosqlite engine keeps the Python process from exiting).

What the redirection cannot catch (the guard then refuses the access, and the probes say so):

- an engine held only in a closure, a default argument, or the cache of an ``lru_cache``'d getter that
  was called before the probes started (no name refers to it);
- engine options passed as ``connect_args`` or ``creator`` (dropped: they are specific to the
  user's server), so behaviour that depends on them is not reproduced;
- raw driver connections (``asyncpg.connect``, ``sqlite3.connect``) that bypass SQLAlchemy: neither
  redirected nor refused.
"""

from __future__ import annotations

import contextlib
import importlib
import inspect
import os
import sys
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import create_engine as _original_create_engine
from sqlalchemy import engine_from_config as _original_engine_from_config
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import async_engine_from_config as _original_async_engine_from_config
from sqlalchemy.ext.asyncio import create_async_engine as _original_create_async_engine
from sqlalchemy.pool import NullPool, QueuePool

from pytest_fastapi_rules.facts import instance_of, namespace_of
from pytest_fastapi_rules.probing.counting import SqlMonitor, masked_url
from pytest_fastapi_rules.probing.placement import AppDatabase, IsolatedDatabase, PendingDatabase
from pytest_fastapi_rules.sqla import is_any_engine, is_scoped_session, is_session, is_session_factory

if TYPE_CHECKING:
    from pytest_fastapi_rules.facts import AppFacts

ORIGINAL_CREATE_ASYNC_ENGINE = _original_create_async_engine
ORIGINAL_CREATE_ENGINE = _original_create_engine

#: Engine options that mean the same on every backend, kept when an app's engine is redirected.
_PORTABLE_OPTIONS = frozenset(
    {
        "echo",
        "echo_pool",
        "pool_pre_ping",
        "pool_recycle",
        "pool_size",
        "max_overflow",
        "pool_timeout",
        "pool_use_lifo",
        "pool_reset_on_return",
        "poolclass",
        "json_serializer",
        "json_deserializer",
        "execution_options",
        "hide_parameters",
        "logging_name",
        "pool_logging_name",
        "query_cache_size",
        "insertmanyvalues_page_size",
        "future",
        "_coerce_config",
    }
)
_SAME_BACKEND_OPTIONS = frozenset({"isolation_level"})
_CREATE_NAMES = ("create_async_engine", "create_engine", "async_engine_from_config", "engine_from_config")
_PLUGIN_PACKAGE = __name__.split(".")[0]


# -- redirection ------------------------------------------------------------------------------------


@dataclass
class RedirectedEngine:
    """An isolated engine the plugin created, and what the app had asked for."""

    engine: AsyncEngine | Engine
    requested: str
    #: Where the app holds it (or "created by the app" for intercepted creations).
    where: str
    disposed: bool = False
    #: The engine as the app configured it, never connected: the app's own object for a twin, or
    #: an engine built from the app's own URL and options for an intercepted creation. Rules that
    #: judge engine settings (FR5xx) read this one. None when it could not be built (no driver).
    original: Any = None

    @property
    def sync_engine(self) -> Engine:
        return self.engine.sync_engine if isinstance(self.engine, AsyncEngine) else self.engine


@dataclass
class _Restore:
    description: str
    undo: Callable[[], None]


class Redirector:
    """Points every way the app reaches its database at the isolated one, and undoes it all."""

    def __init__(self, pending: PendingDatabase, monitor: SqlMonitor) -> None:
        #: The start's throwaway database, created when the first engine needs it: the first
        #: engine the app holds or creates names the database the probes follow (``placement.py``).
        self.pending = pending
        self.monitor = monitor
        self.engines: list[RedirectedEngine] = []
        self._restores: list[_Restore] = []
        self._twins: dict[tuple[int, bool], AsyncEngine | Engine] = {}
        self._local = threading.local()
        self._patched = False

    # -- engine creation ----------------------------------------------------------------------------

    def _redirected_kwargs(
        self, database: IsolatedDatabase, requested: URL | None, url: URL, kwargs: dict[str, Any]
    ) -> dict[str, Any]:
        same_backend = requested is not None and requested.get_backend_name() == url.get_backend_name()
        kept = {
            key: value
            for key, value in kwargs.items()
            if key in _PORTABLE_OPTIONS or (same_backend and key in _SAME_BACKEND_OPTIONS)
        }
        connect_args = database.connect_args(url.get_driver_name())
        if connect_args:
            kept["connect_args"] = connect_args
        # The pool the engine will really have: the app's, or the probe database's default (SQLite
        # files get a NullPool before SQLAlchemy 2.0.38), which takes no sizing options.
        poolclass = kept.get("poolclass")
        if poolclass is None:
            with contextlib.suppress(Exception):
                poolclass = url.get_dialect().get_pool_class(url)  # type: ignore[attr-defined]
        if poolclass is not None and not (isinstance(poolclass, type) and issubclass(poolclass, QueuePool)):
            for key in ("pool_size", "max_overflow", "pool_timeout", "pool_use_lifo"):
                kept.pop(key, None)
        return kept

    def _unconnected(self, requested: Any, kwargs: dict[str, Any], is_async: bool) -> Any:
        """The engine exactly as the app asked for it; creating an engine does not connect."""
        if requested is None:
            return None
        self._local.inside = True
        try:
            create = _original_create_async_engine if is_async else _original_create_engine
            return create(requested, **kwargs)
        except Exception:  # noqa: BLE001 - a driver that is not installed: fall back to the twin
            return None
        finally:
            self._local.inside = False

    def original_of(self, engine: Any) -> Any:
        """The app's own configuration of ``engine`` if it is one of ours, else ``engine`` itself."""
        sync_engine = getattr(engine, "sync_engine", engine)
        for redirected in self.engines:
            if redirected.sync_engine is sync_engine and redirected.original is not None:
                return redirected.original
        return engine

    def create_isolated(
        self,
        requested: Any,
        kwargs: dict[str, Any],
        *,
        is_async: bool,
        where: str,
        original: Any = None,
    ) -> AsyncEngine | Engine:
        """Create the engine the app asked for, on the isolated database, and track it."""
        try:
            requested_url: URL | None = make_url(requested) if requested is not None else None
        except Exception:  # noqa: BLE001 - an unparsable URL: the app would have failed too
            requested_url = None
        hint = AppDatabase(requested_url, where) if requested_url is not None else None
        database = self.pending.get(hint)
        url = database.url_for(requested_url, is_async)
        options = self._redirected_kwargs(database, requested_url, url, kwargs)
        self._local.inside = True
        try:
            if is_async:
                engine: AsyncEngine | Engine = _original_create_async_engine(url, **options)
            else:
                engine = _original_create_engine(url, **options)
        finally:
            self._local.inside = False
        database.tune(engine)
        redirected = RedirectedEngine(
            engine=engine,
            requested=masked_url(requested_url) if requested_url is not None else "?",
            where=where,
            original=original if original is not None else self._unconnected(requested, kwargs, is_async),
        )
        self.engines.append(redirected)
        self.monitor.allow(redirected.sync_engine)
        from sqlalchemy import event

        def _disposed(_engine: Any, redirected: RedirectedEngine = redirected) -> None:
            redirected.disposed = True

        event.listen(redirected.sync_engine, "engine_disposed", _disposed)
        return engine

    def _wrap(self, name: str, original: Callable[..., Any]) -> Callable[..., Any]:
        is_async = "async" in name
        from_config = name.endswith("from_config")

        def create(*args: Any, **kwargs: Any) -> Any:
            if getattr(self._local, "inside", False):
                return original(*args, **kwargs)
            where = _caller()
            if from_config:
                configuration = dict(args[0] if args else kwargs.pop("configuration", {}))
                prefix = args[1] if len(args) > 1 else kwargs.pop("prefix", "sqlalchemy.")
                options = {
                    key[len(prefix) :]: value
                    for key, value in configuration.items()
                    if key.startswith(prefix)
                }
                options.update(kwargs)
                requested = options.pop("url", None)
                options["_coerce_config"] = True
            else:
                requested = args[0] if args else kwargs.pop("url", None)
                options = dict(kwargs)
            return self.create_isolated(requested, options, is_async=is_async, where=where)

        create.__wrapped__ = original  # type: ignore[attr-defined]
        create.__name__ = name
        return create

    def patch_creation(self) -> None:
        """Replace the engine-creating functions wherever a loaded module refers to them by name."""
        if self._patched:
            return
        originals: dict[str, Callable[..., Any]] = {
            "create_async_engine": _original_create_async_engine,
            "create_engine": _original_create_engine,
            "async_engine_from_config": _original_async_engine_from_config,
            "engine_from_config": _original_engine_from_config,
        }
        wrappers = {name: self._wrap(name, function) for name, function in originals.items()}
        for module_name, module in list(sys.modules.items()):
            if module is None or module_name.split(".")[0] == _PLUGIN_PACKAGE:
                continue
            namespace = getattr(module, "__dict__", None)
            if not isinstance(namespace, dict):
                continue
            for name in _CREATE_NAMES:
                if namespace.get(name) is originals[name]:
                    self._set(module, name, wrappers[name], f"{module_name}.{name}")
        self._patched = True

    # -- existing engines and factories -------------------------------------------------------------

    def twin_of(self, engine: AsyncEngine | Engine, where: str) -> AsyncEngine | Engine:
        """The isolated twin of an existing engine (one per engine and kind), same pool options."""
        is_async = isinstance(engine, AsyncEngine)
        sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine
        if self.monitor.is_isolated(sync_engine):
            return engine
        key = (id(sync_engine), is_async)
        if key not in self._twins:
            pool = sync_engine.pool
            options: dict[str, Any] = {
                "pool_pre_ping": bool(getattr(pool, "_pre_ping", False)),
                "echo": sync_engine.echo,
            }
            recycle = getattr(pool, "_recycle", -1)
            if isinstance(recycle, int | float) and recycle > 0:
                options["pool_recycle"] = recycle
            if isinstance(pool, QueuePool):
                options["pool_size"] = pool.size()
                options["max_overflow"] = max(getattr(pool, "_max_overflow", 10), 0)
                options["pool_timeout"] = getattr(pool, "_timeout", 30)
            elif isinstance(pool, NullPool):
                options["poolclass"] = NullPool
            self._twins[key] = self.create_isolated(
                sync_engine.url, options, is_async=is_async, where=where, original=engine
            )
        return self._twins[key]

    def _set(self, container: Any, name: str, value: Any, description: str) -> None:
        if isinstance(container, dict):
            had = name in container
            old = container.get(name)
            container[name] = value

            def undo_item(container: dict[Any, Any] = container, had: bool = had) -> None:
                if had:
                    container[name] = old
                else:
                    container.pop(name, None)

            self._restores.append(_Restore(description, undo_item))
            return
        old = container.__dict__[name] if name in namespace_of(container) else getattr(container, name)
        setattr(container, name, value)
        self._restores.append(_Restore(description, lambda: setattr(container, name, old)))

    def _rebind_factory(self, factory: Any, where: str) -> bool:
        """Point a session factory's bind (and binds) at isolated engines; True if it changed."""
        kw = getattr(factory, "kw", None)
        if not isinstance(kw, dict):
            return False
        new_kw = dict(kw)
        changed = False
        bind: Any = kw.get("bind")
        if is_any_engine(bind):
            twin = self.twin_of(bind, f"{where} (bind)")
            if twin is not bind:
                new_kw["bind"] = twin
                changed = True
        binds = kw.get("binds")
        if isinstance(binds, dict):
            new_binds = {
                key: (self.twin_of(value, f"{where} (binds)") if is_any_engine(value) else value)
                for key, value in binds.items()
            }
            if any(new_binds[key] is not binds[key] for key in binds):
                new_kw["binds"] = new_binds
                changed = True
        if changed:
            original = dict(kw)
            kw.clear()
            kw.update(new_kw)

            def undo(kw: dict[str, Any] = kw, original: dict[str, Any] = original) -> None:
                kw.clear()
                kw.update(original)

            self._restores.append(_Restore(f"{where}.kw", undo))
        return changed

    def redirect_object(self, container: Any, name: str, value: Any, where: str) -> None:
        """Redirect one reference ``container.name`` (or ``container[name]``) found holding ``value``."""
        if is_any_engine(value):
            twin = self.twin_of(value, where)
            if twin is not value:
                self._set(container, name, twin, where)
        elif is_session_factory(value):
            self._rebind_factory(value, where)
        elif is_scoped_session(value):
            factory = getattr(value, "session_factory", None)
            if factory is not None:
                self._rebind_factory(factory, f"{where}.session_factory")
        elif is_session(value):
            target = getattr(value, "sync_session", value)
            bind: Any = getattr(target, "bind", None)
            if is_any_engine(bind):
                twin = self.twin_of(bind, f"{where}.bind")
                if twin is not bind:
                    self._set(target, "bind", twin, f"{where}.bind")

    def redirect_existing(
        self, facts: AppFacts, engine_paths: tuple[str, ...], factory_paths: tuple[str, ...]
    ) -> None:
        """Swap the engines, factories and sessions the app already holds (see module docstring)."""
        for where, container, name, value in _references(facts, engine_paths + factory_paths):
            with contextlib.suppress(AttributeError, TypeError):
                self.redirect_object(container, name, value, where)

    def unredirected(self, facts: AppFacts) -> list[str]:
        """Where the app still holds an engine that is not isolated (should be empty)."""
        left: list[str] = []
        for where, _container, _name, value in _references(facts, ()):
            if is_any_engine(value):
                engine = value.sync_engine if isinstance(value, AsyncEngine) else value
                if not self.monitor.is_isolated(engine):
                    left.append(where)
        return left

    # -- undo ---------------------------------------------------------------------------------------

    def restore(self) -> list[str]:
        """Undo every change, newest first; returns what could not be undone (should be nothing)."""
        failed: list[str] = []
        while self._restores:
            restore = self._restores.pop()
            try:
                restore.undo()
            except Exception as exc:  # noqa: BLE001 - keep undoing the rest
                failed.append(f"{restore.description}: {exc}")
        self._patched = False
        return failed

    async def dispose_all(self, close: bool = True) -> None:
        """Dispose every engine the plugin created (checked-out connections are invalidated).

        ``close=False`` lets go of the pooled connections without closing them, for connections
        made on a loop that is no longer running; each engine gets a few seconds at most.
        """
        import asyncio

        for redirected in self.engines:
            engine = redirected.engine
            with contextlib.suppress(Exception):
                if isinstance(engine, AsyncEngine):
                    await asyncio.wait_for(engine.dispose(close=close), 5)
                else:
                    engine.dispose(close=close)


def _caller() -> str:
    """``file:line`` of the first frame outside SQLAlchemy and the plugin (who created the engine)."""
    frame = inspect.currentframe()
    try:
        while frame is not None:
            filename = frame.f_code.co_filename
            if (
                f"{os.sep}sqlalchemy{os.sep}" not in filename
                and f"{os.sep}{_PLUGIN_PACKAGE}{os.sep}" not in filename
            ):
                return f"{filename}:{frame.f_lineno}"
            frame = frame.f_back
    finally:
        del frame
    return "?"


def _resolve(path: str) -> tuple[Any, str, Any] | None:
    module_name, _, attr = path.partition(":")
    try:
        container: Any = importlib.import_module(module_name)
        parts = attr.split(".")
        for part in parts[:-1]:
            container = getattr(container, part)
        return container, parts[-1], getattr(container, parts[-1])
    except Exception:  # noqa: BLE001 - the core reports unresolvable paths
        return None


def _registry_items(where: str, value: Any) -> Iterator[tuple[str, Any, str, Any]]:
    """The entries of a dict the app keeps its engines in (``engines = {"writer": ..., "reader":
    ...}``), as references the redirection can replace in place."""
    if instance_of(value, dict):
        for key, inner in list(value.items())[:100]:
            yield f"{where}[{key!r}]", value, key, inner


def _holds_references(facts: AppFacts, value: Any) -> bool:
    """An instance of the app's own class (a ``DatabaseSessionManager``), whose attributes may hold
    its engine; False where asking raises (a context proxy outside its context)."""
    try:
        return (
            not is_any_engine(value)
            and not is_session_factory(value)
            and not inspect.isclass(value)
            and not inspect.ismodule(value)
            and facts.is_own_object(type(value))
        )
    except Exception:  # noqa: BLE001 - a proxy's __class__ may raise anything
        return False


def _references(facts: AppFacts, paths: tuple[str, ...]) -> Iterator[tuple[str, Any, str, Any]]:
    """``(where, container, name, value)`` for every place the app may hold a database object."""
    for path in paths:
        resolved = _resolve(path)
        if resolved is not None:
            container, name, value = resolved
            yield path, container, name, value
            yield from _registry_items(path, value)
            if not (is_any_engine(value) or is_session_factory(value) or inspect.ismodule(value)):
                for attr, inner in list(namespace_of(value).items()):  # a named session manager
                    yield f"{path}.{attr}", value, attr, inner
    for module in facts.own_modules:
        for name, value in list(vars(module).items()):
            if name.startswith("__"):
                continue
            where = f"{module.__name__}.{name}"
            yield where, module, name, value
            yield from _registry_items(where, value)
            if _holds_references(facts, value):
                for attr, inner in list(namespace_of(value).items()):
                    yield f"{where}.{attr}", value, attr, inner
    state = getattr(getattr(facts.app, "state", None), "_state", None)
    if isinstance(state, dict):
        for key, value in list(state.items()):
            yield f"app.state.{key}", state, key, value


@dataclass
class OverrideSet:
    """Entries the probes put into ``app.dependency_overrides``, removed again by :meth:`restore`."""

    overrides: dict[Any, Any]
    #: The entries as found (restored at the end).
    snapshot: dict[Any, Any] = field(default_factory=dict)
    #: The entries the probes start from (the app's own, as loaded).
    baseline: dict[Any, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.snapshot = dict(self.overrides)
        self.baseline = dict(self.overrides)

    def reset_to(self, entries: dict[Any, Any]) -> None:
        """Probe the app as it was loaded: overrides the user's tests left behind are put aside."""
        self.baseline = dict(entries)
        self.overrides.clear()
        self.overrides.update(entries)

    def set(self, call: Any, replacement: Any) -> None:
        self.overrides[call] = replacement

    def unset(self, call: Any) -> None:
        if call in self.baseline:
            self.overrides[call] = self.baseline[call]
        else:
            self.overrides.pop(call, None)

    @contextlib.contextmanager
    def temporarily(self, call: Any, replacement: Any) -> Iterator[None]:
        """Override ``call`` inside the block, then put back exactly what was there before.

        Not :meth:`unset`: when ``call`` already carries the probes' own override (the probe user
        replacing ``get_current_user``), unsetting would drop it, and every later request of the
        run would go out unauthenticated (FR511 then compared two 401s).
        """
        had = call in self.overrides
        previous = self.overrides.get(call)
        self.set(call, replacement)
        try:
            yield
        finally:
            if had:
                self.overrides[call] = previous
            else:
                self.overrides.pop(call, None)

    def restore(self) -> None:
        """Put the dict back exactly as the probes found it (same object, same entries)."""
        self.overrides.clear()
        self.overrides.update(self.snapshot)
