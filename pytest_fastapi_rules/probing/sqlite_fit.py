"""Make an app's schema fit the embedded SQLite probe database, without touching the app's metadata.

Apps written for PostgreSQL declare what SQLite cannot create as it stands: a ``BigInteger`` primary
key (SQLite fills a key only when its declared type is exactly ``INTEGER``), a composite primary key
that asks for autoincrement (SQLAlchemy refuses to compile it for SQLite), and PostgreSQL's own
types (``ARRAY``, ``INET``, ``TSVECTOR``, ``CITEXT``...), which SQLite's type compiler cannot name.

Only the *dialect instance* of each engine on the probe database is fitted (:func:`fit_dialect`):
its type compiler, its DDL compiler and its type adaptations. The app's ``MetaData``, tables,
columns and types stay the objects they were, and an engine the app keeps for its own database is
never fitted. Whatever creates the tables on the probe database (the plugin, the app's own
``create_all`` in its lifespan, an Alembic migration run at startup) compiles through the fitted
dialect, so all of them see the same schema:

- the single-column integer primary key SQLAlchemy would autoincrement is declared ``INTEGER``,
  whatever its width, so SQLite fills it (the rowid alias);
- a composite primary key keeps its columns, without the autoincrement SQLite cannot do (the
  seeder then writes those columns itself, see ``seeding._database_fills``);
- a type SQLite's compiler cannot name is declared as ``JSON`` (arrays, ``HSTORE``), as the type
  its generic ancestor compiles to (``BYTEA`` as ``BLOB``), or else as ``TEXT``;
- ``ARRAY`` values are stored as JSON text (SQLite's driver cannot bind a list);
- PostgreSQL functions common in server defaults (``gen_random_uuid()``, ``uuid_generate_v4()``,
  ``now()``) exist on every connection, so a row inserted without them still gets a value.

What SQLite still cannot do is the app's business at run time: a query with PostgreSQL operators
(``@>``, ``ILIKE`` on arrays...) answers an error on SQLite, which is why the probes follow the
app's own PostgreSQL server when it can be reached (``database.py``).
"""

from __future__ import annotations

import datetime
import json
import uuid
from typing import Any

from sqlalchemy import Column, exc
from sqlalchemy.engine import Dialect
from sqlalchemy.sql import sqltypes
from sqlalchemy.sql.compiler import DDLCompiler

from pytest_fastapi_rules.compat import autoincrement_column

#: Marks a dialect instance that was fitted already (engines share nothing, but a dialect may be
#: handed to :func:`fit_dialect` twice: the plugin's check compiles with one it made itself).
_FITTED = "_fastapi_rules_fitted"
#: Visit names of types whose values are containers: stored as JSON text.
_JSON_LIKE = frozenset({"ARRAY", "HSTORE", "JSONB", "JSONPATH"})


def _is_rowid_key(column: Any) -> bool:
    """Whether ``column`` is the key SQLAlchemy expects the database to fill (integer, alone)."""
    table = getattr(column, "table", None)
    try:
        return bool(
            isinstance(column, Column)
            and table is not None
            and autoincrement_column(table) is column
            and len(table.primary_key.columns) == 1
        )
    except Exception:  # noqa: BLE001 - an unusual table: compile it as declared
        return False


class _FittedTypes:
    """Mixed into the dialect's type compiler (see :func:`fit_dialect`)."""

    def process(self, type_: Any, **kw: Any) -> str:
        if _is_rowid_key(kw.get("type_expression")):
            return "INTEGER"
        return super().process(type_, **kw)  # type: ignore[misc, no-any-return]

    def visit_unsupported_compilation(self, element: Any, err: Exception, **kw: Any) -> str:
        name = str(getattr(element, "__visit_name__", "")).upper()
        if name in _JSON_LIKE or isinstance(element, sqltypes.ARRAY | sqltypes.JSON):
            return "JSON"
        # The generic type the element specialises (``BYTEA`` is a ``LargeBinary``), if SQLite can
        # name it: first its affinity, then its ancestors among SQLAlchemy's generic types.
        affinity = getattr(element, "_type_affinity", None)
        ancestors = [affinity] if isinstance(affinity, type) else []
        ancestors += [cls for cls in type(element).__mro__[1:] if cls.__module__ == sqltypes.__name__]
        for ancestor in ancestors:
            if ancestor is type(element) or not issubclass(ancestor, sqltypes.TypeEngine):
                continue
            try:
                return str(super().process(ancestor()))  # type: ignore[misc]
            except Exception:  # noqa: BLE001 - abstract or unnameable too: try the next one
                continue
        return "TEXT"


