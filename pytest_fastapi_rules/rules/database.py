"""FR5xx: database (Rules #11, #12, #13, #19 and the database.py template).

FR501-FR504 judge the engines and session factories the app actually created: they are found once
the lifespan has started (``AppFacts.runtime_facts``), and FR503 asks a fresh process started with
the production environment (:mod:`pytest_fastapi_rules.production`). FR505-FR508 judge the ORM
classes of the app's own models, which exist as soon as the app is imported.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules.discovery import DiscoveryError, runtime_facts
from pytest_fastapi_rules.facts import Discovered, is_subclass, unwrap_callable
from pytest_fastapi_rules.production import production_facts_for_rule
from pytest_fastapi_rules.registry import (
    Basis,
    CheckContext,
    Finding,
    Location,
    RuleSkipped,
    Scope,
    Severity,
    UserSetupError,
    rule,
)
from pytest_fastapi_rules.rules.common import _lifespan_parts, code_of, start_production_child
from pytest_fastapi_rules.sqla import engine_key, is_async_session_factory, is_session_factory, is_sync_engine

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper

    from pytest_fastapi_rules.facts import AppFacts

#: FR502 bounds: the union of the rulebook's development and production rows (Rule #19).
MAX_POOL_RECYCLE = 3600
POOL_SIZE_RANGE = (2, 20)
MAX_OVERFLOW_RANGE = (5, 20)

#: FR507: the constraint kinds a naming convention must name, and the class keys that also count.
CONVENTION_KEYS = {
    "ix": "Index",
    "uq": "UniqueConstraint",
    "ck": "CheckConstraint",
    "fk": "ForeignKeyConstraint",
    "pk": "PrimaryKeyConstraint",
}

_NO_ENGINE = (
    "no SQLAlchemy engine found after startup (looked at the globals of the app's modules, the "
    "objects of the app's classes held there such as a session manager, app.state and the lifespan "
    "state). If the app keeps its engine elsewhere, name it in the ini key fastapi_rules_engines "
    "(module:attribute, e.g. src.database:engine) or name its session factory in "
    "fastapi_rules_session_factories"
)
_NO_FACTORY = (
    "no SQLAlchemy session factory (async_sessionmaker or sessionmaker) found after startup. If "
    "the app keeps it somewhere discovery does not look, name it in the ini key "
    "fastapi_rules_session_factories (module:attribute, e.g. src.database:SessionLocal)"
)


# -- engines ------------------------------------------------------------------------------------------


def _sync_engine(engine: Any) -> Any:
    """The sync ``Engine`` behind an ``AsyncEngine`` (its settings and pool live there)."""
    return getattr(engine, "sync_engine", engine)


def _pool_of(engine: Any) -> Any:
    return getattr(_sync_engine(engine), "pool", None)


def _describe_engine(facts: AppFacts, discovered: Discovered) -> tuple[str, Location | None]:
    """The engine's path plus its driver, e.g. ```src.database.sessionmanager._engine`
    (sqlite+aiosqlite)``, named after the module that creates it, and where that is."""
    shown, location = place_of_where(facts, discovered.where)
    url = getattr(_sync_engine(discovered.obj), "url", None)
    driver = getattr(url, "drivername", None)
    return (f"`{shown}` ({driver})" if driver else f"`{shown}`"), location


def _engines(context: CheckContext) -> list[Discovered]:
    found = runtime_facts(context.facts, context.options.engine_paths, context.options.session_factory_paths)
    if not found.engines:
        raise RuleSkipped(_NO_ENGINE)
    return found.engines


def _dialect_of(engine: Any) -> str:
    """The engine's dialect name (``postgresql``, ``sqlite``), sync or async engine alike."""
    return str(getattr(getattr(engine, "dialect", None), "name", "") or "")


def _is_null_pool(pool: Any) -> bool:
    from sqlalchemy.pool import NullPool

    return isinstance(pool, NullPool)


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
        state = getattr(facts.runtime, "lifespan_state", None) or {}
        value = state.get(key) if isinstance(state, dict) else None
    elif where.startswith("app.state."):
        state = getattr(getattr(facts.app, "state", None), "_state", None) or {}
        value = state.get(where.split(" ", 1)[0][len("app.state.") :])
    if value is not None and where.endswith(" (bind)"):
        value = getattr(value, "kw", {}).get("bind")
    return value


