"""FR8xx: stack, observability, deployment (stack list, Rules #18, #23, #24)."""

from __future__ import annotations

import ast
import functools
import inspect
import re
import sys
import textwrap
import typing
from collections.abc import Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

from pytest_fastapi_rules.facts import AppFacts, is_subclass, type_hints, unwrap_callable
from pytest_fastapi_rules.registry import (
    Basis,
    CheckContext,
    Finding,
    Location,
    Scope,
    Severity,
    rule,
)
from pytest_fastapi_rules.rules.wiring import is_app_code_module
from pytest_fastapi_rules.source import source_index

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
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(wrapped)))
    except (OSError, TypeError, SyntaxError, ValueError):
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


def _module_tree(facts: AppFacts, module: ModuleType) -> ast.Module | None:
    """A module's parsed source, or None when it has no readable ``.py`` source.

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
        return indexed.tree
    return _parsed(str(path), mtime)


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
    for module in modules:
        tree = _module_tree(facts, module)
        if tree is None:
            continue
        readable = True
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
