"""FR1xx: application wiring (the main.py template, Rule #5 lifespan).

Every rule of the family lives here, whatever it reads: the app object and its handlers (FR101,
FR104, FR105's static half, FR109), the probe run (FR102, FR103, FR105's runtime half, FR106,
FR107) and the app in production mode (FR108).
"""

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
from pytest_fastapi_rules.facts import (
    NEVER_APP_CODE,
    TEST_MODULE,
    AppFacts,
    RouteFacts,
    middleware_of,
    unwrap_callable,
)
from pytest_fastapi_rules.options import BARE_VERSION_PREFIX, DEFAULT_VERSION_PREFIX
from pytest_fastapi_rules.probing.results import Exchange
from pytest_fastapi_rules.probing.runner import ENVELOPE_SAMPLES, LIVENESS_ALIASES, READINESS_ALIASES
from pytest_fastapi_rules.production.facts import declared_docs_paths, production_facts
from pytest_fastapi_rules.production.protocol import DOCS_KINDS
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
from pytest_fastapi_rules.rules.common import _lifespan_parts, is_api_route, start_production_child
from pytest_fastapi_rules.rules.probe_support import (
    PROBES_UNAVAILABLE,
    _probe,
    _short_where,
    _where_location,
    raised_synthetic,
)
from pytest_fastapi_rules.runtime import AppStartupError
from pytest_fastapi_rules.source.index import source_index

# -- shared helpers -------------------------------------------------------------------------------

#: Module name parts that mark a module as test code, not app code (the user's suite, conftest).


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
    if module_name.split(".")[0] in NEVER_APP_CODE or TEST_MODULE.search(module_name):
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
    exchange = raised_synthetic(results)
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
    results = _probe(context, "FR105")
    exchange = results.synthetic
    if exchange is None or not results.synthetic_raised or list(_runtime_generic_handler(context)):
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
    summary="A handler for `Exception` exists, or a middleware that catches every exception and "
    "answers (it answers a JSON 500 without internals).",
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
        if catch_all_middleware(facts, app) is not None:
            continue  # the runtime half checks what it answers
        where = "" if is_main else f"{_mount_label(path)} has "
        yield Finding(
            message=f"{where}no exception handler for `Exception` (or 500): {_handled_summary(handlers)}",
            target="app",
            location=_handler_location(facts, handlers, None if is_main else app, routes),
        )


def catch_all_middleware(facts: AppFacts, app: Any) -> str | None:
    """The name of a middleware of ``app`` that catches every exception around ``call_next`` and
    answers itself (Netflix/dispatch's ``ExceptionMiddleware`` on its API app): the app's generic
    handler in all but name. Read from the dispatch function's source: a ``try`` whose body awaits
    ``call_next`` and whose ``except Exception`` (or bare ``except``) answers without re-raising:
    it returns a response, or sets the one the function returns after the ``try``."""
    for entry in middleware_of(app):
        dispatch = entry.options.get("dispatch") or getattr(entry.cls, "dispatch", None)
        if dispatch is None or not facts.is_own_object(unwrap_callable(dispatch)):
            continue
        info = source_index(facts).function_info(unwrap_callable(dispatch))
        if info is not None and _returns_on_every_exception(info.node):
            return entry.name
    return None


def _returns_on_every_exception(function: ast.AST) -> bool:
    returned = {
        node.value.id
        for node in ast.walk(function)
        if isinstance(node, ast.Return) and isinstance(node.value, ast.Name)
    }
    for node in ast.walk(function):
        if not isinstance(node, ast.Try):
            continue
        calls_next = any(
            isinstance(inner, ast.Call) and (ast.unparse(inner.func).split(".")[-1] == "call_next")
            for statement in node.body
            for inner in ast.walk(statement)
        )
        if not calls_next:
            continue
        for handler in node.handlers:
            caught = ast.unparse(handler.type) if handler.type is not None else "BaseException"
            if caught.split(".")[-1] not in ("Exception", "BaseException"):
                continue
            inner_nodes = [inner for statement in handler.body for inner in ast.walk(statement)]
            # `return JSONResponse(...)`, or `response = JSONResponse(...)` returned after the try
            answers = any(
                (isinstance(inner, ast.Return) and inner.value is not None)
                or (
                    isinstance(inner, ast.Assign)
                    and any(isinstance(t, ast.Name) and t.id in returned for t in inner.targets)
                )
                for inner in inner_nodes
            )
            if answers and not any(isinstance(inner, ast.Raise) for inner in inner_nodes):
                return True
    return False


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


# -- FR102 lifespan-starts-cleanly --------------------------------------------------------------------