def place_of_where(facts: AppFacts, where: str) -> tuple[str, Location | None]:
    """How to name a discovered object's path in a message, and where it is in the app's code.

    ``module.name`` (or the ini form ``module:name``) is followed to the module that creates the
    object (see :func:`_defining_global`) and points at that assignment; ``module.obj.attr``
    points at the class of ``obj`` when it is the app's own (a session manager); ``app.state``
    and lifespan-state objects point at the line of the lifespan that creates them.
    """
    suffix = " (bind)" if where.endswith(" (bind)") else ""
    if where.startswith(("app.state.", "lifespan state")):
        obj = _state_object(facts, where)
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


@rule(
    code="FR501",
    name="pool-pre-ping",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rule #19, database.py template",
    summary="Every engine the app uses has `pool_pre_ping=True`.",
    rationale=(
        "Databases, proxies and load balancers close idle connections; without a pre-ping the pool "
        "hands such a dead connection to the next request, which fails with a disconnect error."
    ),
    fix="Pass `pool_pre_ping=True` to `create_async_engine(...)`.",
    needs_running_app=True,
    bad_example="engine = create_async_engine(settings.DATABASE_URL)",
    good_example="engine = create_async_engine(settings.DATABASE_URL, pool_pre_ping=True)",
)
def check_pool_pre_ping(context: CheckContext) -> Iterator[Finding]:
    engines = _engines(context)
    # NullPool opens a fresh connection on every checkout: there is never a stale one to ping.
    checked = [e for e in engines if not _is_null_pool(_pool_of(e.obj))]
    if not checked:
        raise RuleSkipped(
            "every engine found uses NullPool, which opens a new connection each time: "
            "there is no idle connection to ping"
        )
    for discovered in checked:
        pre_ping = getattr(_pool_of(discovered.obj), "_pre_ping", None)
        if pre_ping is None or bool(pre_ping):
            continue
        described, location = _describe_engine(context.facts, discovered)
        yield Finding(
            message=f"engine {described} is created without pool_pre_ping=True",
            location=location,
        )


@rule(
    code="FR502",
    name="pool-configured",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rule #19",
    summary=(
        "Pooled engines of a database server (SQLite files are exempt) set a positive "
        "`pool_recycle` (at most 3600 s) and keep `pool_size` within 2-20 and `max_overflow` "
        "within 5-20 (the rulebook's development and production rows)."
    ),
    rationale=(
        "SQLAlchemy's default `pool_recycle=-1` keeps a connection forever, past the server's or "
        "the proxy's idle timeout; a pool that is too small queues requests, one that is too large "
        "exhausts the database's connection limit when the app runs several workers."
    ),
    fix="Pass `pool_size=5, max_overflow=10, pool_timeout=30, pool_recycle=3600` (from settings).",
    needs_running_app=True,
    bad_example="engine = create_async_engine(url, pool_pre_ping=True)  # recycle -1",
    good_example=(
        "engine = create_async_engine(\n    url, pool_pre_ping=True, pool_size=5, max_overflow=10,\n"
        "    pool_timeout=30, pool_recycle=3600,\n)"
    ),
)
def check_pool_configured(context: CheckContext) -> Iterator[Finding]:
    from sqlalchemy.pool import QueuePool

    engines = _engines(context)
    pooled = [e for e in engines if isinstance(_pool_of(e.obj), QueuePool)]
    if not pooled:
        kinds = ", ".join(sorted({f"{e.where} uses {type(_pool_of(e.obj)).__name__}" for e in engines}))
        raise RuleSkipped(
            f"no engine keeps a connection pool ({kinds}); pool sizing and recycling only apply to "
            "QueuePool/AsyncAdaptedQueuePool engines"
        )
    # SQLite is a file: no server closes idle connections or caps how many a worker opens, which
    # is all the rulebook's recycle and size table is about (mealie's SQLite file engine).
    served = [e for e in pooled if _dialect_of(e.obj) != "sqlite"]
    if not served:
        raise RuleSkipped(
            f"every pooled engine is SQLite ({', '.join(sorted({e.where for e in pooled}))}): no "
            "database server closes its idle connections or limits their number, which is what "
            "pool_recycle and the pool size table guard against"
        )
    pooled = served
    low_size, high_size = POOL_SIZE_RANGE
    low_overflow, high_overflow = MAX_OVERFLOW_RANGE
    for discovered in pooled:
        pool = _pool_of(discovered.obj)
        problems: list[str] = []
        recycle = getattr(pool, "_recycle", None)
        if isinstance(recycle, int | float):
            if recycle <= 0:
                problems.append(f"pool_recycle={recycle:g} (connections are never recycled)")
            elif recycle > MAX_POOL_RECYCLE:
                problems.append(f"pool_recycle={recycle:g} (more than {MAX_POOL_RECYCLE} s)")
        size = pool.size()
        if not low_size <= size <= high_size:
            shown = "0 (unlimited)" if size == 0 else str(size)
            problems.append(f"pool_size={shown} (expected {low_size}-{high_size})")
        overflow = getattr(pool, "_max_overflow", None)
        if isinstance(overflow, int) and not low_overflow <= overflow <= high_overflow:
            shown = "-1 (unlimited)" if overflow < 0 else str(overflow)
            problems.append(f"max_overflow={shown} (expected {low_overflow}-{high_overflow})")
        if problems:
            described, location = _describe_engine(context.facts, discovered)
            yield Finding(
                message=f"engine {described} has {'; '.join(problems)}",
                location=location,
            )


