"""FR8xx: stack, observability, deployment (stack list, Rules #18, #23, #24).

FR801 (stack versions) and FR804 (Dockerfile) read the files around the code: the project root is
the nearest folder at or above the app's package that holds a ``pyproject.toml``, a
``requirements.txt`` or a ``Dockerfile``, without leaving pytest's rootdir. FR802 and FR803 read
the app's logging (in production mode and during the probe run), FR805 the settings classes, FR806 the test
session's dependency overrides.
"""

from __future__ import annotations

import ast
import dataclasses
import functools
import importlib.metadata
import inspect
import json
import re
import shlex
import sys
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_fastapi_rules import registry
from pytest_fastapi_rules.dockerfile import Instruction, parse_dockerfile
from pytest_fastapi_rules.facts import AppFacts, is_subclass, type_hints, unwrap_callable
from pytest_fastapi_rules.production.app_logging import LoggingProbeError
from pytest_fastapi_rules.production.facts import describe_env, logging_facts
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
from pytest_fastapi_rules.rules.common import code_of, start_production_child
from pytest_fastapi_rules.rules.probe_support import _probe, raised_synthetic
from pytest_fastapi_rules.rules.wiring import is_app_code_module
from pytest_fastapi_rules.runtime import AppStartupError
from pytest_fastapi_rules.source.index import function_tree, settings_classes, source_index
from pytest_fastapi_rules.sqla import is_any_engine

_ENVIRON_READ = re.compile(r"\bos\.environ\b|\bos\.getenv\s*\(|\bgetenv\s*\(")
#: Names that mark an unannotated cached function as the settings accessor.
_SETTINGS_NAME = re.compile(r"settings|config", re.IGNORECASE)


def _all_subclasses(base: type) -> Iterator[type]:
    stack: list[type] = list(base.__subclasses__())
    seen: set[int] = set()
    while stack:
        cls = stack.pop()
        if id(cls) in seen:
            continue
        seen.add(id(cls))
        yield cls
        stack.extend(cls.__subclasses__())


def _live_app_classes(facts: AppFacts, base: type) -> list[type]:
    """Subclasses of ``base`` defined at module level in the app's code and still importable.

    Walking ``__subclasses__`` finds settings classes in sibling packages that
    ``facts.own_classes`` does not cover; requiring the class to be its module's global drops
    classes of modules that were unloaded (earlier apps in the same process) and local classes.
    """
    found: list[type] = []
    for cls in _all_subclasses(base):
        module_name = getattr(cls, "__module__", None)
        module = sys.modules.get(module_name or "")
        if module is None or vars(module).get(cls.__name__) is not cls:
            continue
        if is_app_code_module(facts, module_name):
            found.append(cls)
    return sorted(found, key=lambda c: (c.__module__, c.__qualname__))


def _modules_to_search(facts: AppFacts, classes: list[type]) -> list[ModuleType]:
    """The app's own modules, plus the app-code modules of the packages the classes live in."""
    tops = {cls.__module__.split(".")[0] for cls in classes}
    modules = {id(m): m for m in facts.own_modules}
    for name, module in list(sys.modules.items()):
        if module is None or name.split(".")[0] not in tops or id(module) in modules:
            continue
        if is_app_code_module(facts, name):
            modules[id(module)] = module
    return sorted(modules.values(), key=lambda m: m.__name__)


def _with_bases(found: type, classes: tuple[type, ...]) -> set[type]:
    """``found`` and the settings classes it inherits from: an instance is one of each."""
    return {cls for cls in classes if issubclass(found, cls)}


def _returned_classes(function: Any, classes: tuple[type, ...]) -> set[type]:
    """The settings classes a cached function hands out.

    Judged by the return annotation; without one, by which classes its source constructs; when
    even the source is unavailable, a function named like settings/config is trusted to return
    them all (a miss is cheaper than a false alarm).
    """
    wrapped = unwrap_callable(function)
    annotation = type_hints(wrapped).get("return")
    if inspect.isclass(annotation) and typing.get_origin(annotation) is None:
        return _with_bases(annotation, classes) if is_subclass(annotation, classes) else set()
    if isinstance(annotation, str):
        name = annotation.strip("'\" ").split(".")[-1]
        named = [cls for cls in classes if cls.__name__ == name]
        return set().union(*(_with_bases(cls, classes) for cls in named)) if named else set()
    if annotation is not None:
        return set()
    try:
        source = inspect.getsource(wrapped)
    except (OSError, TypeError):
        source = None
    if source is not None:
        built = [cls for cls in classes if re.search(rf"\b{re.escape(cls.__name__)}\s*\(", source)]
        return set().union(*(_with_bases(cls, classes) for cls in built)) if built else set()
    if _SETTINGS_NAME.search(str(getattr(wrapped, "__name__", ""))):
        return set(classes)
    return set()


#: How many calls deep :func:`_constructed` follows the app's own functions.
_CALL_DEPTH = 3


def _constructed(facts: AppFacts, function: Any, classes: tuple[type, ...], depth: int = 0) -> set[type]:
    """The settings classes ``function`` builds when it runs: ``X()`` in its body, or in the app's
    own functions it calls (a few calls deep: ``get_settings`` -> ``_load`` -> ``Settings()``).

    Whatever a cached accessor builds is built once, however deep in its call chain; whatever an
    uncached dependency builds is built on every request.
    """
    wrapped = unwrap_callable(function)
    if not inspect.isfunction(wrapped):
        return set()
    tree = function_tree(facts, wrapped)
    if tree is None:
        return set()
    by_name = {cls.__name__: cls for cls in classes}
    built: set[type] = set()
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        func = node.func
        if isinstance(func, ast.Name):
            name = func.id
        elif isinstance(func, ast.Attribute):
            name = func.attr
        else:
            continue
        if name in by_name:
            built |= _with_bases(by_name[name], classes)
            continue
        if depth >= _CALL_DEPTH or not isinstance(func, ast.Name):
            continue
        callee = wrapped.__globals__.get(name)
        if (
            inspect.isfunction(callee)
            and callee is not wrapped
            and not callable(getattr(callee, "cache_info", None))  # its own cache: judged on its own
            and is_app_code_module(facts, getattr(callee, "__module__", None))
        ):
            built |= _constructed(facts, callee, classes, depth + 1)
    return built


