"""Facts about the app under check, gathered once per session and shared by every rule.

Static facts (routes with their dependants, middleware, exception handlers, ORM models, settings) are
read off the imported app object. Runtime facts (engines and session factories, which apps usually
create in their lifespan) are found after the lifespan has started, by ``discovery.py``.
"""

from __future__ import annotations

import functools
import inspect
import linecache
import re
import sys
import sysconfig
import types
import typing
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, UnionType
from typing import Any, Generic, TypeVar, cast

from fastapi.dependencies.models import Dependant
from fastapi.security.base import SecurityBase
from pydantic import BaseModel
from starlette.applications import Starlette

from pytest_fastapi_rules.compat import (
    EffectiveRoute,
    iter_effective_routes,
    middleware_class,
    middleware_options,
)
from pytest_fastapi_rules.loading import LoadedApp
from pytest_fastapi_rules.registry import Location
from pytest_fastapi_rules.runtime import AppRuntime

_LIBRARY_ROOTS = tuple(
    str(Path(p).resolve())
    for p in {
        sysconfig.get_paths()["purelib"],
        sysconfig.get_paths()["platlib"],
        sysconfig.get_paths()["stdlib"],
    }
)
#: Test modules: imported in the same process, never the app's code.
TEST_MODULE = re.compile(r"(^|\.)(tests?|conftest|test_[^.]*|[^.]*_tests?)(\.|$)")
#: Top-level packages that are never the app's code even when installed from a checkout.
NEVER_APP_CODE = frozenset({"pytest_fastapi_rules", "_pytest", "pytest", "pluggy"})


def _globals_of(modules: list[ModuleType]) -> Iterator[tuple[str, Any]]:
    for module in modules:
        for name, value in list(vars(module).items()):
            if not name.startswith("__"):
                yield f"{module.__name__}.{name}", value


def unwrap_callable(func: Any) -> Any:
    """The function behind partials and decorators (``functools.wraps``), for locating and judging."""
    seen = 0
    while seen < 32:
        seen += 1
        if isinstance(func, functools.partial):
            func = func.func
            continue
        wrapped = getattr(func, "__wrapped__", None)
        if wrapped is not None and wrapped is not func:
            func = wrapped
            continue
        break
    return func


def is_subclass(tp: Any, base: type | tuple[type, ...]) -> bool:
    """``issubclass`` read from the class's MRO, and False for what is not a plain class.

    On Python 3.10 a generic alias (``list[int]``, ``AsyncIterator[AsyncSession]``) passes
    ``isinstance(x, type)`` and makes ``issubclass`` raise; annotations are full of them.

    The MRO, not ``issubclass``: pydantic's ``BaseModel`` and ``BaseSettings`` are ABCs, and before
    pydantic 2.10 asking whether a class that is not a model is one walks every model class of the
    process (1.3 s for 1,000 plain classes against 600 models; 2.5 s of a real app's run, issue #20).
    Virtual subclasses (``ABC.register``) do not count; none of the bases the plugin asks about has any.
    """
    if not isinstance(tp, type) or typing.get_origin(tp) is not None:
        return False
    mro = tp.__mro__
    return any(each in mro for each in base) if isinstance(base, tuple) else base in mro


def namespace_of(obj: Any) -> dict[str, Any]:
    """An object's own attributes (``vars()``), or an empty dict when it has none.

    Not ``getattr(obj, "__dict__", {})``: an object whose ``__getattr__`` answers every name (a
    "globals" proxy that returns None for anything missing) hands back something that is not its
    namespace, and iterating it crashed the discovery and the probe run.
    """
    try:
        namespace = vars(obj)
    except Exception:  # noqa: BLE001 - TypeError without one; a context proxy raises its own error
        return {}
    return namespace if isinstance(namespace, dict) else {}


def is_coroutine_callable(call: Any) -> bool:
    """Whether FastAPI runs ``call`` on the event loop (as FastAPI itself decides it)."""
    while isinstance(call, functools.partial):
        call = call.func
    if inspect.iscoroutinefunction(call) or inspect.isasyncgenfunction(call):
        return True
    if inspect.isroutine(call) or inspect.isclass(call):
        return False
    dunder_call = getattr(call, "__call__", None)  # noqa: B004 - callable instances
    return inspect.iscoroutinefunction(dunder_call) or inspect.isasyncgenfunction(dunder_call)