@rule(
    code="FR503",
    name="echo-off-in-production",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    background=start_production_child,
    section="Rule #19",
    summary="`echo` is off on every engine when the production environment is set.",
    rationale=(
        "`echo=True` logs every SQL statement with its parameters: in production that floods the "
        "logs, slows every query, and writes personal data and secrets to log storage."
    ),
    fix="Take `echo` from a setting that is False in production (`echo=settings.DB_ECHO`).",
    bad_example='engine = create_async_engine(url, echo=settings.ENVIRONMENT == "production")',
    good_example="engine = create_async_engine(url, echo=settings.DB_ECHO)  # False by default",
)
def check_echo_off_in_production(context: CheckContext) -> Iterator[Finding]:
    try:
        # A warning rule: an app that cannot start in production mode skips it (with the reason
        # and how to configure fastapi_rules_production_env), it does not fail the run.
        production = production_facts_for_rule(context.facts, context.options, "FR503", Severity.WARNING)
    except DiscoveryError as exc:
        raise UserSetupError(str(exc)) from None
    if not production.engines:
        raise RuleSkipped(
            f"with the production environment set ({production.env_label}) the app created no "
            f"engine that discovery finds: {_NO_ENGINE}"
        )
    for engine in production.engines:
        if not engine.echo:
            continue
        shown, location = place_of_where(context.facts, engine.where)
        yield Finding(
            message=(
                f"engine `{shown}` has echo={engine.echo!r} with {production.env_label} set: "
                "every SQL statement and its parameters go to the log"
            ),
            location=location,
        )


# -- session factories ------------------------------------------------------------------------------