def _per_request_builders(
    facts: AppFacts, classes: tuple[type, ...]
) -> list[tuple[Any, set[type], list[str]]]:
    """``(function, classes it builds, routes)``: the app's uncached dependencies (and endpoints)
    that build settings each time a request runs them, with the routes that run them."""
    found: dict[int, tuple[Any, set[type], list[str]]] = {}
    judged: dict[int, set[type]] = {}
    for route in facts.routes:
        for dependant in route.iter_dependants():
            call = dependant.call
            if call is None or callable(getattr(call, "cache_info", None)):
                continue
            function = unwrap_callable(call)
            key = id(function)
            if key not in judged:
                if inspect.isclass(function) and function in classes:  # Depends(Settings)
                    judged[key] = _with_bases(function, classes)
                else:
                    own = inspect.isfunction(function) and is_app_code_module(
                        facts, getattr(function, "__module__", None)
                    )
                    judged[key] = _constructed(facts, function, classes) if own else set()
            if judged[key]:
                found.setdefault(key, (function, judged[key], []))[2].append(route.target)
    return list(found.values())


def _candidate_holders(
    facts: AppFacts, modules: list[ModuleType], classes: tuple[type, ...]
) -> Iterator[Any]:
    """Objects that may hold or hand out settings: module globals, ``app.state``, and the
    static/class methods of the settings classes themselves (``Settings.get()`` singletons)."""
    for module in modules:
        for name, value in list(vars(module).items()):
            if not name.startswith("__"):
                yield value
    state = getattr(getattr(facts.app, "state", None), "_state", None) or {}
    yield from list(state.values())
    for cls in classes:
        for value in list(vars(cls).values()):
            yield getattr(value, "__func__", value)


def _built_at_import(facts: AppFacts, modules: list[ModuleType], classes: tuple[type, ...]) -> set[type]:
    """The settings classes a module-level call builds once, when the module is imported.

    ``config = get_config()`` where ``get_config`` picks one of ``LocalConfig()``,
    ``ProductionConfig()``... by environment: every class that call builds is built once, at
    import, like a module-level instance, whichever one the module keeps.
    """
    built: set[type] = set()
    for module in modules:
        tree = _module_tree(facts, module)
        for node in tree.body if tree is not None else ():
            value = node.value if isinstance(node, (ast.Assign, ast.AnnAssign)) else None
            if not isinstance(value, ast.Call) or not isinstance(value.func, ast.Name):
                continue
            function = vars(module).get(value.func.id)
            if inspect.isfunction(function) and is_app_code_module(
                facts, getattr(function, "__module__", None)
            ):
                built |= _constructed(facts, function, classes)
    return built


def _field_classes(annotation: Any, classes: tuple[type, ...], depth: int = 0) -> set[type]:
    """Settings classes named anywhere in a field annotation (``DbSettings | None``...)."""
    if depth > 8:
        return set()
    found: set[type] = set()
    if inspect.isclass(annotation) and annotation in classes:
        found.add(annotation)
    for arg in typing.get_args(annotation):
        found |= _field_classes(arg, classes, depth + 1)
    return found


def _cached_classes(facts: AppFacts, modules: list[ModuleType], classes: tuple[type, ...]) -> set[type]:
    """The settings classes the app reads through a cache: an ``lru_cache``/``functools.cache``
    accessor, one long-lived instance (module global or ``app.state``), or a field of one of those
    (nested settings live inside the cached parent)."""
    cached: set[type] = set()
    for value in _candidate_holders(facts, modules, classes):
        try:
            if isinstance(value, classes):
                cached |= _with_bases(type(value), classes)
            elif callable(getattr(value, "cache_info", None)):
                cached |= _returned_classes(value, classes) | _constructed(facts, value, classes)
        except Exception:  # noqa: BLE001 - lazy proxies and odd globals may raise on access
            continue
    cached |= _built_at_import(facts, modules, classes)
    pending = list(cached)
    while pending:
        parent = pending.pop()
        fields = getattr(parent, "model_fields", None) or {}
        for field in list(fields.values()):
            for nested in _field_classes(getattr(field, "annotation", None), classes):
                for cls in _with_bases(nested, classes) - cached:
                    cached.add(cls)
                    pending.append(cls)
    return cached


#: Words written in mixed case that are one word in snake case (``MySQL`` -> ``mysql``).
_MIXED_CASE_WORDS = (
    "PostgreSQL",
    "MySQL",
    "SQLite",
    "NoSQL",
    "GraphQL",
    "OAuth",
    "PyPI",
    "GitHub",
    "GitLab",
    "OpenAI",
    "OpenAPI",
    "DynamoDB",
    "MongoDB",
    "CouchDB",
    "ClickHouse",
    "RabbitMQ",
    "ZeroMQ",
)


def _snake(name: str) -> str:
    """``MailSettings`` -> ``mail_settings``, ``MySQLSettings`` -> ``mysql_settings``: the accessor
    name a fix suggests. A run of capitals is one word (an acronym) whose last capital starts the
    next word when lower case follows (``HTTPClient`` -> ``http_client``); the usual mixed-case
    product names are one word each (``SQLite``, ``OAuth2``)."""
    for word in _MIXED_CASE_WORDS:
        name = name.replace(word, word.capitalize())
    text = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    text = re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", text)
    return text.replace("-", "_").lower()


#: Calls that take a class without instantiating it.
_TYPE_ONLY_CALLS = frozenset({"isinstance", "issubclass", "cast", "type", "getattr", "hasattr", "super"})