@rule(
    code="FR102",
    name="lifespan-starts-cleanly",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template, Rule #5",
    summary="The lifespan's startup and shutdown both complete within the timeout, without error.",
    rationale=(
        "A lifespan that raises at shutdown leaks connections and loses the last log lines on every "
        "deploy; one that fails or hangs at startup takes the service down."
    ),
    fix="Make startup and shutdown code robust: dispose engines and close clients after `yield` "
    "in a `try/finally`, and do not let shutdown code raise.",
    bad_example=(
        "@asynccontextmanager\nasync def lifespan(app):\n    sessionmanager.init(url)\n    yield\n"
        "    await redis.close()  # redis was never opened: AttributeError at shutdown"
    ),
    good_example=(
        "@asynccontextmanager\nasync def lifespan(app):\n    sessionmanager.init(url)\n    try:\n"
        "        yield\n    finally:\n        await sessionmanager.close()"
    ),
    # Not reports_setup_failure: it judges the app's lifespan, and a database the probes could
    # not set up says nothing about that.
    phases=("shutdown",),
)
def check_lifespan_starts_cleanly(context: CheckContext) -> Iterator[Finding]:
    try:
        results = _probe(context, "FR102")
    except AppStartupError as exc:
        fallback = _sqlite_fallback(context)
        if fallback is not None and _is_database_error(exc.app_traceback or exc.message):
            raise RuleSkipped(
                "the lifespan failed with a database error on the probes' SQLite database, which they "
                f"use because {fallback}: that says nothing about the app's own database, so the "
                "lifespan is not judged. Make the app's server reachable (or pass "
                "--fastapi-rules-db-url=URL of a PostgreSQL server) to judge it: "
                + exc.message.split(". Checks that need")[0]
            ) from None
        what = exc.message.split(". Checks that need")[0]
        what = what.removeprefix("The app's lifespan failed at startup with ")
        yield Finding(
            message=f"the lifespan failed at startup: {what}",
            location=_last_own_frame(context.facts, exc.app_traceback) or context.facts.app_location,
            fix="Fix the startup error shown in the app's traceback below; "
            + (exc.app_traceback or "").strip()[-1500:],
        )
        return
    if results.shutdown_error:
        lines = [line for line in results.shutdown_error.strip().splitlines() if line.strip()]
        yield Finding(
            message=f"the lifespan failed at shutdown: {lines[-1].strip() if lines else 'error'}",
            location=_last_own_frame(context.facts, results.shutdown_error) or context.facts.app_location,
            fix="Make the code after `yield` in the lifespan robust (try/finally, check what was "
            "opened before closing it). The app's traceback: " + results.shutdown_error.strip()[-1500:],
        )


def _sqlite_fallback(context: CheckContext) -> str | None:
    """Why the probes run on SQLite although the app uses another database, or None."""
    choice = getattr(getattr(context.facts, "database_placement", None), "choice", None)
    return getattr(choice, "fallback", None) if choice is not None and choice.server is None else None


#: The exception modules whose errors are the database's answer, not the app's own code failing.
_DATABASE_ERRORS = re.compile(
    r"\b(sqlalchemy\.exc\.|sqlite3\.|aiosqlite\.)\w*Error|OperationalError|ProgrammingError"
)


def _is_database_error(text: str) -> bool:
    return bool(_DATABASE_ERRORS.search(text))


_FRAME = re.compile(r'File "([^"]+)", line (\d+)')


def _last_own_frame(facts: AppFacts, text: str | None) -> Location | None:
    """The innermost frame of the app's own code in a formatted traceback."""
    if not text:
        return None
    found: Location | None = None
    for match in _FRAME.finditer(text):
        path, line = match.group(1), int(match.group(2))
        relative = facts.relative(path)
        if "site-packages" in path or relative.startswith("/") or "pytest_fastapi_rules" in path:
            continue
        found = Location(file=relative, line=line)
    return found


# -- FR103 lifespan-disposes-engines ------------------------------------------------------------------