@rule(
    code="FR504",
    name="expire-on-commit-off",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.APP,
    section="database.py template, Rule #11",
    summary=(
        "The app's async session factory sets `expire_on_commit=False` (and `autoflush=False`, as a warning)."
    ),
    rationale=(
        "With the default `expire_on_commit=True` every object is expired at commit; reading one "
        "of its attributes afterwards (e.g. while serialising the response) needs a lazy load, "
        "which an AsyncSession cannot do implicitly: MissingGreenlet. Autoflush issues hidden SQL "
        "inside queries, which makes the order of writes hard to follow."
    ),
    fix="Create the factory with `async_sessionmaker(engine, expire_on_commit=False, autoflush=False)`.",
    needs_running_app=True,
    bad_example="SessionLocal = async_sessionmaker(engine)",
    good_example="SessionLocal = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)",
)
def check_expire_on_commit_off(context: CheckContext) -> Iterator[Finding]:
    found = runtime_facts(context.facts, context.options.engine_paths, context.options.session_factory_paths)
    if not found.session_factories:
        if found.engines:
            raise RuleSkipped(
                "the app has engines but no session factory: it builds sessions directly (e.g. "
                "`Session(engine)` in its session dependency), so there is no factory setting to "
                "judge. If a factory exists where discovery does not look, name it in the ini key "
                "fastapi_rules_session_factories"
            )
        raise RuleSkipped(_NO_FACTORY)
    factories = [f for f in found.session_factories if is_async_session_factory(f.obj)]
    if not factories:
        # With a sync Session an expired attribute reloads transparently (one SELECT); the
        # MissingGreenlet failure this rule prevents only exists with AsyncSession.
        names = ", ".join(f.where for f in found.session_factories)
        raise RuleSkipped(
            f"the app's session factories ({names}) make sync sessions, where expired attributes "
            "reload transparently; the rule is about AsyncSession"
        )
    for factory in factories:
        options = dict(getattr(factory.obj, "kw", {}) or {})
        shown, location = place_of_where(context.facts, factory.where)
        if options.get("expire_on_commit", True):
            yield Finding(
                message=(
                    f"session factory `{shown}` keeps expire_on_commit=True: objects read "
                    "after commit trigger a lazy load (MissingGreenlet)"
                ),
                location=location,
            )
        if options.get("autoflush", True):
            yield Finding(
                message=f"session factory `{shown}` keeps autoflush=True",
                location=location,
                fix="Pass `autoflush=False` and flush explicitly where the order of writes matters.",
                severity=Severity.WARNING,
            )


# -- ORM models ---------------------------------------------------------------------------------------


def _own_mapped_classes(facts: AppFacts) -> list[type]:
    """The app's own ORM classes, their mappers configured; RuleSkipped when the app has none.

    Reading relationships configures the mappers; when the app's models cannot be configured (a
    relationship to a class that does not exist...), that is the app's error, reported as such
    rather than as a crash of the rule.
    """
    classes = [cls for cls in facts.mapped_classes if facts.is_own_object(cls)]
    if not classes:
        raise RuleSkipped("the app has no SQLAlchemy ORM models")
    registries = {id(_mapper(cls).registry): _mapper(cls).registry for cls in classes}
    for registry in registries.values():
        try:
            registry.configure(cascade=True)
        except Exception as exc:  # noqa: BLE001 - the app's models are broken
            raise UserSetupError(
                f"SQLAlchemy cannot configure the app's ORM models ({type(exc).__name__}: {exc}); "
                "the app fails the same way at its first query"
            ) from None
    return classes


def _mapper(cls: type) -> Mapper[Any]:
    from sqlalchemy import inspect as sa_inspect

    return sa_inspect(cls)


def _is_sqlmodel(cls: type) -> bool:
    return any(getattr(k, "__module__", "").split(".")[0] == "sqlmodel" for k in cls.__mro__)


def _describe_class(facts: AppFacts, cls: type) -> tuple[str, Location | None]:
    """A class's name and place, for messages: its own when the app defines it, else the global
    the app holds it in (``Base = declarative_base()`` makes a class whose module is SQLAlchemy's)."""
    if facts.is_own_object(cls):
        return code_of(cls), facts.location_of(cls)
    for where, value in facts.own_globals():
        if value is cls:
            return where, location_of_where(facts, where)
    return code_of(cls), None


def _declarative_base(cls: type) -> type | None:
    """The class the model's registry was created for: a ``DeclarativeBase`` subclass, or the
    result of ``declarative_base()`` (both hold ``registry`` in their own ``__dict__``)."""
    registry = _mapper(cls).registry
    for klass in cls.__mro__[1:]:
        if vars(klass).get("registry") is registry:
            return klass
    return None


_MAPPED_TEXT = re.compile(r"^\s*(?:[A-Za-z_]\w*\.)*(?:Mapped|WriteOnlyMapped|DynamicMapped)\s*\[")