def _module_source(facts: AppFacts, module: ModuleType) -> tuple[ast.Module, str | None] | None:
    """A module's parsed source and, when the source index holds the module, its text; None when
    it has no readable ``.py`` source.

    The source index's tree when the index holds the module (the app's own modules, parsed once
    for every rule); a module of the settings classes' package outside the project is parsed here,
    once per file version. A bounded cache of its own thrashed on apps of more modules than its
    size: the import-time builders and the call-name scan each re-parsed all 700 modules of a
    1,000-route app.
    """
    file = getattr(module, "__file__", None)
    if not file or Path(file).suffix != ".py":
        return None
    try:
        path = Path(file).resolve()
        mtime = path.stat().st_mtime
    except OSError:
        return None
    indexed = source_index(facts).get(module.__name__)
    if indexed is not None and indexed.path == path:
        return indexed.tree, indexed.source
    tree = _parsed(str(path), mtime)
    return (tree, None) if tree is not None else None


def _module_tree(facts: AppFacts, module: ModuleType) -> ast.Module | None:
    """A module's parsed source, or None when it has no readable ``.py`` source (see
    :func:`_module_source`)."""
    found = _module_source(facts, module)
    return found[0] if found is not None else None


@functools.lru_cache(maxsize=512)
def _parsed(file: str, mtime: float) -> ast.Module | None:
    """A module's source parsed once per file version, or None when it cannot be read."""
    try:
        return ast.parse(Path(file).read_text(encoding="utf-8"))
    except (OSError, SyntaxError, UnicodeDecodeError, ValueError):
        return None


def _called_names(tree: ast.Module) -> frozenset[str]:
    """Names a module calls or hands to a call (``Settings()``, ``Depends(Settings)``,
    ``loader(cls=Settings)``)."""
    names: set[str] = set()

    def name_of(node: ast.expr) -> str | None:
        if isinstance(node, ast.Name):
            return node.id
        if isinstance(node, ast.Attribute):
            return node.attr
        if isinstance(node, ast.Subscript):  # Loader[Settings](...) / Loader[Settings]
            return name_of(node.value)
        return None

    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        if name_of(node.func) in _TYPE_ONLY_CALLS:
            continue  # isinstance(x, Settings) reads the class, it builds nothing
        for expr in (node.func, *node.args, *(k.value for k in node.keywords)):
            named = name_of(expr)
            if named:
                names.add(named)
        if isinstance(node.func, ast.Subscript):  # CNLearnSettings[Settings](Settings)
            names.update(n.id for n in ast.walk(node.func.slice) if isinstance(n, ast.Name))
    return frozenset(names)


def _used_classes(facts: AppFacts, modules: list[ModuleType], classes: tuple[type, ...]) -> set[type] | None:
    """The settings classes the app instantiates (or hands to code that does, ``Depends(Settings)``),
    judged by the calls in its own modules; None when no module's source could be read.

    A class that nothing calls is a base or a mixin composed into the real settings class, or an
    alternative left for another deployment (``MySQLSettings`` beside ``PostgresSettings``): no
    ``X()`` re-reads the environment, so there is nothing to cache.
    """
    called: set[str] = set()
    readable = False
    names = {cls.__name__ for cls in classes}
    for module in modules:
        found = _module_source(facts, module)
        if found is None:
            continue
        readable = True
        tree, text = found
        if text is not None and not any(name in text for name in names):
            continue  # no call can name a class whose name the source does not contain
        called |= _called_names(tree)
    if not readable:
        return None
    return {cls for cls in classes if cls.__name__ in called}


def _environ_reader(facts: AppFacts) -> Location | None:
    """The first line of the app's own modules that reads ``os.environ``/``getenv`` directly."""
    for module in facts.own_modules:
        file = getattr(module, "__file__", None)
        if not file or Path(file).suffix != ".py":
            continue
        try:
            lines = Path(file).read_text(encoding="utf-8").splitlines()
        except (OSError, UnicodeDecodeError):
            continue
        for number, text in enumerate(lines, start=1):
            if _ENVIRON_READ.search(text) and not text.lstrip().startswith("#"):
                return Location(file=facts.relative(file), line=number)
    return None


def _pydantic_v1_settings(facts: AppFacts) -> list[type]:
    """App classes built on pydantic's v1 ``BaseSettings`` (only if pydantic.v1 is loaded)."""
    v1 = sys.modules.get("pydantic.v1")
    base = getattr(v1, "BaseSettings", None)
    if not inspect.isclass(base):
        return []
    return _live_app_classes(facts, base)