@rule(
    code="FR103",
    name="lifespan-disposes-engines",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="database.py template, main.py template",
    summary="Every engine the app used is disposed at shutdown, with no connection left checked out.",
    rationale=(
        "An engine that is never disposed keeps its connections open after the app stops (and an "
        "aiosqlite engine keeps the process alive); a checked-out connection at shutdown is a leak."
    ),
    fix="Call `await engine.dispose()` (the template's `sessionmanager.close()`) after `yield` in "
    "the lifespan, in a `finally`.",
    bad_example="async def lifespan(app):\n    sessionmanager.init(url)\n    yield  # never closed",
    good_example=(
        "async def lifespan(app):\n    sessionmanager.init(url)\n    try:\n        yield\n"
        "    finally:\n        await sessionmanager.close()"
    ),
    phases=("shutdown",),
    reports_setup_failure=True,
)
def check_lifespan_disposes_engines(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR103")
    if not results.engines:
        raise RuleSkipped("the app used no SQLAlchemy engine during the probes")
    for engine in results.engines:
        location = _where_location(context.facts, engine.where)
        if not engine.disposed:
            yield Finding(
                message=f"the engine created at {_short_where(context.facts, engine.where)} was not "
                "disposed when the lifespan shut down",
                location=location,
            )
        if engine.checked_out:
            yield Finding(
                message=f"{engine.checked_out} connection(s) of the engine created at "
                f"{_short_where(context.facts, engine.where)} were still checked out after shutdown",
                location=location,
                fix="Close every session (`async with session_factory() as session:`), so its "
                "connection returns to the pool before shutdown.",
            )


# -- FR106 error-envelope -----------------------------------------------------------------------------

_MACHINE_CODE = re.compile(r"^[a-z][a-z0-9]*([_.-][a-z0-9]+)*$")


@rule(
    code="FR106",
    name="error-envelope",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template, shared/exceptions.py template",
    summary="Error responses (404, 422, 401) share one JSON envelope with a machine-readable code "
    "in `error`, as the rulebook's (another key through `fastapi_rules_error_code_key`).",
    rationale=(
        'Clients handle errors by one shape: `{"error": "user_not_found", "message": ...}`. '
        'FastAPI\'s defaults answer `{"detail": "Not Found"}` for one error and a list for another.'
    ),
    fix="Register handlers for HTTPException and RequestValidationError (and the domain error) "
    'that all answer `{"error": <code>, "message": <text>}`.',
    bad_example='{"detail": "Not Found"}  /  {"detail": [{"loc": [...], "msg": ...}]}',
    good_example='{"error": "user_not_found", "message": "User 7 not found"}',
    phases=("missing", "bad-input", "credentials", "envelope"),
    reports_setup_failure=True,
)
def check_error_envelope(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR106")
    # The first 404 to a missing id, 422 to bad input and 401 without credentials, routes in the
    # app's order: the order a whole run sends them in, whichever routes this process probed itself
    # (see shards.py).
    route_order = {route.target: index for index, route in enumerate(context.facts.routes)}
    samples: dict[int, Exchange] = {}
    for phase, status in ENVELOPE_SAMPLES:
        answers = [
            (route_order.get(exchange.target, -1), sent, exchange)
            for sent, exchange in enumerate(results.exchanges)
            if exchange.phase == phase and exchange.status == status
        ]
        if answers:
            samples[status] = min(answers, key=lambda answer: answer[:2])[2]
    if len(samples) < 2:
        raise RuleSkipped(
            "the probes saw fewer than two kinds of error response to compare (a 404 to a missing id, "
            "a 422 to bad input, a 401 without credentials)"
        )
    bodies = {status: exchange.json for status, exchange in samples.items()}
    not_objects = [status for status, body in bodies.items() if not isinstance(body, dict)]
    if not_objects:
        for status in not_objects:
            exchange = samples[status]
            yield Finding(
                message=f"the {status} answer to {exchange.request.shown} is not a JSON object: "
                f"{exchange.body_excerpt(100)!r}",
            )
        return
    shared = set.intersection(*(set(body) for body in bodies.values()))
    coded = [
        key
        for key in sorted(shared)
        if all(isinstance(body.get(key), str) and _MACHINE_CODE.match(body[key]) for body in bodies.values())
    ]
    shapes = "; ".join(f"{status}: {{{', '.join(sorted(body))}}}" for status, body in sorted(bodies.items()))
    key = context.options.error_code_key
    if key in coded:
        return
    if coded:
        # One envelope, but its code under another key than the rulebook's: a team's choice to
        # make on purpose, not a default.
        yield Finding(
            message=f"error responses share one envelope, with the machine-readable code in "
            f"`{coded[0]}`, not in `{key}` ({shapes}); to accept it on purpose, set the ini key "
            f"fastapi_rules_error_code_key = {coded[0]}"
        )
        return
    what = (
        "share no key"
        if not shared
        else f"share {', '.join(sorted(shared))} but no machine-readable code in it"
    )
    yield Finding(message=f"error responses do not share one envelope: they {what} ({shapes})")


# -- FR107 health-endpoints ---------------------------------------------------------------------------


@rule(
    code="FR107",
    name="health-endpoints",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template",
    summary="`GET /health` answers 200 JSON; `GET /health/ready` answers 200 and reaches the database "
    "(other paths through `fastapi_rules_health_path` and `fastapi_rules_readiness_path`).",
    rationale=(
        "Load balancers and Kubernetes need a liveness route that answers without dependencies and a "
        "readiness route that fails when the database is down; a readiness check that never touches "
        "the database routes traffic to an instance that cannot serve it."
    ),
    fix="Add `GET /health` (returns a small JSON) and `GET /health/ready` that runs `SELECT 1` "
    "through the session manager and answers 503 when it fails.",
    bad_example=(
        '@app.get("/health/ready")\nasync def ready() -> dict:\n    return {"status": "ready"}  # TODO'
    ),
    good_example=(
        '@app.get("/health/ready")\nasync def ready() -> ReadinessResponse:\n'
        '    await sessionmanager.ping()  # SELECT 1\n    return ReadinessResponse(status="ready")'
    ),
    phases=("health",),
    reports_setup_failure=True,
)
def check_health_endpoints(context: CheckContext) -> Iterator[Finding]:
    options = context.options
    results = _probe(context, "FR107")
    health = results.in_phase("health")
    liveness = [e for e in health if e.request.path == options.health_path]
    readiness = [e for e in health if e.request.path == options.readiness_path]
    if not liveness:
        yield Finding(
            message=f"the app has no `GET {options.health_path}` route"
            + _health_alias_note(context.facts, LIVENESS_ALIASES, "fastapi_rules_health_path")
        )
    else:
        first = liveness[0]
        if not first.ok or not first.is_json:
            yield Finding(
                message=f"{first.request.shown} {first.outcome}"
                + ("" if first.is_json else " without a JSON body"),
                location=_route_location_of(context.facts, first.target),
            )
    if not readiness:
        yield Finding(
            message=f"the app has no readiness route (`GET {options.readiness_path}`)"
            + _health_alias_note(context.facts, READINESS_ALIASES, "fastapi_rules_readiness_path")
        )
        return
    ready = readiness[0]
    location = _route_location_of(context.facts, ready.target)
    if not ready.ok:
        yield Finding(message=f"{ready.request.shown} {ready.outcome}", location=location)
    elif results.engines and ready.count == 0:
        yield Finding(
            message=f"{ready.request.shown} answers 200 without running any SQL: it does not "
            "check that the database is reachable",
            location=location,
        )


def _health_alias_note(facts: AppFacts, aliases: tuple[str, ...], setting: str) -> str:
    """When the app serves a health route under a name the rulebook does not use (``/readyz``):
    the setting that makes FR107 probe it on purpose; empty otherwise."""
    served = [path for path in aliases if any(r.method == "GET" and r.path == path for r in facts.routes)]
    if not served:
        return ""
    return (
        f"; it has `GET {served[0]}`, not the rulebook's path: to probe that one on purpose, set "
        f"the ini key {setting} = {served[0]}"
    )


def _route_location_of(facts: AppFacts, target: str) -> Location | None:
    for route in facts.routes:
        if route.target == target:
            return route.location
    return None


# -- FR108 docs-hidden-in-production -------------------------------------------------------------------


@rule(
    code="FR108",
    name="docs-hidden-in-production",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.PROBE,
    background=start_production_child,
    section="main.py template",
    summary="With the production environment set, `/docs`, `/redoc` and `/openapi.json` (and the "
    "documentation paths the app declares, sub-apps included) answer 404.",
    rationale=(
        "The interactive docs and the schema map every route, parameter and model of the API for "
        "anyone who finds them; production has no reason to serve them."
    ),
    fix="Pass `docs_url=None, redoc_url=None, openapi_url=None` to FastAPI when "
    '`settings.ENVIRONMENT == "production"`.',
    bad_example="app = FastAPI(lifespan=lifespan)  # /docs everywhere",
    good_example=(
        'production = settings.ENVIRONMENT == "production"\n'
        'app = FastAPI(docs_url=None if production else "/docs",\n'
        '              redoc_url=None if production else "/redoc",\n'
        '              openapi_url=None if production else "/openapi.json")'
    ),
)
def check_docs_hidden_in_production(context: CheckContext) -> Iterator[Finding]:
    facts = production_facts(context.facts, context.options)
    declared = declared_docs_paths(context.facts.app)
    for path in sorted({*DOCS_KINDS, *declared}):
        status = facts.docs_status.get(path)
        if status is None:
            if path not in declared and path in facts.docs_errors:
                continue  # a path the app never serves its docs at: its failure is another matter
            error = facts.docs_errors.get(path, "no answer")
            yield Finding(
                message=f"with {facts.env_text}, GET {path} failed ({error}) instead of answering 404"
            )
        elif status != 404 and facts.docs_served.get(path, True):
            yield Finding(message=f"with {facts.env_text}, GET {path} answers {status}, not 404")