def _is_mapped_annotation(annotation: Any) -> bool:
    """``Mapped[...]`` (or a ``Mapped``-family generic); as text when annotations are strings."""
    import typing

    try:  # the common base of Mapped, WriteOnlyMapped and DynamicMapped (private, hence the guard)
        from sqlalchemy.orm.base import _MappedAnnotationBase as mapped_base
    except ImportError:  # pragma: no cover - older SQLAlchemy 2.0 releases
        from sqlalchemy.orm import Mapped as mapped_base

    if isinstance(annotation, str):
        return bool(_MAPPED_TEXT.match(annotation))
    if isinstance(annotation, typing.ForwardRef):
        return bool(_MAPPED_TEXT.match(annotation.__forward_arg__))
    origin = typing.get_origin(annotation) or annotation
    return is_subclass(origin, mapped_base)


def _own_annotations(klass: type) -> dict[str, Any]:
    try:
        return dict(inspect.get_annotations(klass))
    except Exception:  # noqa: BLE001 - an annotation that cannot be evaluated is still text
        return dict(vars(klass).get("__annotations__", {}) or {})


def _declaration_value(value: Any) -> bool:
    """Whether a class ``__dict__`` value declares a column (a mixin's attribute, pre-mapping)."""
    from sqlalchemy import Column
    from sqlalchemy.orm import ColumnProperty, MappedColumn
    from sqlalchemy.orm.decl_api import declared_attr

    return isinstance(value, Column | MappedColumn | ColumnProperty | declared_attr)


def _declared_attr_is_mapped(value: Any) -> bool:
    """A mixin's ``@declared_attr def x(cls) -> Mapped[int]`` is annotated through its return type."""
    from sqlalchemy.orm.decl_api import declared_attr

    if not isinstance(value, declared_attr):
        return False
    function = getattr(value, "fget", None)
    annotations = getattr(function, "__annotations__", None) or {}
    return "return" in annotations and _is_mapped_annotation(annotations["return"])


def _is_table_column_property(prop: Any) -> bool:
    """A column attribute over real table columns (not a ``column_property(select(...))``)."""
    from sqlalchemy import Column, Table

    columns = list(getattr(prop, "columns", []) or [])
    return bool(columns) and all(
        isinstance(c, Column) and isinstance(getattr(c, "table", None), Table) for c in columns
    )


def _unannotated_columns(cls: type) -> list[str]:
    """Column attributes declared on ``cls`` or its mixins without a ``Mapped[...]`` annotation.

    Columns inherited from another mapped class are that class's business (it is checked on its
    own); columns that no class declares (``__table__ = Table(...)``, imperative mapping) have no
    declaration to annotate.
    """
    mapper = _mapper(cls)
    inherited = set(mapper.inherits.column_attrs.keys()) if mapper.inherits is not None else set()
    declares_table_by_name = any("__tablename__" in vars(k) for k in cls.__mro__)
    # `location: Mapped[Location] = composite(mapped_column("lat"), mapped_column("lng"))`: the
    # columns are declared inside the annotated composite, SQLAlchemy 2.0's documented form.
    in_composites = {
        column.key for composite in mapper.composites for column in getattr(composite, "columns", ())
    }
    problems: list[str] = []
    for prop in mapper.column_attrs:
        key = prop.key
        if key in inherited or not _is_table_column_property(prop):
            continue
        if key in in_composites and not any(
            key in _own_annotations(k) for k in cls.__mro__ if k is not object
        ):
            continue
        for klass in cls.__mro__:
            if klass is object:
                continue
            annotations = _own_annotations(klass)
            if key in annotations:
                if not _is_mapped_annotation(annotations[key]):
                    text = annotations[key] if isinstance(annotations[key], str) else None
                    shown = text or getattr(annotations[key], "__name__", repr(annotations[key]))
                    problems.append(_declared_in(f"{key} (annotated `{shown}`)", klass, cls))
                break
            value = vars(klass).get(key)
            if klass is not cls and _declaration_value(value):
                if not _declared_attr_is_mapped(value):
                    problems.append(_declared_in(key, klass, cls))
                break
        else:
            # No class annotates it and no mixin declares it: `x = Column(...)` on the model itself
            # (the declaration was replaced by the instrumented attribute), unless the table was
            # given ready-made.
            if declares_table_by_name and key in vars(cls):
                problems.append(key)
    return problems