def type_hints(func: Any) -> dict[str, Any]:
    """Resolved annotations of ``func`` (with ``Annotated`` extras), or the raw ones if unresolvable."""
    target = func
    if not (inspect.isfunction(target) or inspect.ismethod(target)):
        target = getattr(func, "__call__", func)  # noqa: B004
    try:
        return typing.get_type_hints(target, include_extras=True)
    except Exception:  # noqa: BLE001 - forward references the app never resolved
        return dict(getattr(target, "__annotations__", {}) or {})


def plain_annotation(annotation: Any) -> Any:
    """The type behind ``Annotated[...]`` and ``Optional[...]`` (a one-member union with None)."""
    while True:
        origin = typing.get_origin(annotation)
        if origin is typing.Annotated:
            annotation = typing.get_args(annotation)[0]
            continue
        if origin in (typing.Union, types.UnionType):
            members = [a for a in typing.get_args(annotation) if a is not type(None)]
            if len(members) == 1:
                annotation = members[0]
                continue
        return annotation


@dataclass
class RouteFacts:
    """One (method, path) of the app, as served, with what FastAPI knows about it."""

    method: str
    path: str
    effective: EffectiveRoute
    endpoint: Callable[..., Any]
    location: Location | None
    root: Path

    @property
    def target(self) -> str:
        return f"{self.method} {self.path}"

    @property
    def function(self) -> Any:
        """The endpoint function behind decorators and partials."""
        return unwrap_callable(self.endpoint)

    @property
    def name(self) -> str:
        return str(self.effective.get("name") or getattr(self.function, "__name__", "endpoint"))

    @property
    def status_code(self) -> int | None:
        code = self.effective.get("status_code")
        return int(code) if code is not None else None

    @property
    def declared_status(self) -> int:
        """The success status the route answers with (FastAPI's default is 200)."""
        return self.status_code or 200

    @property
    def response_model(self) -> Any:
        return self.effective.get("response_model")

    @property
    def response_class(self) -> Any:
        response_class = self.effective.get("response_class")
        return getattr(response_class, "value", response_class)

    @property
    def tags(self) -> list[str]:
        return [str(getattr(tag, "value", tag)) for tag in (self.effective.get("tags") or [])]

    @property
    def include_in_schema(self) -> bool:
        return bool(self.effective.get("include_in_schema", True))

    @property
    def dependant(self) -> Dependant | None:
        dependant: Dependant | None = self.effective.get("dependant")
        return dependant

    def iter_dependants(self) -> Iterator[Dependant]:
        """The endpoint's dependant and every sub-dependency, depth first, each call once."""
        root = self.dependant
        if root is None:
            return
        seen: set[int] = set()
        stack = [root]
        while stack:
            current = stack.pop()
            key = id(current.call) if current.call is not None else id(current)
            if key in seen and current is not root:
                continue
            seen.add(key)
            yield current
            stack.extend(reversed(current.dependencies))

    def security_schemes(self) -> list[SecurityBase]:
        """Security scheme objects (OAuth2, HTTP bearer, API key...) anywhere in the dependency tree."""
        schemes: list[SecurityBase] = []
        for dependant in self.iter_dependants():
            if isinstance(dependant.call, SecurityBase):
                schemes.append(dependant.call)
        return schemes

    def endpoint_type_hints(self) -> dict[str, Any]:
        return type_hints(self.endpoint)


@dataclass
class MiddlewareFacts:
    cls: Any
    options: dict[str, Any]

    @property
    def name(self) -> str:
        return getattr(self.cls, "__name__", repr(self.cls))


def middleware_of(app: Any) -> list[MiddlewareFacts]:
    """The middleware an app (the main one or a mounted one) declares, outermost last."""
    return [
        MiddlewareFacts(middleware_class(m), middleware_options(m))
        for m in getattr(app, "user_middleware", None) or []
    ]


