"""FR1xx: application wiring (the main.py template, Rule #5 lifespan)."""

from __future__ import annotations

import ast
import inspect
import re
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from starlette.applications import Starlette
from starlette.routing import Mount, Router

from pytest_fastapi_rules.compat import iter_effective_routes
from pytest_fastapi_rules.facts import AppFacts, RouteFacts, unwrap_callable
from pytest_fastapi_rules.options import BARE_VERSION_PREFIX, DEFAULT_VERSION_PREFIX
from pytest_fastapi_rules.registry import (
    Basis,
    CheckContext,
    Finding,
    Location,
    RuleSkipped,
    Scope,
    Severity,
    rule,
)
from pytest_fastapi_rules.rules.common import _lifespan_parts, is_api_route
from pytest_fastapi_rules.rules.probe_support import PROBES_UNAVAILABLE, _probe

# -- shared helpers -------------------------------------------------------------------------------

#: Module name parts that mark a module as test code, not app code (the user's suite, conftest).
_TEST_MODULE = re.compile(r"(^|\.)(tests?|conftest|test_[^.]*|[^.]*_tests?)(\.|$)")
#: Top-level packages that are never the app's code even when installed from a checkout.
_NEVER_APP_CODE = frozenset({"pytest_fastapi_rules", "_pytest", "pytest", "pluggy"})


def is_app_code_module(facts: AppFacts, module_name: str | None) -> bool:
    """Whether ``module_name`` is the app's code, in a wider sense than ``facts.is_own_module``.

    ``facts.own_packages`` only knows the app module's top-level package and its endpoints'. Real
    projects keep shared code beside them: a sibling ``core``/``common`` package, or an internal
    library installed editable from the same repository. Those are the app's own code too, so a
    module also counts when its file lives outside the interpreter's library folders. Test modules
    (``tests.*``, ``conftest``, ``test_*``) and the plugin itself never count: they are imported in
    the same process but say nothing about the app.
    """
    if not module_name:
        return False
    if facts.is_own_module(module_name):
        return True
    if module_name.split(".")[0] in _NEVER_APP_CODE or _TEST_MODULE.search(module_name):
        return False
    module = sys.modules.get(module_name)
    file = getattr(module, "__file__", None)
    if not file:
        return False
    return bool(getattr(AppFacts, "_is_project_module_name", lambda _name: False)(module_name))


_FASTAPI_CALL = re.compile(r"\b(FastAPI|Starlette)\s*\(")


def _names_bound_to(module: Any, obj: Any) -> list[str]:
    """Global names of ``module`` that hold ``obj`` (``app``, ``api_v1``...)."""
    try:
        items = list(vars(module).items())
    except TypeError:
        return []
    return [name for name, value in items if value is obj]


def _creation_line(facts: AppFacts, module: Any, names: list[str]) -> Location | None:
    """The ``FastAPI(``/``Starlette(`` call in ``module`` that builds the app held by ``names``.

    Prefers a call assigned to one of ``names`` (``app = FastAPI(``); otherwise the first call.
    """
    file = getattr(module, "__file__", None)
    if not file or Path(file).suffix != ".py":
        return None
    try:
        lines = Path(file).read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return None
    calls: list[tuple[int, str]] = []
    for number, text in enumerate(lines, start=1):
        match = _FASTAPI_CALL.search(text)
        if match is not None and not text.lstrip().startswith("#"):
            calls.append((number, text[: match.start()]))
    for name in names:
        assigned = re.compile(rf"(^|[\s,(]){re.escape(name)}\s*(:[^=]*)?=\s*$")
        for number, before in calls:
            if assigned.search(before):
                return Location(file=facts.relative(file), line=number)
    if calls:
        return Location(file=facts.relative(file), line=calls[0][0])
    return None