def _declared_in(text: str, klass: type, cls: type) -> str:
    return text if klass is cls else f"{text} (declared in `{klass.__qualname__}`)"


@rule(
    code="FR505",
    name="mapped-annotations",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rule #11",
    summary="Every mapped column of every ORM model is declared with a `Mapped[...]` annotation.",
    rationale=(
        "SQLAlchemy 2.0 typing reads `Mapped[...]` annotations: without them type checkers and IDEs "
        "see `Column` objects instead of values, and nullability is not derived from the type."
    ),
    fix="Declare the column as `name: Mapped[str] = mapped_column(String(50))`.",
    bad_example="class User(Base):\n    __tablename__ = 'users'\n    email = Column(String(255))",
    good_example=(
        "class User(Base):\n    __tablename__ = 'users'\n    email: Mapped[str] = mapped_column(String(255))"
    ),
)
def check_mapped_annotations(context: CheckContext) -> Iterator[Finding]:
    classes = _own_mapped_classes(context.facts)
    checked = [cls for cls in classes if not _is_sqlmodel(cls)]
    if not checked:
        raise RuleSkipped(
            "the app's models are SQLModel classes, whose columns are pydantic fields; "
            "Mapped[...] annotations do not apply"
        )
    for cls in checked:
        problems = _unannotated_columns(cls)
        if problems:
            yield Finding(
                message=(
                    f"model `{code_of(cls)}` has columns without a Mapped[...] annotation: "
                    f"{', '.join(problems)}"
                ),
                location=context.facts.location_of(cls),
            )


@rule(
    code="FR506",
    name="async-attrs-base",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rule #13",
    summary="The declarative base of the app's models mixes in `AsyncAttrs`.",
    rationale=(
        "`AsyncAttrs` gives every model `await obj.awaitable_attrs.relation`, the safe way to load "
        "a relationship lazily under an AsyncSession; without it the only option is an implicit "
        "lazy load, which raises MissingGreenlet."
    ),
    fix="Declare the base as `class Base(AsyncAttrs, DeclarativeBase): ...`.",
    bad_example="class Base(DeclarativeBase):\n    pass",
    good_example="class Base(AsyncAttrs, DeclarativeBase):\n    pass",
)
def check_async_attrs_base(context: CheckContext) -> Iterator[Finding]:
    try:
        from sqlalchemy.ext.asyncio import AsyncAttrs
    except ImportError:  # SQLAlchemy before 2.0.13
        import sqlalchemy

        raise RuleSkipped(
            f"the installed SQLAlchemy {sqlalchemy.__version__} has no AsyncAttrs (added in 2.0.13): "
            "upgrade SQLAlchemy to use it"
        ) from None

    classes = _own_mapped_classes(context.facts)
    models_by_base: dict[type, list[type]] = {}
    for cls in classes:
        base = _declarative_base(cls)
        if base is not None:
            models_by_base.setdefault(base, []).append(cls)
    if not models_by_base:
        raise RuleSkipped(
            "the app's models have no declarative base class (mapped with a registry decorator "
            "or imperatively)"
        )
    for base, models in models_by_base.items():
        if issubclass(base, AsyncAttrs):
            continue
        # Mixing AsyncAttrs into each model instead of the base gives the same awaitable_attrs.
        lacking = [m for m in models if not issubclass(m, AsyncAttrs)]
        if not lacking:
            continue
        names = ", ".join(m.__qualname__ for m in lacking)
        shown, location = _describe_class(context.facts, base)
        yield Finding(
            message=f"declarative base `{shown}` does not mix in AsyncAttrs (models: {names})",
            location=location,
        )


def _convention_missing(metadata: Any) -> list[str]:
    """Which of ix/uq/ck/fk/pk the metadata's naming convention does not name."""
    import sqlalchemy

    convention = dict(getattr(metadata, "naming_convention", {}) or {})
    missing = []
    for key, class_name in CONVENTION_KEYS.items():
        if key in convention or getattr(sqlalchemy, class_name) in convention:
            continue
        missing.append(key)
    return missing