class _FittedDDL:
    """Mixed into the dialect's DDL compiler (see :func:`fit_dialect`)."""

    def get_column_specification(self, column: Any, **kw: Any) -> str:
        try:
            return super().get_column_specification(column, **kw)  # type: ignore[misc, no-any-return]
        except exc.CompileError:
            composite = column.primary_key and len(column.table.primary_key.columns) > 1
            if not (composite and column.autoincrement is True):
                raise
            # SQLite cannot autoincrement one column of a composite key: declare the column plainly.
            return DDLCompiler.get_column_specification(self, column, **kw)  # type: ignore[arg-type]


class ArrayAsJson(sqltypes.ARRAY):  # type: ignore[type-arg]
    """``ARRAY`` on SQLite: the list is stored as JSON text and read back as a list."""

    cache_ok = True

    def bind_processor(self, dialect: Dialect) -> Any:
        def process(value: Any) -> Any:
            if value is None:
                return None
            return json.dumps(list(value) if isinstance(value, tuple | set) else value, default=str)

        return process

    def result_processor(self, dialect: Dialect, coltype: Any) -> Any:
        def process(value: Any) -> Any:
            if value is None or not isinstance(value, str | bytes):
                return value
            try:
                return json.loads(value)
            except ValueError:
                return value

        return process


def _gen_random_uuid() -> str:
    return str(uuid.uuid4())


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f")


#: PostgreSQL functions that server defaults use, as ``(name, number of arguments, function)``.
POSTGRES_FUNCTIONS: tuple[tuple[str, int, Any], ...] = (
    ("gen_random_uuid", 0, _gen_random_uuid),
    ("uuid_generate_v4", 0, _gen_random_uuid),
    ("now", 0, _now),
)


def add_postgres_functions(dbapi_connection: Any) -> None:
    """Give a new SQLite connection the PostgreSQL functions of :data:`POSTGRES_FUNCTIONS`."""
    create = getattr(dbapi_connection, "create_function", None)
    if create is None:
        return
    for name, arguments, function in POSTGRES_FUNCTIONS:
        try:
            create(name, arguments, function)
        except Exception:  # noqa: BLE001 - a driver without user functions: defaults stay unusable
            return


def fit_dialect(dialect: Dialect) -> Dialect:
    """Fit one SQLite dialect instance (see the module docstring); returns it, for chaining."""
    if getattr(dialect, _FITTED, False) or dialect.name != "sqlite":
        return dialect
    type_compiler = dialect.type_compiler_instance
    fitted_types = type(f"Fitted{type(type_compiler).__name__}", (_FittedTypes, type(type_compiler)), {})
    dialect.type_compiler_instance = fitted_types(dialect)
    dialect.type_compiler = dialect.type_compiler_instance
    base_ddl = dialect.ddl_compiler
    dialect.ddl_compiler = type(f"Fitted{base_ddl.__name__}", (_FittedDDL, base_ddl), {})
    dialect.colspecs = {**type(dialect).colspecs, sqltypes.ARRAY: ArrayAsJson}
    setattr(dialect, _FITTED, True)
    return dialect


def fitted_sqlite_dialect() -> Dialect:
    """A fitted SQLite dialect of the plugin's own, to check that the app's tables compile."""
    from sqlalchemy.dialects.sqlite.aiosqlite import SQLiteDialect_aiosqlite

    return fit_dialect(SQLiteDialect_aiosqlite())