@dataclass
class Discovered:
    """A runtime object (engine, session factory) and the path it was found at."""

    obj: Any
    where: str


@dataclass
class RuntimeFacts:
    engines: list[Discovered] = field(default_factory=list)
    session_factories: list[Discovered] = field(default_factory=list)


T = TypeVar("T")


class MemoKey(Generic[T]):
    """The key of one value in a session's :class:`Memo`, as pytest's ``StashKey`` is of its stash.

    The module that owns a cache declares its key once, at import; the value's type rides on the
    key, so ``facts.memo(KEY, compute)`` is typed without a cast, and two modules never collide on
    a name.
    """

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"MemoKey({self.name!r})"


class Memo:
    """Values computed once per session, by :class:`MemoKey`: ``facts.memo(KEY, compute)``.

    Held by the session's :class:`AppFacts`, so whatever a rule or the probes cache about the app
    dies with the session's facts: one home for every per-session cache, instead of module-global
    dictionaries keyed by the facts object, which outlive the session that filled them.
    """

    def __init__(self) -> None:
        self._values: dict[MemoKey[Any], Any] = {}

    def __call__(self, key: MemoKey[T], compute: Callable[[], T]) -> T:
        """The value of ``key``, computed by ``compute`` on first use. A ``compute`` that raises
        stores nothing, so the next call tries again; a failure that must not be retried (a probe
        run, a child process) is cached as a value by its caller."""
        if key in self._values:
            return cast(T, self._values[key])
        value = compute()
        self._values[key] = value
        return value