def app_creation_location(facts: AppFacts) -> Location | None:
    """Where the app is built: the ``FastAPI(`` call, followed into a factory when there is one.

    App-level findings about wiring (handlers, middleware) are fixed where the app is created, so
    that is where they point when there is no more specific object to blame. In order: a
    ``FastAPI(`` call in the app's module (the one assigned to the app's name first); the
    ``FastAPI(`` call inside the factory the spec names (``src.main:create_app``) or that the
    module calls to build the app (``app = create_application(...)`` with the factory in another
    module); that factory's ``def``; the module's assignment of the app; its first line.
    """
    module = facts.loaded.module
    bound = _names_bound_to(module, facts.app)
    names = [*bound, "app", "application"]
    found = _creation_line(facts, module, names)
    if found is not None:
        return found
    factories = [facts.loaded.target] if facts.loaded.from_factory else []
    factories += _factories_called_for(module, bound or ["app", "application"])
    for factory in factories:
        found = _creation_line_in(facts, factory)
        if found is not None:
            return found
    for factory in factories:
        found = facts.location_of(factory)
        if found is not None:
            return found
    file = getattr(module, "__file__", None)
    if not file:
        return None
    line = _assignment_line(file, bound or ["app", "application"])
    return Location(file=facts.relative(file), line=line or 1)


def _module_tree(file: str) -> ast.Module | None:
    try:
        return ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _assignment_line(file: str, names: list[str]) -> int | None:
    """The line of the module's first top-level assignment to one of ``names``."""
    tree = _module_tree(file)
    if tree is None:
        return None
    for node in tree.body:
        targets = (
            node.targets
            if isinstance(node, ast.Assign)
            else [node.target]
            if isinstance(node, ast.AnnAssign)
            else []
        )
        if any(isinstance(t, ast.Name) and t.id in names for t in targets):
            return node.lineno
    return None


def _factories_called_for(module: Any, names: list[str]) -> list[Any]:
    """The functions whose call the module assigns to the app's name (``app = create_application()``)."""
    file = getattr(module, "__file__", None)
    tree = _module_tree(file) if file and Path(file).suffix == ".py" else None
    if tree is None:
        return []
    found: list[Any] = []
    for node in tree.body:
        if not isinstance(node, ast.Assign | ast.AnnAssign) or not isinstance(node.value, ast.Call):
            continue
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        if not any(isinstance(t, ast.Name) and t.id in names for t in targets):
            continue
        func: ast.expr = node.value.func
        chain: list[str] = []
        while isinstance(func, ast.Attribute):
            chain.insert(0, func.attr)
            func = func.value
        if not isinstance(func, ast.Name):
            continue
        target: Any = vars(module).get(func.id)
        for attr in chain:
            target = getattr(target, attr, None)
        if callable(target) and not inspect.isclass(target):
            found.append(target)
    return found


def _creation_line_in(facts: AppFacts, factory: Any) -> Location | None:
    """The ``FastAPI(``/``Starlette(`` call inside a factory function's source."""
    function = unwrap_callable(factory)
    try:
        lines, start = inspect.getsourcelines(function)
        file = inspect.getsourcefile(function)
    except (OSError, TypeError):
        return None
    if not file:
        return None
    for offset, text in enumerate(lines):
        if _FASTAPI_CALL.search(text) and not text.lstrip().startswith("#"):
            return Location(file=facts.relative(file), line=start + offset)
    return None


def mounted_apps(app: Any, prefix: str = "", depth: int = 0) -> Iterator[tuple[str, Starlette]]:
    """Apps mounted under ``app`` (``app.mount("/v1", v1_app)``), with their full mount paths.

    A mounted app has its own exception handlers and its own ServerErrorMiddleware, and Starlette
    never sends it lifespan events: what the main app registers does not cover it.
    """
    if depth >= 4:
        return
    for route in list(getattr(app, "routes", None) or []):
        if not isinstance(route, Mount):
            continue
        inner = route.app
        path = prefix + str(route.path or "")
        if isinstance(inner, Starlette):
            yield path, inner
            yield from mounted_apps(inner, path, depth + 1)
        elif isinstance(inner, Router):
            # Mount(routes=[...]): plain routes served by the enclosing app.
            yield from mounted_apps(inner, path, depth + 1)


