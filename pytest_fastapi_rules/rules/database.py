"""FR5xx: database (Rules #11, #12, #13, #19 and the database.py template).

FR501-FR504 judge the engines and session factories the app actually created: they are found once
the lifespan has started (``AppFacts.runtime_facts``), and FR503 asks a fresh process started with
the production environment (:mod:`pytest_fastapi_rules.production`). FR505-FR508 judge the ORM
classes of the app's own models, which exist as soon as the app is imported. FR509-FR511 read the
probe run (SQL counted per request, a lost connection). Where a discovered engine or session factory
is in the app's code is worked out in ``places``.
"""

from __future__ import annotations

import collections.abc
import inspect
import re
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pytest_fastapi_rules.discovery import DiscoveryError, runtime_facts
from pytest_fastapi_rules.facts import Discovered, is_subclass
from pytest_fastapi_rules.probing.results import N_PLUS_ONE_GROWTH, Exchange
from pytest_fastapi_rules.probing.seeding import LARGE, SMALL
from pytest_fastapi_rules.production.facts import production_facts_for_rule
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
from pytest_fastapi_rules.rules.common import any_route, code_of, start_production_child
from pytest_fastapi_rules.rules.places import location_of_where, place_of_where
from pytest_fastapi_rules.rules.probe_support import (
    _auth_note,
    _happy,
    _method_route,
    _probe,
    _unanswered,
    _where_location,
)
from pytest_fastapi_rules.sqla import is_async_session_factory

if TYPE_CHECKING:
    from sqlalchemy.orm import Mapper

    from pytest_fastapi_rules.facts import AppFacts
    from pytest_fastapi_rules.probing.results import ProbeResults

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
    shown, location = place_of_where(facts, discovered.where, discovered.obj)
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
        shown, location = place_of_where(context.facts, factory.where, factory.obj)
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


# -- FR509 no-n-plus-one -----------------------------------------------------------------------------