@rule(
    code="FR805",
    name="settings-via-pydantic",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="config.py template",
    summary="Configuration comes from a `pydantic_settings.BaseSettings` subclass, cached "
    "(`lru_cache` accessor or one module-level instance), and no dependency the requests run "
    "builds it anew.",
    rationale=(
        "BaseSettings validates and types every variable once, at startup, so a missing or "
        "malformed value fails fast instead of mid-request; caching it means the environment and "
        ".env file are read once, not on every `Settings()`. Only the settings classes the app "
        "instantiates are judged (a call `X()`, or `X` handed to a call such as `Depends(X)`, in "
        "its own modules): bases, mixins and unused alternatives are never read on their own."
    ),
    fix="Declare `class Settings(BaseSettings)` in config.py and expose it through "
    "`@lru_cache def get_settings() -> Settings: return Settings()` (or one module-level "
    "`settings = Settings()`).",
    bad_example='DATABASE_URL = os.environ.get("DATABASE_URL", "sqlite:///app.db")',
    good_example=(
        "class Settings(BaseSettings):\n    DATABASE_URL: str\n\n"
        "@lru_cache\ndef get_settings() -> Settings:\n    return Settings()"
    ),
)
def check_settings_via_pydantic(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    try:
        from pydantic_settings import BaseSettings
    except ImportError:
        yield Finding(
            message="pydantic-settings is not installed: the app cannot define a "
            "`pydantic_settings.BaseSettings` configuration",
            target="app",
            location=_environ_reader(facts),
            fix="Add `pydantic-settings>=2.6` to the app's dependencies and declare its "
            "configuration as `class Settings(BaseSettings)`.",
        )
        return
    classes = _live_app_classes(facts, BaseSettings)
    if not classes:
        v1_classes = _pydantic_v1_settings(facts)
        if v1_classes:
            cls = v1_classes[0]
            yield Finding(
                message=f"settings class `{cls.__qualname__}` subclasses pydantic.v1's "
                "`BaseSettings`, not `pydantic_settings.BaseSettings`",
                target="app",
                location=facts.location_of(cls),
            )
            return
        if BaseSettings in _cached_classes(facts, facts.own_modules, (BaseSettings,)):
            # A settings class shipped by an internal library, held once by the app: fine.
            return
        reader = _environ_reader(facts)
        where = f"; {reader.file}:{reader.line} reads os.environ directly" if reader else ""
        yield Finding(
            message=f"no `pydantic_settings.BaseSettings` subclass in the app's code{where}",
            target="app",
            location=reader,
        )
        return
    all_classes = tuple(classes)
    modules = _modules_to_search(facts, classes)
    cached = _cached_classes(facts, modules, all_classes)
    used = _used_classes(facts, modules, all_classes)
    if used is None:
        # No source to read the calls from: judge the concrete classes, those no other settings
        # class extends (bases and mixins are read through their subclasses).
        used = {cls for cls in classes if not any(o is not cls and issubclass(o, cls) for o in classes)}
    reported: set[type] = set()
    for function, all_built, targets in _per_request_builders(facts, all_classes):
        # Built on every request although a cache exists (a module-level instance that the
        # requests do not read); a class cached nowhere is reported as such below. Named by the
        # classes built, not their bases.
        built = all_built & cached
        if not built:
            continue
        leaves = sorted(
            (cls for cls in built if not any(o is not cls and issubclass(o, cls) for o in built)),
            key=lambda c: c.__name__,
        )
        names = ", ".join(f"`{cls.__name__}()`" for cls in leaves)
        routes = targets[0] if len(targets) == 1 else f"{targets[0]} and {len(targets) - 1} more"
        reported |= built
        if inspect.isclass(function):
            what = f"`Depends({function.__name__})` builds {names} for each request"
        else:
            what = f"`{function.__qualname__}` builds {names} each time it runs and is not cached"
        yield Finding(
            message=f"{what}; requests run it ({routes}), so each one re-reads the environment "
            "and the .env file",
            target="app",
            location=facts.location_of(function),
            fix=f"Read the settings through one `@lru_cache` accessor "
            f"(`get_{_snake(leaves[0].__name__)}()`) and depend on that, so they are read once.",
        )
    uncached = [cls for cls in classes if cls not in cached and cls in used and cls not in reported]
    for cls in uncached:
        # A base class is reported through its uncached subclass, not twice.
        if any(other is not cls and issubclass(other, cls) for other in uncached):
            continue
        yield Finding(
            message=f"settings class `{cls.__qualname__}` is not cached: no `lru_cache` accessor "
            f"returns it and no module-level instance exists, so every `{cls.__name__}()` "
            "re-reads the environment",
            target="app",
            location=facts.location_of(cls),
            fix=f"Read it through `@lru_cache def get_{_snake(cls.__name__)}() -> {cls.__name__}: "
            f"return {cls.__name__}()` (or one module-level instance) and use that everywhere.",
        )


# -- FR806 overrides-restored -------------------------------------------------------------------------


@rule(
    code="FR806",
    name="overrides-restored",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="Rule #18",
    summary="At the end of the session, `app.dependency_overrides` is as it was when the app was "
    "loaded: the tests left no override behind.",
    rationale=(
        "An override a test forgets to remove leaks into every later test: they pass against a fake "
        "database or a fake user, whatever the real code does."
    ),
    fix="Restore overrides in the fixture that sets them: `yield client` then "
    "`app.dependency_overrides.clear()` (or `pop(dep)`).",
    bad_example="app.dependency_overrides[get_db] = override_get_db  # never removed",
    good_example="app.dependency_overrides[get_db] = override_get_db\nyield client\n"
    "app.dependency_overrides.clear()",
)
def check_overrides_restored(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    current = getattr(facts.app, "dependency_overrides", None)
    if current is None:
        raise RuleSkipped("the app has no dependency_overrides (not a FastAPI app)")
    initial = getattr(facts, "initial_dependency_overrides", {})
    for call, replacement in list(current.items()):
        if call in initial and initial[call] is replacement:
            continue
        verb = "is now overridden" if call not in initial else "has a different override"
        yield Finding(
            message=f"dependency `{code_of(call)}` {verb} by `{code_of(replacement)}`, left behind by "
            "the test session",
            location=facts.location_of(replacement),
        )
    for call in initial:
        if call not in current:
            yield Finding(
                message=f"the override of `{code_of(call)}` that the app set up was removed by the "
                "test session",
                location=facts.location_of(call),
            )


# -- FR802 structured-logging ----------------------------------------------------------------------------


@rule(
    code="FR802",
    name="structured-logging",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    background=start_production_child,
    section="Rule #24",
    summary="structlog is configured once the app has started, and renders JSON in production.",
    rationale=(
        "Log aggregators index JSON fields (request id, user, path); console-formatted lines in "
        "production are text to grep, and an unconfigured structlog prints its development format."
    ),
    fix="Call a `configure_logging()` that runs `structlog.configure(...)` in the lifespan, with "
    '`JSONRenderer()` when `settings.LOG_FORMAT == "json"` (production).',
    bad_example="logger = structlog.get_logger()  # never configured",
    good_example="structlog.configure(processors=[..., structlog.processors.JSONRenderer()], ...)",
)
def check_structured_logging(context: CheckContext) -> Iterator[Finding]:
    try:
        facts = logging_facts(context.facts, context.options)
    except LoggingProbeError as exc:
        # Nothing was found wrong: a warning rule must not fail the run because production mode
        # could not start (the production-mode rules do the same); an error rule reports it.
        if context.options.effective_rule(registry.get_rule("FR802")).severity is Severity.WARNING:
            raise RuleSkipped(f"production logging could not be checked: {exc}") from None
        raise AppStartupError(str(exc), exc.output or None) from None
    env = describe_env(facts.env)
    if not facts.structlog_installed:
        yield Finding(message="structlog is not installed in the app's environment")
        return
    if not facts.configured:
        yield Finding(message=f"with {env}, structlog is not configured after the app started")
        return
    if facts.line is None:
        yield Finding(
            message=f"with {env}, a structlog warning event did not reach stdout or stderr (no handler "
            "renders structlog's events)"
        )
    elif not facts.is_json:
        shown = facts.line if len(facts.line) <= 100 else facts.line[:97] + "..."
        yield Finding(message=f"with {env}, log events are not rendered as JSON: {shown!r}")


# -- FR803 errors-are-logged --------------------------------------------------------------------------------


@rule(
    code="FR803",
    name="errors-are-logged",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="main.py template, Rule #24",
    summary="The generic error handler logs the unhandled exception with the request's path and method.",
    rationale=(
        "The generic handler hides the error from the client; if it does not log it, with the "
        "traceback and the request it came from, nobody ever sees it."
    ),
    fix='In the `Exception` handler: `logger.error("unhandled_exception", path=request.url.path, '
    "method=request.method, exc_info=exc)` before answering 500.",
    bad_example=(
        "async def handler(request, exc):\n"
        '    return JSONResponse(status_code=500, content={"error": "internal_server_error"})'
    ),
    good_example=(
        "async def handler(request, exc):\n"
        '    logger.error("unhandled_exception", path=request.url.path,\n'
        "                 method=request.method, exc_info=exc)\n"
        "    return JSONResponse(...)"
    ),
    phases=("synthetic-error",),
)
def check_errors_are_logged(context: CheckContext) -> Iterator[Finding]:
    facts = context.facts
    if Exception not in facts.exception_handlers and 500 not in facts.exception_handlers:
        raise RuleSkipped("the app has no handler for Exception (FR105 reports that)")
    results = _probe(context, "FR803")
    exchange = raised_synthetic(results)
    handler = facts.exception_handlers.get(Exception) or facts.exception_handlers.get(500)
    location = facts.location_of(handler)
    path = exchange.request.path.split("?")[0]
    method = exchange.request.method
    shown = exchange.request.shown
    errors = [r for r in results.synthetic_logs if r.level in ("error", "exception", "critical", "fatal")]
    if not errors:
        yield Finding(
            message=f"the generic handler `{code_of(handler)}` logged nothing at error level for an "
            f"unhandled exception in {shown}",
            location=location,
        )
        return
    marker = results.synthetic_marker

    def mentions(record: Any, value: str) -> bool:
        return value in record.text or any(value == v for v in record.fields.values())

    with_request = [r for r in errors if mentions(r, path) and mentions(r, method)]
    if not with_request:
        yield Finding(
            message=f"the generic handler logged the unhandled exception in {shown} without "
            "the request's path and method",
            location=location,
        )
        return
    if not any(r.has_exception or (marker and marker in r.text) for r in with_request):
        yield Finding(
            message=f"the generic handler logged the error in {shown} without the exception "
            "(no exc_info, no exception text)",
            location=location,
        )


_PROJECT_MARKERS = ("pyproject.toml", "requirements.txt", "Dockerfile")


def project_root(facts: AppFacts) -> Path | None:
    """The nearest folder at or above the app's top-level package holding a project file.

    Never above pytest's rootdir: a project file of an enclosing checkout is not this project's.
    """
    module = facts.loaded.module
    top = sys.modules.get(module.__name__.split(".")[0], module)
    paths = list(getattr(top, "__path__", None) or [])
    file = getattr(top, "__file__", None)
    start = Path(paths[0]) if paths else (Path(file).parent if file else None)
    if start is None:
        return None
    start = start.resolve()
    root = facts.root.resolve()
    if start != root and root not in start.parents:
        return None
    current = start
    while True:
        if any((current / marker).is_file() for marker in _PROJECT_MARKERS):
            return current
        if current == root:
            return None
        current = current.parent


def _display(facts: AppFacts, path: Path) -> str:
    return facts.relative(path)


# -- FR801: declared dependencies ----------------------------------------------------------------------


@dataclass
class Declared:
    """One runtime dependency the project declares, and where."""

    name: str
    text: str
    file: Path
    line: int
    column: int


@dataclass
class Dependencies:
    declared: list[Declared] = dataclasses.field(default_factory=list)
    files: list[Path] = dataclasses.field(default_factory=list)

    def find(self, name: str) -> Declared | None:
        wanted = canonical(name)
        return next((d for d in self.declared if canonical(d.name) == wanted), None)


def canonical(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


_REQUIREMENT_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")


_DEV_REQUIREMENTS = re.compile(r"(?i)(dev|test|lint|doc|ci|local)")


def _load_toml(path: Path) -> dict[str, Any] | None:
    try:
        import tomllib as toml_reader
    except ImportError:  # Python 3.10
        try:
            import tomli as toml_reader  # type: ignore[no-redef,import-not-found,unused-ignore]
        except ImportError:
            return None
    try:
        return toml_reader.loads(read_text(path))
    except (OSError, ValueError):
        return None


def read_text(path: Path) -> str:
    """A project file's text whatever its encoding: UTF-8 (with or without a BOM), UTF-16 or UTF-32
    by their BOM (Windows editors save requirements files so), UTF-16 without one (NUL bytes),
    else Latin-1, which reads any bytes. Raises ``OSError`` only."""
    import codecs

    data = path.read_bytes()
    for bom, encoding in (
        (codecs.BOM_UTF32_LE, "utf-32-le"),
        (codecs.BOM_UTF32_BE, "utf-32-be"),
        (codecs.BOM_UTF8, "utf-8"),
        (codecs.BOM_UTF16_LE, "utf-16-le"),
        (codecs.BOM_UTF16_BE, "utf-16-be"),
    ):
        if data.startswith(bom):
            return data[len(bom) :].decode(encoding, errors="replace")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        pass
    if b"\x00" in data:
        encoding = "utf-16-le" if data[1:2] == b"\x00" else "utf-16-be"
        return data.decode(encoding, errors="replace")
    return data.decode("latin-1")


def _applies_here(requirement: str) -> bool:
    """Whether a requirement applies to this environment: its marker (``; sys_platform ==
    'win32'``) evaluated by ``packaging``; a line ``packaging`` cannot parse is kept."""
    from packaging.requirements import InvalidRequirement, Requirement

    try:
        parsed = Requirement(requirement)
    except InvalidRequirement:
        return True
    return parsed.marker is None or parsed.marker.evaluate()


def _locate(lines: list[str], name: str, quoted: bool) -> tuple[int, int]:
    """(line, column), 1-based, of a dependency's name in a file: quoted in a TOML array, or
    at the start of a line (a Poetry table key)."""
    prefix = r"[\"']" if quoted else r"^\s*"
    pattern = re.compile(prefix + "(" + re.escape(name) + r")(?![A-Za-z0-9_.-])", re.IGNORECASE)
    for number, line in enumerate(lines, start=1):
        match = pattern.search(line)
        if match:
            return number, match.start(1) + 1
    return 1, 1


def declared_dependencies(root: Path) -> Dependencies:
    """Runtime dependencies: ``[project.dependencies]``, ``[tool.poetry.dependencies]``, and the
    ``requirements*.txt`` / ``requirements/*.txt`` files at the root that are not for development,
    tests, linting or docs. Optional dependencies and dependency groups are not runtime
    dependencies."""
    found = Dependencies()
    pyproject = root / "pyproject.toml"
    data = _load_toml(pyproject) if pyproject.is_file() else None
    if data is not None:
        lines = read_text(pyproject).splitlines()
        found.files.append(pyproject)
        for requirement in (data.get("project") or {}).get("dependencies") or []:
            match = _REQUIREMENT_NAME.match(str(requirement))
            if match and _applies_here(str(requirement)):
                line, column = _locate(lines, match.group(1), quoted=True)
                found.declared.append(Declared(match.group(1), str(requirement), pyproject, line, column))
        poetry = ((data.get("tool") or {}).get("poetry") or {}).get("dependencies") or {}
        for name in poetry:
            if name.lower() == "python":
                continue
            line, column = _locate(lines, name, quoted=False)
            found.declared.append(Declared(name, f"{name} = {poetry[name]!r}", pyproject, line, column))
    candidates = sorted(root.glob("requirements*.txt")) + sorted(root.glob("requirements/*.txt"))
    for requirements in candidates:
        if _DEV_REQUIREMENTS.search(requirements.stem.replace("requirements", "")):
            continue
        try:
            lines = read_text(requirements).splitlines()
        except OSError:
            continue
        found.files.append(requirements)
        for number, raw in enumerate(lines, start=1):
            text = raw.split("#", 1)[0].strip()
            if not text or text.startswith("-"):
                continue
            match = _REQUIREMENT_NAME.match(text)
            if match and _applies_here(text):
                column = len(raw) - len(raw.lstrip()) + 1
                found.declared.append(Declared(match.group(1), text, requirements, number, column))
    return found


# -- FR801: installed versions ---------------------------------------------------------------------

#: (distribution, minimum, required even when not installed): the rulebook's stack, read as minimums.
_STACK: tuple[tuple[str, str, bool], ...] = (
    ("fastapi", "0.121.2", True),
    ("pydantic", "2.10", True),
    ("pydantic-settings", "2.6", False),
    ("sqlalchemy", "2.0", False),
    ("httpx", "0.28", False),
    ("structlog", "24.4", True),
)


_POSTGRES_DEPENDENCIES = frozenset({"asyncpg", "psycopg", "psycopg2", "psycopg2-binary", "psycopg-binary"})


def installed_version(distribution: str) -> str | None:
    try:
        return importlib.metadata.version(distribution)
    except importlib.metadata.PackageNotFoundError:
        return None


def _older(installed: str, minimum: str) -> bool | None:
    from packaging.version import InvalidVersion, Version

    try:
        return Version(installed) < Version(minimum)
    except InvalidVersion:
        return None


def uses_postgresql(facts: AppFacts, dependencies: Dependencies) -> str | None:
    """Why the app counts as using PostgreSQL (a declared driver, a settings URL, an engine), or None."""
    for declared in dependencies.declared:
        if canonical(declared.name) in _POSTGRES_DEPENDENCIES:
            return f"the project declares `{declared.name}`"
    for _, value in facts.own_globals():
        url = _database_url(value)
        if url and url.startswith("postgres"):
            return f"an engine connects to `{url.split('://')[0]}`"
    for cls in settings_classes(facts):
        for name, info in (getattr(cls, "model_fields", {}) or {}).items():
            default = info.default
            if isinstance(default, str) and default.startswith("postgres"):
                return f"settings field `{cls.__name__}.{name}` defaults to PostgreSQL"
    return None


def _database_url(value: Any) -> str | None:
    if is_any_engine(value):
        return str(value.url.drivername)
    return None


@rule(
    code="FR801",
    name="stack-versions",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROJECT,
    section="Mandatory stack",
    summary="Installed fastapi (>=0.121.2), pydantic (>=2.10), pydantic-settings (>=2.6), sqlalchemy "
    "(>=2.0), httpx (>=0.28), structlog, and asyncpg when PostgreSQL is used, meet the rulebook's "
    "versions read as minimums; no `requests` among the runtime dependencies.",
    rationale=(
        "The rulebook's templates rely on these versions (lifespan, Pydantic v2, SQLAlchemy 2.0 "
        "async, structlog); `requests` is a blocking client that has no place in an async app."
    ),
    fix="Upgrade the package (the versions are minimums: newer majors pass); replace `requests` by `httpx`.",
    bad_example='dependencies = ["fastapi>=0.95", "requests>=2.31"]',
    good_example='dependencies = ["fastapi[standard]>=0.121.2", "httpx>=0.28", "structlog>=24.4"]',
)
def check_stack_versions(context: CheckContext) -> Iterator[Finding]:
    """Versions come from ``importlib.metadata`` (what runs), dependencies from the project root's
    ``pyproject.toml`` (PEP 621 or Poetry) and runtime ``requirements*.txt``. pydantic-settings,
    sqlalchemy and httpx are judged only when installed (an app without a database needs no
    SQLAlchemy); fastapi, pydantic and structlog must be installed; asyncpg when the project declares
    a PostgreSQL driver or an engine or settings default points at PostgreSQL."""
    facts = context.facts
    root = project_root(facts)
    dependencies = declared_dependencies(root) if root is not None else Dependencies()

    def where(distribution: str) -> tuple[Location | None, str]:
        declared = dependencies.find(distribution)
        if declared is not None:
            return (
                Location(_display(facts, declared.file), declared.line, declared.column),
                f": `{declared.text}`",
            )
        if dependencies.files:
            return Location(_display(facts, dependencies.files[0]), 1, 1), ""
        return None, ""

    for distribution, minimum, required in _STACK:
        version = installed_version(distribution)
        location, excerpt = where(distribution)
        if version is None:
            if required:
                yield Finding(
                    message=f"`{distribution}` is not installed (the rulebook's stack asks for "
                    f">= {minimum}){excerpt}",
                    location=location,
                    fix=f"Add `{distribution}>={minimum}` to the project's dependencies.",
                )
            continue
        if _older(version, minimum):
            yield Finding(
                message=f"installed `{distribution}` {version} is older than the rulebook's "
                f"{minimum}{excerpt}",
                location=location,
                fix=f"Upgrade to `{distribution}>={minimum}`.",
            )
    postgres = uses_postgresql(facts, dependencies)
    if postgres is not None and installed_version("asyncpg") is None:
        location, excerpt = where("asyncpg")
        yield Finding(
            message=f"PostgreSQL is used ({postgres}) but `asyncpg` is not installed{excerpt}",
            location=location,
            fix="Install `asyncpg>=0.30` and connect with `postgresql+asyncpg://`.",
        )
    requests = dependencies.find("requests")
    if requests is not None:
        yield Finding(
            message=f"`requests` is a runtime dependency of the project: `{requests.text}`",
            location=Location(_display(facts, requests.file), requests.line, requests.column),
            fix="Use `httpx` (its `AsyncClient`) instead of `requests`, and drop the dependency.",
        )


# -- FR804: Dockerfile -------------------------------------------------------------------------------


@dataclass
class Stage:
    base: str
    alias: str | None
    start: Instruction
    instructions: list[Instruction] = dataclasses.field(default_factory=list)


def _stages(instructions: list[Instruction]) -> tuple[list[Stage], dict[str, str]]:
    stages: list[Stage] = []
    arguments: dict[str, str] = {}
    for instruction in instructions:
        if instruction.keyword == "ARG" and not stages:
            name, _, default = instruction.arguments.partition("=")
            arguments[name.strip()] = default.strip().strip("\"'")
            continue
        if instruction.keyword == "FROM":
            words = [w for w in instruction.arguments.split() if not w.startswith("--")]
            base = _substitute(words[0], arguments) if words else ""
            alias = words[2] if len(words) >= 3 and words[1].lower() == "as" else None
            stages.append(Stage(base=base, alias=alias, start=instruction))
            continue
        if stages:
            stages[-1].instructions.append(instruction)
    return stages, arguments


def _substitute(text: str, arguments: dict[str, str]) -> str:
    def replace(match: re.Match[str]) -> str:
        name = match.group(1) or match.group(2)
        value = arguments.get(name.split(":-")[0])
        if value:
            return value
        if ":-" in name:
            return name.split(":-", 1)[1]
        return match.group(0)

    return re.sub(r"\$\{([^}]+)\}|\$([A-Za-z_][A-Za-z0-9_]*)", replace, text)


_DEPRECATED_IMAGE = re.compile(r"(^|/)tiangolo/(uvicorn-gunicorn|uvicorn-gunicorn-fastapi|gunicorn-uvicorn)")


_OFFICIAL_PYTHON_SLIM = re.compile(
    r"^(docker\.io/)?(library/)?python:[^@\s]*slim[^@\s]*(@sha256:[0-9a-f]+)?$", re.IGNORECASE
)


_ROOT_USERS = frozenset({"root", "0", "0:0", "root:root"})


_SERVER = re.compile(r"\bfastapi\b[\"',\s\]]*run\b|\buvicorn\b", re.IGNORECASE)


def _chain(stages: list[Stage], stage: Stage) -> list[Stage]:
    """The stage and the earlier stages it is built FROM (by alias), nearest first."""
    chain = [stage]
    by_alias = {s.alias.lower(): s for s in stages if s.alias}
    current = stage
    while current.base.lower() in by_alias and len(chain) < len(stages):
        current = by_alias[current.base.lower()]
        if current in chain:
            break
        chain.append(current)
    return chain


def dockerfile_problems(
    text: str, scripts: dict[str, str] | None = None
) -> list[tuple[Instruction | None, str]]:
    """What FR804 finds in one Dockerfile: (instruction to point at, message) pairs.

    ``scripts`` maps file names to contents for ``CMD ["./start.sh"]``-style entry points. A
    Dockerfile without CMD/ENTRYPOINT gets its command from the orchestrator and is not judged on it.
    """
    instructions = parse_dockerfile(text)
    stages, _ = _stages(instructions)
    if not stages:
        return [(None, "has no FROM instruction")]
    problems: list[tuple[Instruction | None, str]] = []
    for stage in stages:
        if _DEPRECATED_IMAGE.search(stage.base):
            problems.append((stage.start, f"is based on the deprecated image `{stage.base}`"))
    final = stages[-1]
    chain = _chain(stages, final)
    root_base = chain[-1].base
    if len(stages) < 2:
        problems.append((final.start, "is a single-stage build (no separate builder stage)"))
    if not _DEPRECATED_IMAGE.search(root_base) and not _OFFICIAL_PYTHON_SLIM.match(root_base):
        problems.append((final.start, f"runs on `{root_base}`, not an official `python:*-slim` image"))
    runtime = [instruction for stage in reversed(chain) for instruction in stage.instructions]
    users = [i for i in runtime if i.keyword == "USER"]
    if not users:
        problems.append((final.start, "runs as root (no USER instruction in the final stage)"))
    else:
        user = (users[-1].arguments.split() or ["root"])[0].lower()
        if user in _ROOT_USERS:
            problems.append((users[-1], f"runs as root (`USER {users[-1].arguments}`)"))
    checks = [i for i in runtime if i.keyword == "HEALTHCHECK"]
    if not checks or checks[-1].arguments.split()[:1] == ["NONE"]:
        problems.append((final.start, "has no HEALTHCHECK"))
    # No CMD/ENTRYPOINT at all: the orchestrator (compose, Kubernetes) passes the command; not judged.
    commands = [i for i in runtime if i.keyword in ("CMD", "ENTRYPOINT")]
    if (
        commands
        and not any(_starts_server(command, scripts or {}) for command in commands)
        and _judgeable(commands, scripts or {})
    ):
        problems.append((commands[-1], "does not start the app with `fastapi run` (or uvicorn)"))
    return problems


def _command_words(instruction: Instruction) -> list[str]:
    arguments = instruction.arguments
    if arguments.startswith("["):
        try:
            value = json.loads(arguments)
            if isinstance(value, list):
                return [str(v) for v in value]
        except ValueError:
            pass
    try:
        return shlex.split(arguments)
    except ValueError:
        return arguments.split()


def _script_of(instruction: Instruction, scripts: dict[str, str]) -> str | None:
    for word in _command_words(instruction):
        name = Path(word).name
        if name.endswith((".sh", ".bash")) or name in scripts:
            return scripts.get(name, "")
    return None


def _starts_server(instruction: Instruction, scripts: dict[str, str]) -> bool:
    if _SERVER.search(" ".join(_command_words(instruction))):
        return True
    script = _script_of(instruction, scripts)
    return script is not None and _SERVER.search(script) is not None


def _judgeable(commands: list[Instruction], scripts: dict[str, str]) -> bool:
    """A script entry point we cannot read is not judged (it may well run uvicorn)."""
    return not any(_script_of(command, scripts) == "" for command in commands)


_DEV_DOCKERFILE = re.compile(r"(?i)(^|[._-])(dev|devel|development|test|tests|local|debug|ci)([._-]|$)")


def dockerfiles(root: Path) -> list[Path]:
    """``Dockerfile``, ``Dockerfile.<x>`` and ``<x>.Dockerfile`` at the root, development ones left out."""
    found = []
    for path in sorted(root.iterdir()):
        name = path.name
        if not path.is_file():
            continue
        lowered = name.lower()
        if lowered == "dockerfile" or lowered.startswith("dockerfile.") or lowered.endswith(".dockerfile"):
            qualifier = re.sub(r"(?i)dockerfile", "", name)
            if _DEV_DOCKERFILE.search(qualifier):
                continue
            found.append(path)
    return found


def _scripts(root: Path, text: str) -> dict[str, str]:
    """Contents of the shell scripts a Dockerfile names, found at or below the project root."""
    scripts: dict[str, str] = {}
    for name in set(re.findall(r"[\w./-]+\.(?:sh|bash)\b", text)):
        base = Path(name).name
        for candidate in [root / name.lstrip("./"), *root.glob(f"*/{base}"), *root.glob(f"*/*/{base}")]:
            if candidate.is_file():
                try:
                    scripts[base] = candidate.read_text(encoding="utf-8", errors="replace")
                except OSError:
                    continue
                break
    return scripts


@rule(
    code="FR804",
    name="dockerfile",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.PROJECT,
    section="Rule #23",
    summary="Where a Dockerfile exists: not based on `tiangolo/uvicorn-gunicorn-fastapi`, multi-stage, "
    "official `python:*-slim` base, runs as a non-root `USER`, has a `HEALTHCHECK`, starts with "
    "`fastapi run` (or uvicorn).",
    rationale=(
        "The tiangolo image is deprecated; a multi-stage build on the official slim image keeps "
        "compilers out of the runtime image; root in a container is root on a kernel exploit; a "
        "HEALTHCHECK lets the orchestrator restart a hung worker."
    ),
    fix="Follow the rulebook's Dockerfile: builder stage + `FROM python:3.12-slim`, `USER appuser`, "
    '`HEALTHCHECK ...`, `CMD ["fastapi", "run", "src/main.py"]`.',
    bad_example="FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11\nCOPY ./app /app",
    good_example="FROM python:3.12-slim AS builder\n...\nFROM python:3.12-slim\n...\nUSER appuser\n"
    'HEALTHCHECK CMD python -c "..."\nCMD ["fastapi", "run", "src/main.py"]',
)
def check_dockerfile(context: CheckContext) -> Iterator[Finding]:
    """The Dockerfile(s) at the project root (``Dockerfile``, ``Dockerfile.prod``, ``api.Dockerfile``;
    development ones such as ``Dockerfile.dev`` are left out). The final stage is judged through the
    stages it is built FROM; ``ARG`` defaults are substituted in FROM lines; an entry-point script
    is read when it is in the project, and not judged when it is not. Instructions are read as
    BuildKit reads them (`pytest_fastapi_rules.dockerfile`): a ``USER`` or ``HEALTHCHECK`` line
    inside a heredoc body is a file's or a script's text, not an instruction."""
    facts = context.facts
    root = project_root(facts)
    if root is None:
        raise RuleSkipped("no project root (pyproject.toml, requirements.txt or Dockerfile) above the app")
    files = dockerfiles(root)
    if not files:
        raise RuleSkipped(f"no Dockerfile at the project root ({_display(facts, root) or '.'})")
    for path in files:
        try:
            text = read_text(path)
        except OSError as exc:
            yield Finding(
                message=f"`{path.name}` cannot be read: {exc}", location=Location(_display(facts, path))
            )
            continue
        for instruction, problem in dockerfile_problems(text, _scripts(root, text)):
            excerpt = f": `{_short(instruction.text)}`" if instruction is not None else ""
            yield Finding(
                message=f"`{path.name}` {problem}{excerpt}",
                location=Location(
                    _display(facts, path),
                    instruction.line if instruction is not None else 1,
                    instruction.column if instruction is not None else 1,
                ),
            )


def _short(text: str, limit: int = 80) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1].rstrip() + "…"