class AppFacts:
    """Everything the rules know about the app. Built once per session; expensive parts are lazy."""

    def __init__(self, loaded: LoadedApp, root: Path, runtime: AppRuntime) -> None:
        self.loaded = loaded
        self.app: Starlette = loaded.app
        #: ``app.dependency_overrides`` as the app was loaded, before any test ran (FR806 compares).
        overrides = getattr(self.app, "dependency_overrides", None) or {}
        self.initial_dependency_overrides: dict[Any, Any] = dict(overrides)
        self.root = root
        self.runtime = runtime
        #: The runtime facts, found once by ``discovery.runtime_facts``.
        self.runtime_facts_found: RuntimeFacts | None = None
        #: The runtime facts' failure, raised again at once by later calls (no second start).
        self.runtime_facts_error: BaseException | None = None
        #: Where this session's probe databases live (``probing.placement.DatabasePlacement``),
        #: decided once and shared by every start of the app.
        self.database_placement: Any = None
        #: What the rules and the probes compute once per session (see :class:`Memo`).
        self.memo = Memo()
        self.own_packages = self._find_own_packages()
        self.routes = self._collect_routes()

    # -- the app's own code -------------------------------------------------------------------

    def _find_own_packages(self) -> frozenset[str]:
        """Top-level packages that hold the app's code: the app module's and its endpoints'."""
        names = {self.loaded.module.__name__.split(".")[0]}
        # Each module once: a large app has many routes per module, and each test resolves paths.
        endpoint_modules = {
            getattr(unwrap_callable(effective.get("endpoint")), "__module__", None)
            for effective in iter_effective_routes(self.app)
        }
        for module_name in endpoint_modules:
            if module_name and self._is_project_module_name(module_name) and self._under_project(module_name):
                names.add(module_name.split(".")[0])
        return frozenset(names)

    def _under_project(self, module_name: str) -> bool:
        """Whether the module's file lives in the project: under the rootdir, or beside the app's
        own package. A library installed outside site-packages (``pip install --target``, a
        vendored checkout elsewhere) is not the app's code even though it is not in site-packages."""
        file = getattr(sys.modules.get(module_name), "__file__", None)
        if not file:
            return False
        resolved = Path(file).resolve()
        app_file = getattr(self.loaded.module, "__file__", None)
        roots = [self.root.resolve()]
        if app_file:
            app_path = Path(app_file).resolve()
            levels = self.loaded.module.__name__.count(".") + 1 + (app_path.name == "__init__.py")
            roots.append(app_path.parents[levels - 1])
        return any(resolved.is_relative_to(root) for root in roots)

    @staticmethod
    def _is_project_module_name(module_name: str) -> bool:
        module = sys.modules.get(module_name)
        file = getattr(module, "__file__", None)
        if not file:
            return False
        resolved = str(Path(file).resolve())
        return not resolved.startswith(_LIBRARY_ROOTS) and "site-packages" not in resolved

    def is_project_sibling(self, module_name: str) -> bool:
        """A module of the project beside the app's own packages (a sibling ``core`` package that
        holds the engines: teamhide/fastapi-boilerplate): its file is in the project, outside the
        interpreter's library folders; test modules and the plugin itself never count."""
        if self.is_own_module(module_name) or module_name.split(".")[0] in NEVER_APP_CODE:
            return False
        if TEST_MODULE.search(module_name):
            return False
        return self._is_project_module_name(module_name) and self._under_project(module_name)

    def is_own_module(self, module_name: str | None) -> bool:
        return bool(module_name) and str(module_name).split(".")[0] in self.own_packages

    def is_own_object(self, obj: Any) -> bool:
        return self.is_own_module(getattr(obj, "__module__", None))

    @functools.cached_property
    def own_modules(self) -> list[ModuleType]:
        """Imported modules of the app's own packages, sorted by name (deterministic order)."""
        modules = [
            module
            for name, module in list(sys.modules.items())
            if module is not None and self.is_own_module(name) and getattr(module, "__file__", None)
        ]
        return sorted(modules, key=lambda m: m.__name__)

    def own_globals(self) -> Iterator[tuple[str, Any]]:
        """``(module.name, value)`` for every global of every own module."""
        return _globals_of(self.own_modules)

    def sibling_globals(self) -> Iterator[tuple[str, Any]]:
        """``(module.name, value)`` for the globals of the project's modules beside the app's
        packages (``core.db.session`` beside ``app``; see :meth:`is_project_sibling`)."""
        siblings = [
            module
            for name, module in sorted(list(sys.modules.items()), key=lambda item: item[0])
            if module is not None and self.is_project_sibling(name)
        ]
        return _globals_of(siblings)

    @functools.cached_property
    def own_classes(self) -> list[type]:
        """Classes defined in the app's own modules (not merely imported into them)."""
        seen: dict[int, type] = {}
        for _, value in self.own_globals():
            if inspect.isclass(value) and self.is_own_object(value):
                seen.setdefault(id(value), value)
        return sorted(seen.values(), key=lambda c: (c.__module__, c.__qualname__))

    def relative(self, path: str | Path) -> str:
        resolved = Path(path).resolve()
        try:
            return str(resolved.relative_to(self.root))
        except ValueError:
            return str(resolved)

    def location_of(self, obj: Any) -> Location | None:
        return location_of(obj, self.root)

    @functools.cached_property
    def app_location(self) -> Location | None:
        """Where the app is defined: the fallback location of findings about the app as a whole."""
        file = getattr(self.loaded.module, "__file__", None)
        if not file:
            return None
        target = self.loaded.target
        if inspect.isfunction(target):
            return location_of(target, self.root)
        return Location(file=self.relative(file), line=1)

    # -- routes -------------------------------------------------------------------------------

    def _collect_routes(self) -> list[RouteFacts]:
        routes: list[RouteFacts] = []
        for effective in iter_effective_routes(self.app):
            if not effective.is_api_route:
                continue
            endpoint = effective.get("endpoint")
            location = location_of(endpoint, self.root)
            for method in sorted(effective.get("methods") or ()):
                routes.append(
                    RouteFacts(
                        method=method,
                        path=effective.path,
                        effective=effective,
                        endpoint=endpoint,
                        location=location,
                        root=self.root,
                    )
                )
        return routes

    # -- middleware and handlers --------------------------------------------------------------

    @functools.cached_property
    def middleware(self) -> list[MiddlewareFacts]:
        return middleware_of(self.app)

    def middleware_named(self, *names: str) -> list[MiddlewareFacts]:
        return [m for m in self.middleware if m.name in names]

    @property
    def exception_handlers(self) -> dict[Any, Callable[..., Any]]:
        return dict(getattr(self.app, "exception_handlers", {}) or {})

    # -- models -------------------------------------------------------------------------------

    @functools.cached_property
    def own_pydantic_models(self) -> list[type[BaseModel]]:
        return [c for c in self.own_classes if is_subclass(c, BaseModel) and c is not BaseModel]

    @functools.cached_property
    def mapped_classes(self) -> list[type]:
        """ORM classes of every SQLAlchemy registry that the app's own models belong to."""
        from sqlalchemy import inspect as sa_inspect
        from sqlalchemy.orm import Mapper

        registries: dict[int, Any] = {}
        for cls in self.own_classes:
            mapper: Any = sa_inspect(cls, raiseerr=False)
            if isinstance(mapper, Mapper):
                registries.setdefault(id(mapper.registry), mapper.registry)
        classes: dict[int, type] = {}
        for registry in registries.values():
            for mapper in registry.mappers:
                classes.setdefault(id(mapper.class_), mapper.class_)
        return sorted(classes.values(), key=lambda c: (c.__module__, c.__qualname__))