@rule(
    code="FR507",
    name="naming-convention",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="database.py template",
    summary="The metadata of the app's models has a naming convention for ix, uq, ck, fk and pk.",
    rationale=(
        "Without a convention the database names unnamed constraints itself, differently on each "
        "backend, and migrations (Alembic) cannot drop or alter them by a predictable name."
    ),
    fix=(
        'Give the base `metadata = MetaData(naming_convention={"ix": ..., "uq": ..., '
        '"ck": ..., "fk": ..., "pk": ...})` as in the database.py template.'
    ),
    bad_example="class Base(AsyncAttrs, DeclarativeBase):\n    pass",
    good_example=(
        "class Base(AsyncAttrs, DeclarativeBase):\n    metadata = MetaData(naming_convention=convention)"
    ),
)
def check_naming_convention(context: CheckContext) -> Iterator[Finding]:
    classes = _own_mapped_classes(context.facts)
    owners: dict[int, tuple[Any, list[type]]] = {}
    for cls in classes:
        for table in _mapper(cls).tables:
            metadata = getattr(table, "metadata", None)
            if metadata is not None:
                owners.setdefault(id(metadata), (metadata, []))[1].append(cls)
    for metadata, models in owners.values():
        missing = _convention_missing(metadata)
        if not missing:
            continue
        owner: type | None = None
        for cls in models:
            base = _declarative_base(cls)
            if base is not None and vars(base).get("metadata") is metadata:
                owner = base
                break
        name, location = _describe_class(context.facts, owner if owner is not None else models[0])
        shown = f"base `{name}`" if owner is not None else f"model `{name}`"
        yield Finding(
            message=(
                f"the MetaData of {shown} has no naming convention for {', '.join(missing)}"
                + (" (SQLAlchemy's default only names indexes)" if missing != ["ix"] else "")
            ),
            location=location,
        )


#: ``lazy=`` values that load implicitly with a SELECT when the attribute is first read.
IMPLICIT_LAZY = ("select", True)


@rule(
    code="FR508",
    name="relationship-lazy-raise",
    severity=Severity.WARNING,
    scope=Scope.APP,
    basis=Basis.APP,
    section="Rule #11, Rule #12",
    summary=(
        'Relationships use `lazy="raise"`/`"raise_on_sql"` or an explicit loading strategy, '
        'never the implicit `"select"`.'
    ),
    rationale=(
        "The default lazy load runs one SELECT per object when the attribute is read: N+1 "
        "queries, and under an AsyncSession a MissingGreenlet error instead of data."
    ),
    fix='Declare `relationship(..., lazy="raise")` and load it with selectinload()/joinedload().',
    bad_example='posts: Mapped[list["Post"]] = relationship(back_populates="author")',
    good_example='posts: Mapped[list["Post"]] = relationship(back_populates="author", lazy="raise")',
)
def check_relationship_lazy_raise(context: CheckContext) -> Iterator[Finding]:
    classes = _own_mapped_classes(context.facts)
    any_relationship = False
    for cls in classes:
        mapper = _mapper(cls)
        # Relationships inherited from a mapped parent class are reported on that class.
        own = [r for r in mapper.relationships if r.parent is mapper]
        any_relationship = any_relationship or bool(own)
        implicit = [r.key for r in own if r.lazy in IMPLICIT_LAZY]
        if implicit:
            yield Finding(
                message=(
                    f"model `{code_of(cls)}` has relationships that lazy-load implicitly "
                    f'(lazy="select"): {", ".join(implicit)}'
                ),
                location=context.facts.location_of(cls),
            )
        # A "dynamic" relationship is a query that runs when the attribute is iterated: the same
        # implicit SELECT per object (and sync IO that AsyncSession refuses). "write_only" and
        # "noload" never load implicitly, so they are explicit strategies.
        dynamic = [r.key for r in own if r.lazy == "dynamic"]
        if dynamic:
            yield Finding(
                message=(
                    f"model `{code_of(cls)}` has relationships that query implicitly when read "
                    f'(lazy="dynamic", a legacy strategy): {", ".join(dynamic)}'
                ),
                location=context.facts.location_of(cls),
                fix='Declare `lazy="write_only"` (query it with `.select()`) or `lazy="raise"` and '
                "load it with selectinload().",
            )
    if not any_relationship:
        raise RuleSkipped("the app's models declare no relationships")