@rule(
    code="FR509",
    name="no-n-plus-one",
    severity=Severity.ERROR,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #12",
    summary="The number of SQL statements of a GET request does not grow with the number of rows "
    "(measured with 3 and with 9 parents).",
    rationale=(
        "One query per row (a lazy relationship read in a loop, or a repository call per item) turns "
        "a page of 100 rows into 101 round trips; it passes every test on a small database."
    ),
    fix="Load the related rows in the list query: `selectinload(Parent.children)` for one-to-many, "
    "`joinedload(Child.parent)` for many-to-one.",
    applies_to=_method_route("GET"),
    bad_example="posts = (await session.scalars(select(Post))).all()\nfor post in posts:\n"
    "    post.author = await session.get(User, post.author_id)  # one query per post",
    good_example="posts = (await session.scalars(select(Post).options(joinedload(Post.author)))).all()",
    phases=("gets",),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_no_n_plus_one(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR509")
    small_exchange = results.fewest_statements(route.target, "small")
    # A count that grew is sampled twice at the large size (ProbeRun._wants_second_sample), so that
    # one request that happened to run extra statements does not look like a query per row.
    large_exchange = results.fewest_statements(route.target, ("large", "repeat"))
    if small_exchange is None or large_exchange is None:
        raise RuleSkipped(_unanswered(results, route.target, ("small", "large"), route))
    small_count, large_count = small_exchange.count, large_exchange.count
    if not (small_exchange.ok and large_exchange.ok):
        shown = small_exchange.request.shown
        if small_exchange.outcome == large_exchange.outcome:
            raise RuleSkipped(
                f"{shown} {small_exchange.outcome} at both data sizes: no rows to measure"
                + _auth_note(results, route, small_exchange)
            )
        raise RuleSkipped(
            f"{shown} {small_exchange.outcome} with {_seed_words(results, 'small')} and "
            f"{large_exchange.outcome} with {_seed_words(results, 'large')}: no rows to measure"
        )
    if large_count - small_count < N_PLUS_ONE_GROWTH:
        return
    shape, repeats, statement = _repeated_statement(small_exchange, large_exchange)
    hint = _eager_load_hint(context.facts, statement, large_exchange)
    message = (
        f"{route.target} runs {small_count} SQL statements with {_seed_words(results, 'small')} and "
        f"{large_count} with {_seed_words(results, 'large')}: the statement `{shape}` runs "
        f"{repeats} times"
    )
    yield Finding(
        message=message,
        location=route.location,
        fix=hint
        or "Load the related rows in the list query (selectinload for one-to-many, joinedload for "
        "many-to-one) instead of one query per row.",
    )


def _seed_words(results: ProbeResults, phase: str) -> str:
    size = SMALL if phase == "small" else LARGE
    return f"{size} parent rows"


def _repeated_statement(small: Exchange, large: Exchange) -> tuple[str, int, Any]:
    large_shapes = collections.Counter(s.shape for s in large.statements)
    small_shapes = collections.Counter(s.shape for s in small.statements)
    shape, _growth = max(
        large_shapes.items(), key=lambda item: (item[1] - small_shapes.get(item[0], 0), item[1])
    )
    statement = next(s for s in large.statements if s.shape == shape)
    text = statement.short
    return text, large_shapes[shape], statement


def _eager_load_hint(facts: AppFacts, statement: Any, exchange: Exchange) -> str | None:
    """Name the relationship the repeated statement loads, and the eager load that avoids it."""
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import RelationshipDirection

    if statement is None or not statement.tables:
        return None
    repeated_table = statement.tables[0]
    filtered = set(statement.filter_columns)
    other_tables = {t for s in exchange.statements if s is not statement for t in s.tables}
    candidates: list[tuple[int, str, str]] = []
    try:
        classes = list(facts.mapped_classes)
    except Exception:  # noqa: BLE001
        return None
    for cls in classes:
        mapper: Any = sa_inspect(cls, raiseerr=False)
        if mapper is None:
            continue
        for relationship in mapper.relationships:
            target = relationship.mapper.local_table
            if getattr(target, "name", None) != repeated_table:
                continue
            remote = {f"{c.table.name}.{c.name}" for c in relationship.remote_side}
            if filtered and not (remote & filtered):
                continue
            many_to_one = relationship.direction is RelationshipDirection.MANYTOONE
            loader = "joinedload" if many_to_one else "selectinload"
            parent_table = getattr(mapper.local_table, "name", "")
            score = 2 if parent_table in other_tables else 1
            candidates.append((score, f"{cls.__name__}.{relationship.key}", loader))
    if not candidates:
        return None
    candidates.sort(key=lambda item: -item[0])
    _score, attribute, loader = candidates[0]
    kind = "many-to-one" if loader == "joinedload" else "one-to-many"
    return (
        f"Load `{attribute}` eagerly in the query that lists the rows: "
        f"`.options({loader}({attribute}))` ({kind}), instead of one query per row."
    )


# -- FR510 query-budget --------------------------------------------------------------------------------


@rule(
    code="FR510",
    name="query-budget",
    severity=Severity.WARNING,
    scope=Scope.ROUTE,
    basis=Basis.PROBE,
    section="Rule #12",
    summary="No request runs more SQL statements than a budget (default 10; per route in the ini).",
    rationale=(
        "Each statement is a network round trip: a request that needs dozens is slow under load even "
        "when it does not grow with the data."
    ),
    fix="Combine queries (joins, eager loads, one aggregate query), or raise this route's budget "
    "with `fastapi_rules_query_budgets = GET /path = N` when the work is necessary.",
    applies_to=any_route,
    bad_example="stats = {k: await repo.count(k) for k in kinds}  # one query per kind",
    good_example="stats = await repo.count_by_kind()  # one GROUP BY query",
    phases=("gets", "writes"),
    reports_setup_failure=True,
    needs_route_data=True,
    judges_built_requests=True,
)
def check_query_budget(context: CheckContext) -> Iterator[Finding]:
    route = context.the_route
    results = _probe(context, "FR510")
    exchanges = [
        e
        for e in _happy(results, route.target)
        if e.error is None and e.status is not None and e.status < 500
    ]
    if not exchanges:
        raise RuleSkipped(_unanswered(results, route.target, route=route))
    worst = max(exchanges, key=lambda e: e.count)
    budget = context.options.query_budget_for(route.method, route.path)
    if worst.count > budget:
        yield Finding(
            message=f"{worst.request.shown} ran {worst.count} SQL statements, over the budget of {budget}",
            location=route.location,
        )
    elif not any(e.ok for e in exchanges):
        # A refusal (401 before the current user was loaded, 404, 422) runs a few statements and
        # stops: it shows nothing about what the route's work costs.
        raise RuleSkipped(_unanswered(results, route.target, route=route))


# -- FR511 survives-connection-loss --------------------------------------------------------------------------


@rule(
    code="FR511",
    name="survives-connection-loss",
    severity=Severity.ERROR,
    scope=Scope.APP,
    basis=Basis.PROBE,
    section="Rule #19, database.py template",
    summary="After PostgreSQL drops every connection (`pg_terminate_backend`), the next request "
    "still succeeds; runs only against a real PostgreSQL.",
    rationale=(
        "Failovers, restarts and idle timeouts kill pooled connections; without `pool_pre_ping` the "
        "first request after each one fails with a 500."
    ),
    fix="Create the engine with `pool_pre_ping=True` (and a `pool_recycle` below the server's idle timeout).",
    bad_example="create_async_engine(url, pool_size=5)",
    good_example="create_async_engine(url, pool_size=5, pool_recycle=3600, pool_pre_ping=True)",
    phases=("connection-loss",),
    reports_setup_failure=True,
)
def check_survives_connection_loss(context: CheckContext) -> Iterator[Finding]:
    results = _probe(context, "FR511")
    if results.connection_loss is None:
        raise RuleSkipped(results.connection_loss_skipped or "the probe could not run")
    warm, after = results.connection_loss
    if after.ok:
        return
    engine = results.engines[0] if results.engines else None
    yield Finding(
        message=f"after the database dropped every connection, {after.request.shown} {after.outcome} "
        f"(it answered {warm.status} before)",
        location=_where_location(context.facts, engine.where) if engine else None,
    )