def _mount_label(path: str) -> str:
    return f"the app mounted at `{path or '/'}`"


def _handlers_that_run(facts: AppFacts) -> set[int] | None:
    """Ids of the on_event handlers the app's lifespan actually calls, or None if unknowable.

    A ``_DefaultLifespan`` runs its router's ``on_startup``/``on_shutdown``; a user lifespan runs
    none. When the app passes ``lifespan=``, the app router's own default lifespan is gone, so the
    handlers registered with ``@app.on_event`` are never called (Starlette discussion #2192).
    """
    router = getattr(facts.app, "router", None)
    context = getattr(router, "lifespan_context", None)
    if context is None:
        return None
    running: set[int] = set()
    for part in _lifespan_parts(context):
        if type(part).__name__ == "_DefaultLifespan":
            owner = getattr(part, "_router", None)
            if owner is None:
                return None
            for event in ("startup", "shutdown"):
                running.update(id(h) for h in getattr(owner, f"on_{event}", None) or [])
    return running


@rule(
    code="FR101",
    name="lifespan-not-on-event",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP,
    section="main.py template, Rule #5",
    summary="Startup and shutdown code lives in a lifespan, not in @app.on_event handlers.",
    rationale=(
        "`@app.on_event` is deprecated, and Starlette silently ignores on_event handlers when the "
        "app also passes `lifespan=`: the startup code never runs."
    ),
    fix="Move the handler's code into an `@asynccontextmanager async def lifespan(app)` "
    "passed as `FastAPI(lifespan=lifespan)`: startup before `yield`, shutdown after it.",
    bad_example='@app.on_event("startup")\nasync def connect() -> None: ...',
    good_example=(
        "@asynccontextmanager\nasync def lifespan(app: FastAPI):\n    await connect()\n"
        "    yield\n    await disconnect()\n\napp = FastAPI(lifespan=lifespan)"
    ),
)
def check_lifespan_not_on_event(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    running = _handlers_that_run(facts)
    for event in ("startup", "shutdown"):
        for handler in getattr(facts.app.router, f"on_{event}", None) or []:
            name = getattr(handler, "__qualname__", repr(handler))
            message = f"`{name}` is registered as an on_event({event!r}) handler"
            if running is not None and id(handler) not in running:
                message += (
                    "; the app also passes `lifespan=`, so Starlette never calls it "
                    f"(its {event} code silently does not run)"
                )
            yield Finding(message=message, target="app", location=facts.location_of(handler))
    for path, sub_app in mounted_apps(facts.app):
        router = getattr(sub_app, "router", None)
        for event in ("startup", "shutdown"):
            for handler in getattr(router, f"on_{event}", None) or []:
                name = getattr(handler, "__qualname__", repr(handler))
                yield Finding(
                    message=f"`{name}` is registered as an on_event({event!r}) handler of "
                    f"{_mount_label(path)}; mounted apps get no lifespan events, so it never runs",
                    target="app",
                    location=facts.location_of(handler),
                    fix="Move the code into the main app's lifespan: Starlette runs only the "
                    "lifespan of the app the server starts, never that of mounted apps.",
                )


# -- FR104 / FR105: exception handlers ------------------------------------------------------------

#: Packages whose exception classes are the framework's, never a domain error base.
_FRAMEWORK_PACKAGES = frozenset({"builtins", "fastapi", "starlette", "pydantic", "pydantic_core"})


def _key_name(key: Any) -> str:
    if isinstance(key, int):
        return f"status {key}"
    return str(getattr(key, "__name__", None) or repr(key))


def _is_default_handler(handler: Callable[..., Any]) -> bool:
    """FastAPI registers its own handlers for HTTPException and validation errors at init."""
    return str(getattr(handler, "__module__", "")).startswith("fastapi.exception_handlers")


def _handled_summary(handlers: dict[Any, Callable[..., Any]]) -> str:
    """What the app does handle, in words: the user's handlers first, FastAPI's defaults apart."""
    if not handlers:
        return "the app registers no exception handlers at all"
    defaults = [_key_name(key) for key, handler in handlers.items() if _is_default_handler(handler)]
    own = [_key_name(key) for key, handler in handlers.items() if not _is_default_handler(handler)]
    if not own:
        return f"only FastAPI's default handlers exist ({', '.join(defaults)})"
    besides = " (besides FastAPI's defaults)" if defaults else ""
    return f"handlers exist only for {', '.join(own)}{besides}"


def _is_domain_exception(facts: AppFacts, key: Any) -> bool:
    """Whether an ``exception_handlers`` key is an exception class of the app's own making.

    Own means defined in the app's code (``is_app_code_module``: own packages, sibling packages,
    internal packages installed from a checkout), or a non-framework base class that the app's own
    exception classes subclass (a company-wide ``DomainError`` shipped as a wheel).
    """
    if not (inspect.isclass(key) and issubclass(key, BaseException)):
        return False
    if key in (Exception, BaseException):
        return False
    module_name = str(getattr(key, "__module__", "") or "")
    if is_app_code_module(facts, module_name):
        return True
    if module_name.split(".")[0] in _FRAMEWORK_PACKAGES:
        return False
    return any(
        issubclass(own, key) and own is not key for own in facts.own_classes if issubclass(own, BaseException)
    )


def _handler_location(
    facts: AppFacts,
    handlers: dict[Any, Callable[..., Any]],
    sub_app: Any = None,
    routes: list[RouteFacts] | None = None,
) -> Location | None:
    """The first handler the user registered (where more handlers go), else the app's creation."""
    for handler in handlers.values():
        if not _is_default_handler(handler):
            location = facts.location_of(handler)
            if location is not None:
                return location
    if sub_app is not None:
        module = _first_endpoint_module(routes or [])
        if module is None:
            return None
        return _creation_line(facts, module, _names_bound_to(module, sub_app))
    return app_creation_location(facts)


def _handlers_of(app: Any) -> dict[Any, Callable[..., Any]]:
    return dict(getattr(app, "exception_handlers", None) or {})


def serving_apps(facts: AppFacts) -> list[tuple[str, Any, list[RouteFacts]]]:
    """The main app and each mounted app, with the routes each one serves itself.

    A request is answered (and its errors handled) by the innermost app it is mounted into, so a
    route belongs to the mounted app with the longest mount path that serves it.
    """
    apps: list[tuple[str, Any, set[str]]] = []
    for path, sub_app in mounted_apps(facts.app):
        served = {path + effective.path for effective in iter_effective_routes(sub_app)}
        apps.append((path, sub_app, served))
    own: dict[int, list[RouteFacts]] = {id(facts.app): []}
    for route in facts.routes:
        owners = [(path, app) for path, app, served in apps if route.path in served]
        owner = max(owners, key=lambda entry: len(entry[0]))[1] if owners else facts.app
        own.setdefault(id(owner), []).append(route)
    result: list[tuple[str, Any, list[RouteFacts]]] = [("", facts.app, own[id(facts.app)])]
    result.extend((path, app, own.get(id(app), [])) for path, app, _ in apps)
    return result


def _first_endpoint_module(routes: list[RouteFacts]) -> Any:
    for route in routes:
        module = sys.modules.get(str(getattr(route.function, "__module__", "")))
        if module is not None:
            return module
    return None


@rule(
    code="FR104",
    name="domain-error-handler",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP,
    section="main.py template, shared/exceptions.py template",
    summary="An exception handler is registered for an app-defined base exception class "
    "(the DomainError pattern), not only for HTTPException.",
    rationale=(
        "Services raise domain exceptions and stay free of HTTP; one handler per domain base class "
        "turns them into the error envelope with the right status. Without it a domain error "
        "becomes a 500, or HTTP concerns leak into the service layer."
    ),
    fix="Define `class DomainError(Exception)` with `status_code`/`error_code`, raise its "
    "subclasses from services, and register `@app.exception_handler(DomainError)` in the app "
    "factory.",
    bad_example=(
        "# services raise HTTPException; main.py registers no handler of its own\n"
        "raise HTTPException(404, 'User not found')"
    ),
    good_example=(
        "@app.exception_handler(DomainError)\n"
        "async def domain_error_handler(request: Request, exc: DomainError) -> JSONResponse:\n"
        "    return JSONResponse(status_code=exc.status_code,\n"
        '                        content={"error": exc.error_code, "message": exc.message})'
    ),
)
def check_domain_error_handler(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    handlers = facts.exception_handlers
    # The handler may live on a mounted API app (app.mount("/api/v1", api)): any app counts.
    every_app = [handlers] + [_handlers_of(sub_app) for _, sub_app in mounted_apps(facts.app)]
    if any(_is_domain_exception(facts, key) for table in every_app for key in table):
        return
    yield Finding(
        message=f"no exception handler for an app-defined exception class: {_handled_summary(handlers)}",
        target="app",
        location=_handler_location(facts, handlers),
    )


def _runtime_generic_handler(context: CheckContext) -> Iterator[Finding]:
    """FR105: the generic handler, invoked on a synthetic exception, answers a clean JSON 500."""
    results = _probe(context, "FR105")
    exchange = results.synthetic
    if exchange is None:
        raise RuleSkipped(results.synthetic_skipped or "no synthetic error was injected")
    marker = results.synthetic_marker
    shown = exchange.request.shown
    if exchange.error is not None:
        yield Finding(message=f"a synthetic exception in {shown} was not handled: the app {exchange.outcome}")
        return
    if exchange.status != 500:
        yield Finding(message=f"a synthetic exception in {shown} answered {exchange.status}, not 500")
    text = exchange.body.decode("utf-8", errors="replace")
    if not exchange.is_json:
        yield Finding(
            message=f"a synthetic exception in {shown} answered a non-JSON body "
            f"({exchange.body_excerpt(60)!r})"
        )
    leaks = []
    if marker and marker in text:
        leaks.append("the exception's text")
    if "Traceback" in text or 'File "' in text:
        leaks.append("a traceback")
    if re.search(r"(/[\w.-]+){2,}\.py", text):
        leaks.append("file paths")
    if leaks:
        yield Finding(
            message=f"the 500 answer to a synthetic exception in {shown} carries {' and '.join(leaks)}"
        )


def _handled_without_a_handler(context: CheckContext) -> str | None:
    """FR105's static findings say no handler for ``Exception`` is registered; when the synthetic
    exception still answered a clean JSON 500, the app handles unexpected errors another way (a
    middleware that catches every exception: Netflix/dispatch). Only for an app that serves its
    routes itself: the one synthetic request speaks for one app, not for mounted ones."""
    if sum(1 for _, _, routes in serving_apps(context.facts) if routes) > 1:
        return None
    exchange = _probe(context, "FR105").synthetic
    if exchange is None or list(_runtime_generic_handler(context)):
        return None
    return (
        "no exception handler for `Exception` is registered, but a synthetic exception in "
        f"{exchange.request.shown} answered a JSON 500 without internals: the app handles "
        "unexpected errors another way (a middleware)"
    )


@rule(
    code="FR105",
    name="generic-error-handler",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP_PROBE,
    section="main.py template",
    summary="A handler for `Exception` exists (it answers a JSON 500 without internals).",
    rationale=(
        "Without a generic handler an unexpected error answers Starlette's plain-text 500 (or, "
        "with debug on, a traceback page), outside the API's error envelope and unlogged."
    ),
    fix="Register `@app.exception_handler(Exception)` last in the app factory: log the "
    "exception with path and method, and answer `JSONResponse(status_code=500, content="
    '{"error": "internal_server_error", "message": "An unexpected error occurred"})`.',
    bad_example="app = FastAPI(lifespan=lifespan)  # no handler for Exception",
    good_example=(
        "@app.exception_handler(Exception)\n"
        "async def generic_exception_handler(request: Request, exc: Exception) -> JSONResponse:\n"
        '    logger.error("unhandled_exception", path=request.url.path, exc_info=True)\n'
        '    return JSONResponse(status_code=500, content={"error": "internal_server_error"})'
    ),
    runtime=_runtime_generic_handler,
    overruled_by=_handled_without_a_handler,
    unavailable=PROBES_UNAVAILABLE,
    phases=("synthetic-error",),
)
def check_generic_error_handler(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    serving = serving_apps(facts)
    for path, app, routes in serving:
        is_main = app is facts.app
        # The main app answers whatever no mounted app serves; a mounted app only its own routes.
        if not routes and not (is_main and len(serving) == 1):
            continue
        handlers = facts.exception_handlers if is_main else _handlers_of(app)
        # Starlette routes both keys to ServerErrorMiddleware, the handler of last resort. Each app
        # has its own: a mounted app without one answers a plain-text 500 whatever the main has.
        if Exception in handlers or 500 in handlers:
            continue
        where = "" if is_main else f"{_mount_label(path)} has "
        yield Finding(
            message=f"{where}no exception handler for `Exception` (or 500): {_handled_summary(handlers)}",
            target="app",
            location=_handler_location(facts, handlers, None if is_main else app, routes),
        )


# -- FR109 ----------------------------------------------------------------------------------------


def _served_path(facts: AppFacts, route: RouteFacts) -> str:
    """The path clients call: the route's path under the app's ``root_path`` (proxy prefix)."""
    root_path = str(getattr(facts.app, "root_path", "") or "").rstrip("/")
    return root_path + route.path


@rule(
    code="FR109",
    name="versioned-prefix-and-tags",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.APP,
    section="main.py template",
    summary="Every API route (not health/docs) lives under a versioned prefix (`/api/v1`) and "
    "carries at least one tag.",
    rationale=(
        "A version in the path lets v2 live beside v1 while clients migrate; tags group the routes "
        "in the OpenAPI docs and generated clients instead of one 'default' heap."
    ),
    fix="Include the router with a versioned prefix and a tag: `app.include_router(router, "
    'prefix="/api/v1/users", tags=["Users"])`.',
    applies_to=is_api_route,
    bad_example='app.include_router(users_router, prefix="/users")',
    good_example='app.include_router(users_router, prefix="/api/v1/users", tags=["Users"])',
)
def check_versioned_prefix_and_tags(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    served = _served_path(context.facts, route)
    pattern = context.options.version_prefix
    # A deployment prefix (``root_path``, set for a proxy) is not part of the API's paths: the
    # route's own path decides; the served one counts too when the version lives in the prefix.
    if not pattern.search(route.path) and not pattern.search(served):
        bare = re.compile(BARE_VERSION_PREFIX)
        note = (
            "; a version without `/api` is not the rulebook's `/api/v1`: to accept it on purpose, "
            f"set the ini key fastapi_rules_version_prefix = {BARE_VERSION_PREFIX}"
            if pattern.pattern == DEFAULT_VERSION_PREFIX and (bare.search(route.path) or bare.search(served))
            else ""
        )
        yield Finding(
            message=f"path `{route.path}` is not under a versioned prefix (expected to match "
            f"`{pattern.pattern}`){note}",
            location=route.location,
        )
    if not route.tags:
        yield Finding(
            message=f"endpoint `{route.name}` has no tags (OpenAPI lists it under 'default')",
            location=route.location,
            fix='Give the router or the route a tag: `APIRouter(tags=["Users"])` or '
            '`app.include_router(router, tags=["Users"])`.',
        )