def location_of(obj: Any, root: Path) -> Location | None:
    """``file:line`` of a function or class, relative to ``root`` where possible."""
    target = unwrap_callable(obj)
    if not (inspect.isfunction(target) or inspect.isclass(target) or inspect.ismethod(target)):
        target = type(target)
    try:
        file = inspect.getsourcefile(target)
    except TypeError:
        return None
    if not file:
        return None
    line = _definition_line(target)
    resolved = Path(file).resolve()
    try:
        shown = str(resolved.relative_to(root))
    except ValueError:
        shown = str(resolved)
    return Location(file=shown, line=line)


def _definition_line(target: Any) -> int | None:
    """The line of the ``def``/``class`` statement itself, below any decorators (as linters report)."""
    code = getattr(target, "__code__", None)
    if inspect.isfunction(target) and code is not None:
        found = _function_definition_line(code)
        if found is not None:
            return found
    try:
        lines, start = inspect.getsourcelines(target)
    except (OSError, TypeError):
        code = getattr(target, "__code__", None)
        return code.co_firstlineno if code is not None else None
    keywords = ("class ",) if inspect.isclass(target) else ("def ", "async def ")
    for offset, text in enumerate(lines):
        if text.lstrip().startswith(keywords):
            return start + offset
    return start


def _function_definition_line(code: types.CodeType) -> int | None:
    """The ``def`` line of a function: its code starts at its first decorator, and the ``def`` is
    the first line from there that starts with one. Read from the cached lines of its file:
    ``inspect.getsourcelines`` tokenizes the whole function to find its end, once per endpoint at
    collection (0.1 s at 1,000 routes, in every xdist worker). None, for ``inspect`` to answer, when
    the file's lines cannot be read this way (a module in a zip archive) or no ``def`` is near.
    """
    start = code.co_firstlineno
    if code.co_name == "<lambda>":
        return start
    lines = linecache.getlines(code.co_filename)
    # The code's own lines cannot bound the search: a body that is only a docstring has no line
    # after the first decorator's.
    for number in range(start, min(start + _DECORATOR_LINES, len(lines)) + 1):
        if lines[number - 1].lstrip().startswith(("def ", "async def ")):
            return number
    return None


#: How far below a function's first decorator its ``def`` is looked for before asking ``inspect``.
_DECORATOR_LINES = 200


# -- engines and session factories ---------------------------------------------------------------


def instance_of(obj: Any, classes: type | UnionType) -> bool:
    """``isinstance`` that answers False where asking raises.

    Discovery and redirection look at every global of the app's modules, among them proxies whose
    every attribute access, ``__class__`` included, raises outside their context (a request-context
    ``ctx``); ``isinstance`` reads ``__class__`` when the type does not match.
    """
    try:
        return isinstance(obj, classes)
    except Exception:  # noqa: BLE001 - a proxy's __class__ may raise anything
        return False
