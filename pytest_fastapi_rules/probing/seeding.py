"""Data for the probes: rows for every table of the app's ORM metadata, at two sizes.

The rows are generated from the metadata alone, in foreign-key order: every column gets a value
that fits its type, length, precision, nullability and uniqueness (values come from polyfactory's
SQLAlchemy type mapping, seeded for reproducibility, with a few name-based choices where random text
would make the app misbehave: emails look like emails, password columns hold a real bcrypt hash,
``is_active``/``is_superuser`` are true so the probe user may call every route, ``is_deleted`` is
false). Integer primary keys are left to the database (sequences stay right for the app's own
inserts); foreign keys point at rows of the parent table round-robin, so each parent gets children.

Sizes: ``SMALL`` (3) and ``LARGE`` (9) rows in tables without parents; a child table gets two rows
per parent row (capped), so "3 users with 6 posts" grows to "9 users with 18 posts" and a route
whose SQL count grows with it has an N+1.

Apps with invariants a generator cannot guess (check constraints, state machines, rows that must
exist) name a seed function instead, ini ``fastapi_rules_seed = module:function``::

    async def seed(session: AsyncSession, size: int) -> None:
        # size is 3 (small) or 9 (large); the tables are empty; the plugin commits afterwards
        session.add_all([User(email=f"u{i}@example.com", ...) for i in range(size)])

It may also be a plain ``def`` taking a sync ``Session``-like object (it gets ``session.sync_session``
through ``await session.run_sync(...)``). Primary keys are read back from the tables either way.
"""

from __future__ import annotations

import contextlib
import datetime
import decimal
import enum
import functools
import importlib
import inspect
import random
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from faker import Faker
from polyfactory.factories.sqlalchemy_factory import SQLAlchemyFactory
from polyfactory.field_meta import FieldMeta
from sqlalchemy import Column, ForeignKeyConstraint, MetaData, Table, delete, insert, select, text
from sqlalchemy import types as sqltypes
from sqlalchemy.engine import Connection, Dialect
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession

from pytest_fastapi_rules.compat import autoincrement_column
from pytest_fastapi_rules.probing.column_values import (
    DeclaredTypes,
    accepted,
    candidates,
    own_python_type,
    probe_uuid,
    value_of_type,
)
from pytest_fastapi_rules.probing.errors import exception_detail
from pytest_fastapi_rules.probing.metadata import sorted_tables

SMALL = 3
LARGE = 9
CHILDREN_PER_PARENT = 2
MAX_ROWS_PER_TABLE = 60
#: bcrypt hash of "probe-password-1", so a login that verifies a seeded hash does not crash.
PROBE_PASSWORD = "probe-password-1"
PROBE_PASSWORD_HASH = "$2b$04$zOXoKT8HalAfvnLd7qe5heQoiDSIJ/tWbeF8H5esJ5hHnXGuIrG62"

_TRUE_FLAGS = re.compile(
    r"(^|_)(active|enabled|verified|superuser|admin|staff|published|visible|public|approved|"
    r"confirmed|available|email_verified)$"
)
_FALSE_FLAGS = re.compile(
    r"(^|_)(deleted|archived|banned|blocked|disabled|hidden|private|locked|suspended|draft|"
    r"removed|spam)$"
)


class SeedError(Exception):
    """Seeding failed; the message says which table and how to seed by hand."""


class _Values(SQLAlchemyFactory[Any]):
    """polyfactory's SQLAlchemy type mapping, with a random generator of the plugin's own."""

    __is_base_factory__ = True
    __allow_none_optionals__ = False
    __random__ = random.Random(20240601)
    __faker__ = Faker()


_Values.__faker__.seed_instance(20240601)


@dataclass
class SeedResult:
    """What the database holds after seeding: primary keys per table, in a stable order."""

    size: int
    pks: dict[str, list[tuple[Any, ...]]] = field(default_factory=dict)
    #: Values of rows the generator inserted, per table (empty when a hook seeded).
    rows: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    by_hook: bool = False
    #: Primary key column names per table.
    pk_columns: dict[str, list[str]] = field(default_factory=dict)

    def first_pk(self, table: str) -> tuple[Any, ...] | None:
        """The key of the row requests use first: the first generated row, else the lowest key.

        The probe user must be the row whose id the requests put in ``/users/{user_id}``, at
        every size; with UUID keys the lowest key is a different row at each size, and the SQL
        count of ``/users/{user_id}`` would change with it (the identity map serves one, not the
        other), which is no N+1.
        """
        rows = self.rows.get(table) or []
        names = self.pk_columns.get(table) or []
        if rows and names and all(rows[0].get(name) is not None for name in names):
            return tuple(rows[0][name] for name in names)
        keys = self.pks.get(table) or []
        return keys[0] if keys else None

    def row_count(self, table: str) -> int:
        return len(self.pks.get(table) or [])


def column_type(column: Column[Any]) -> Any:
    """The column's type with ``TypeDecorator`` wrappers removed (SQLModel's ``AutoString``...).

    SQLModel declares every ``str`` field as ``AutoString``, a decorator around ``String``: without
    unwrapping, no name-based choice (e-mails, password hashes) would ever apply to a SQLModel app.
    """
    type_: Any = column.type
    for _ in range(5):
        if not isinstance(type_, sqltypes.TypeDecorator):
            break
        try:
            impl: Any = type_.impl_instance
        except Exception:  # noqa: BLE001 - an odd decorator: keep it as it is
            break
        type_ = impl() if isinstance(impl, type) else impl
    return type_


def _database_fills(column: Column[Any], dialect_name: str | None = None) -> bool:
    """Whether the database gives ``column`` its value: an autoincrementing integer key.

    SQLite fills only a table's single integer key (its rowid); one column of a composite key that
    asks for autoincrement gets a value there only from the seeder.
    """
    if not column.primary_key:
        return False
    table = column.table
    if not (
        isinstance(table, Table)
        and autoincrement_column(table) is column
        and isinstance(column_type(column), sqltypes.Integer)
    ):
        return False
    return dialect_name != "sqlite" or len(table.primary_key.columns) == 1


def _fits(value: str, length: int | None) -> str:
    return value if length is None else value[-length:] if len(value) > length else value


@dataclass(frozen=True)
class StringRule:
    """What the app's own schemas demand of a text field of the same name (pattern, lengths, e-mail)."""

    owner: str
    pattern: str | None = None
    min_length: int | None = None
    max_length: int | None = None
    email: bool = False

    def accepts(self, value: str) -> bool:
        if self.min_length is not None and len(value) < self.min_length:
            return False
        if self.max_length is not None and len(value) > self.max_length:
            return False
        if self.email and not re.fullmatch(r"[A-Za-z0-9._%+-]+@[A-Za-z0-9-]+(\.[A-Za-z0-9-]+)+", value):
            return False
        if self.pattern is not None:
            try:
                return re.search(self.pattern, value) is not None
            except re.error:
                return True
        return True


#: ``{(table name, column name): [rules]}``: the constraints a seeded value must meet.
SchemaHints = dict[tuple[str, str], list[StringRule]]


def schema_hints(models: Sequence[Any], class_names: dict[str, str], tables: Sequence[Table]) -> SchemaHints:
    """Constraints of the app's Pydantic/SQLModel schemas on the columns of the tables they describe.

    A schema describes a table when its name starts with the ORM class name or the table's singular
    name at a word boundary (``UserRead``, ``UserCreate``, ``UserBase`` for ``User``/``users``); a
    field describes a column of the same name. A seeded ``username`` of ``user_0`` against
    ``pattern=r"^[a-z0-9]+$"`` would make every route that returns users answer 500.
    """
    hints: SchemaHints = {}
    # Per name word, the positions of the tables it names: a model is looked up by the prefixes
    # of its own name, not matched against every table (600 models by 200 tables on a large app).
    tables_named: dict[str, list[int]] = {}
    for position, table in enumerate(tables):
        words = {re.sub(r"[^a-z0-9]", "", singular(table.name).lower())}
        if class_names.get(table.name):
            words.add(class_names[table.name].lower())
        for word in words:
            if word:
                tables_named.setdefault(word, []).append(position)
    for model in models:
        fields = getattr(model, "model_fields", None)
        name = getattr(model, "__name__", "")
        if not isinstance(fields, dict) or not name:
            continue
        lowered = name.lower()
        positions: set[int] = set()
        for end in range(1, len(lowered) + 1):
            prefix = lowered[:end]
            if prefix in tables_named and _named_after(name, prefix):
                positions.update(tables_named[prefix])
        for position in sorted(positions):
            table = tables[position]
            for field_name, info in fields.items():
                if field_name not in table.columns:
                    continue
                rule = _string_rule(name, info)
                if rule is not None:
                    hints.setdefault((table.name, field_name), []).append(rule)
    return hints


#: Plurals the suffix rules get wrong, as the last word of a name (``user_children``).
_IRREGULAR_PLURALS = {"children": "child", "people": "person", "men": "man", "women": "woman"}


@functools.lru_cache(maxsize=4096)
def singular(word: str) -> str:
    """The singular of an English plural table or path word (``categories`` -> ``category``)."""
    head, _, last = word.rpartition("_")
    if last in _IRREGULAR_PLURALS:
        return f"{head}_{_IRREGULAR_PLURALS[last]}" if head else _IRREGULAR_PLURALS[last]
    if word.endswith("ies"):
        return word[:-3] + "y"
    if word.endswith(("ses", "xes")):
        return word[:-2]
    if word.endswith("s") and not word.endswith("ss"):
        return word[:-1]
    return word


def _named_after(model_name: str, prefix: str) -> bool:
    """``UserRead`` is named after ``user``; ``Postgres``/``PostgresSettings`` is not after ``post``."""
    if not model_name.lower().startswith(prefix):
        return False
    rest = model_name[len(prefix) :]
    return not rest or rest[0].isupper() or rest[0] == "_"


def _string_rule(owner: str, info: Any) -> StringRule | None:
    pattern = min_length = max_length = None
    for item in getattr(info, "metadata", None) or []:
        pattern = getattr(item, "pattern", None) or pattern
        min_length = getattr(item, "min_length", None) or min_length
        max_length = getattr(item, "max_length", None) or max_length
    annotation = getattr(info, "annotation", None)
    email = "EmailStr" in repr(annotation) or "NameEmail" in repr(annotation)
    if not isinstance(pattern, str):
        pattern = None
    if pattern is None and min_length is None and max_length is None and not email:
        return None
    return StringRule(
        owner=owner,
        pattern=pattern,
        min_length=min_length if isinstance(min_length, int) else None,
        max_length=max_length if isinstance(max_length, int) else None,
        email=email,
    )


def conform(value: str, rules: Sequence[StringRule], key: str, tag: str) -> str:
    """``value``, or the closest variant of it that every rule accepts (else ``value`` unchanged).

    Tries the value as generated, then without punctuation, lower-cased, padded or cut to the
    lengths, an e-mail built from it, and last a string generated from the pattern (deterministic
    for ``key``; the ``tag`` keeps unique columns unique).
    """
    if not rules or all(rule.accepts(value) for rule in rules):
        return value
    shortest = min((r.max_length for r in rules if r.max_length is not None), default=None)
    longest = max((r.min_length for r in rules if r.min_length is not None), default=0)
    plain = re.sub(r"[^A-Za-z0-9]", "", value) or f"probe{tag}"
    candidates = [plain, plain.lower(), f"probe{tag}"]
    if any(rule.email for rule in rules):
        local = re.sub(r"[^a-z0-9]", "", value.split("@")[0].lower()) or "probe"
        candidates.insert(0, f"{local}{tag if not local.endswith(tag) else ''}@example.com")
    fitted = []
    for candidate in candidates:
        if len(candidate) < longest:
            candidate = candidate + "0" * (longest - len(candidate))
        if shortest is not None and len(candidate) > shortest:
            candidate = candidate[:shortest] if not tag else candidate[: max(shortest - len(tag), 0)] + tag
        fitted.append(candidate)
    for candidate in fitted:
        if all(rule.accepts(candidate) for rule in rules):
            return candidate
    from polyfactory.value_generators.regex import RegexFactory

    for rule in rules:
        if rule.pattern is None:
            continue
        factory = RegexFactory(random=random.Random(f"{key}.{tag}"))
        for _attempt in range(20):
            with contextlib.suppress(Exception):
                candidate = factory(rule.pattern)
                if isinstance(candidate, str) and all(r.accepts(candidate) for r in rules):
                    return candidate
    return value


class RowGenerator:
    """Values for one row of one table; deterministic for a given (table, index).

    ``declared`` holds the Python types the app's mapped classes declare per column, and
    ``dialect`` is the probe database's: together they decide what an app's own ``TypeDecorator``
    is given (``column_values.py``).
    """

    def __init__(
        self,
        salt: str = "",
        hints: SchemaHints | None = None,
        declared: DeclaredTypes | None = None,
        dialect: Dialect | None = None,
    ) -> None:
        self.salt = salt
        self.hints: SchemaHints = hints or {}
        self.declared: DeclaredTypes = declared or {}
        self.dialect = dialect

    def salted(self, salt: str) -> RowGenerator:
        """The same generator with another salt (other values for the same rows)."""
        return RowGenerator(salt=salt, hints=self.hints, declared=self.declared, dialect=self.dialect)

    def value(self, column: Column[Any], index: int) -> Any:
        if _converts_values(column.type):
            return self._decorated(column, index)
        value = self._value(column, index)
        rules = self.hints.get((column.table.name, column.name))
        if rules and isinstance(value, str):
            key = f"{column.table.name}.{column.name}"
            return conform(value, rules, key, f"{self.salt}{index}")
        return value

    def _decorated(self, column: Column[Any], index: int) -> Any:
        """A value the app's own ``TypeDecorator`` accepts (see ``column_values.py``), else None."""
        key = f"{self.salt}{column.table.name}.{column.name}"
        declared = self.declared.get((column.table.name, column.name))
        try:
            impl_value = self._value(column, index)
        except Exception:  # noqa: BLE001 - the impl gives nothing usable: the other candidates may
            impl_value = None
        for candidate in candidates(column, declared, key, index, impl_value):
            if candidate is not None and accepted(column.type, candidate, self.dialect):
                return candidate
        return None

    def _value(self, column: Column[Any], index: int) -> Any:
        name = column.name.lower()
        type_ = column_type(column)
        length = getattr(type_, "length", None)
        unique = bool(column.unique) or column.primary_key or _in_unique_constraint(column)
        if isinstance(type_, sqltypes.Boolean):
            if _TRUE_FLAGS.search(name):
                return True
            if _FALSE_FLAGS.search(name):
                return False
            return index % 2 == 0
        if isinstance(type_, sqltypes.Enum):
            members: list[Any] = list(type_.enum_class) if type_.enum_class else list(type_.enums)
            return members[index % len(members)] if members else None
        if isinstance(type_, sqltypes.Integer):
            return 1000 + index if unique else index + 1
        if isinstance(type_, sqltypes.Numeric) and not isinstance(type_, sqltypes.Float):
            scale = type_.scale or 0
            precision = type_.precision or 10
            whole = min(index + 1, 10 ** max(precision - scale, 1) - 1)
            return decimal.Decimal(whole) + (decimal.Decimal("0.5") if scale else 0)
        if isinstance(type_, sqltypes.Float):
            return float(index) + 0.5
        if isinstance(type_, sqltypes.DateTime):
            moment = value_of_type(datetime.datetime, name, index)
            return moment if type_.timezone else moment.replace(tzinfo=None)
        if isinstance(type_, sqltypes.Date | sqltypes.Time | sqltypes.Interval):
            return value_of_type(type_.python_type, name, index)
        if isinstance(type_, sqltypes.Uuid):
            value = probe_uuid(f"{self.salt}{column.table.name}.{name}.{index}")
            return value if type_.as_uuid else str(value)
        if isinstance(type_, sqltypes.JSON):
            return {"probe": index}
        if isinstance(type_, sqltypes.String):
            if name in {"uuid", "guid"} or name.endswith(("_uuid", "_guid")):
                return str(probe_uuid(f"{self.salt}{column.table.name}.{name}.{index}"))
            return self._string(column, name, index, length, unique)
        try:
            annotation = _Values.get_type_from_column(column)
            generated = _Values.get_field_value(FieldMeta.from_type(annotation, name=column.name))
        except Exception:  # noqa: BLE001 - a type without a Python type (TSVECTOR, a library's own)
            # Such types (full-text vectors, ranges, geometry) take their literal text on the way
            # in; a nullable one is left empty rather than guessed.
            return None if column.nullable else f"probe {column.table.name} {name} {self.salt}{index}"
        if unique and isinstance(generated, str):
            return _fits(f"{generated}{self.salt}{index}", length)
        return generated

    def _string(self, column: Column[Any], name: str, index: int, length: int | None, unique: bool) -> str:
        table = column.table.name
        tag = f"{self.salt}{index}"
        if "email" in name:
            local = f"{table[:10]}{tag}"
            return _fits(f"{local}@example.com", length)
        if "password" in name or name.endswith("hash") or name.startswith("hash"):
            return PROBE_PASSWORD_HASH if length is None or length >= 60 else "x" * length
        if name in {"username", "login", "handle", "slug", "nickname", "user_name"}:
            return _fits(f"{table[:12]}_{tag}", length)
        if "url" in name or name in {"website", "link", "avatar", "homepage"}:
            return _fits(f"https://example.com/{table[:20]}/{tag}", length)
        if "phone" in name:
            return _fits(f"+1555{index:07d}", length)
        if name in {"locale", "language", "lang"}:
            return _fits("en", length)
        if name in {"currency"}:
            return _fits("USD", length)
        if name in {"country", "country_code"}:
            return _fits("US", length)
        if length is not None and length <= 3:
            return _fits(f"{index % 10}", length)
        words = f"Probe {table} {name} {tag}"
        if unique:
            return _fits(words, length)
        annotation = _Values.get_type_from_column(column)
        generated = _Values.get_field_value(FieldMeta.from_type(annotation, name=column.name))
        return generated if isinstance(generated, str) and generated else _fits(words, length)


def holds_plain_text(type_: Any) -> bool:
    """Whether values of ``type_`` are stored as the text they are (no conversion on the way in)."""
    if not _converts_values(type_):
        return True

    return own_python_type(type_) is str


def _converts_values(type_: Any) -> bool:
    """Whether ``type_`` is a ``TypeDecorator`` that converts values itself (a GUID over ``CHAR``),
    rather than one that only changes how its impl is declared (SQLModel's ``AutoString``)."""
    if not isinstance(type_, sqltypes.TypeDecorator):
        return False
    user_defined = {
        name
        for klass in type(type_).__mro__
        if not klass.__module__.startswith("sqlalchemy.")
        for name in vars(klass)
    }
    return bool({"process_bind_param", "bind_processor"} & user_defined)


def _in_unique_constraint(column: Column[Any]) -> bool:
    from sqlalchemy import UniqueConstraint

    table = column.table
    for constraint in getattr(table, "constraints", ()):
        if isinstance(constraint, UniqueConstraint) and column.name in constraint.columns.keys():  # noqa: SIM118
            return True
    return False


def _should_generate(column: Column[Any], dialect_name: str | None = None) -> bool:
    """Whether the seeder writes this column itself (else the column's default fills it).

    A primary key with a Python-side default (``default=uuid.uuid4``) is generated anyway: the
    default would give every run new ids, and the probes' requests and messages must be the same
    from run to run.
    """
    if _database_fills(column, dialect_name):
        return False
    if column.computed is not None or column.identity is not None:
        return False
    if column.server_default is not None and not column.primary_key:
        return False
    if column.primary_key and column.default is not None and column.server_default is None:
        return True
    return not (column.default is not None and not isinstance(column_type(column), sqltypes.Boolean))


def _parent_tables(table: Table) -> list[Table]:
    parents = []
    for constraint in table.foreign_key_constraints:
        referred = constraint.referred_table
        if referred is not table and referred not in parents:
            parents.append(referred)
    return parents


def _required(constraint: ForeignKeyConstraint) -> bool:
    """Whether a row must point at a parent row through ``constraint`` (a NOT NULL key column)."""
    return not all(element.parent.nullable for element in constraint.elements)


def _needs_rows_of(table: Table, parent: Table) -> bool:
    """Whether a row of ``table`` cannot exist without a row of ``parent`` (a NOT NULL key)."""
    return any(
        constraint.referred_table is parent and _required(constraint)
        for constraint in table.foreign_key_constraints
    )


def _row_target(table: Table, counts: dict[str, int], size: int) -> int:
    """How many rows ``table`` gets: ``size`` for a table without parents, else a few per parent row.

    A parent not seeded (yet) counts only when the key to it is required: in a cycle of nullable
    keys, whichever table comes first would otherwise get no rows, and every table after it none.
    """
    parents = [p for p in _parent_tables(table) if p.name in counts or _needs_rows_of(table, p)]
    if not parents:
        return size
    biggest = max(counts.get(parent.name, 0) for parent in parents)
    if biggest == 0:
        return 0
    return min(biggest * CHILDREN_PER_PARENT, MAX_ROWS_PER_TABLE)


class Seeder:
    """Fills the isolated database from the metadata, or through the user's seed hook.

    A table that cannot be created or filled costs only itself and the tables that need its rows:
    :attr:`broken` names each with the reason, the others are created and seeded as usual, and the
    probe rules skip the routes that reach a broken table (``results.ProbeResults.broken_tables``).
    """

    def __init__(
        self,
        metadatas: Sequence[MetaData],
        hook_path: str | None = None,
        hints: SchemaHints | None = None,
        declared: DeclaredTypes | None = None,
        dialect: Dialect | None = None,
        row_factories: dict[str, str] | None = None,
    ) -> None:
        self.metadatas = list(metadatas)
        self.tables = sorted_tables(self.metadatas)
        self.hook_path = hook_path
        self.hints: SchemaHints = hints or {}
        self.dialect_name = dialect.name if dialect is not None else None
        self.generator = RowGenerator(hints=self.hints, declared=declared, dialect=dialect)
        #: ``{table name: module:attr}`` of the user's row factories (ini ``fastapi_rules_row_factories``).
        self.row_factories = dict(row_factories or {})
        self._factories: dict[str, Callable[..., Any]] = {}
        #: ``{table name: why}``: the tables the probes could not create or fill.
        self.broken: dict[str, str] = {}
        self._counter = 0

    @property
    def usable_tables(self) -> list[Table]:
        """The tables that exist and hold the seeded rows, in foreign-key order."""
        return [table for table in self.tables if table.name not in self.broken]

    def hook(self) -> Callable[..., Any] | None:
        if not self.hook_path:
            return None
        hook: Callable[..., Any] = _import(
            self.hook_path, "fastapi_rules_seed", "tests.seed:seed_probes", SeedError
        )
        return hook

    def _mark_dependents(self, verb: str) -> None:
        """Tables that need rows of a broken table (a required foreign key) are broken too."""
        for table in self.tables:
            if table.name in self.broken:
                continue
            for constraint in table.foreign_key_constraints:
                parent = constraint.referred_table
                if parent is not table and parent.name in self.broken and _required(constraint):
                    self.broken[table.name] = (
                        f"it needs rows of table {parent.name!r}, which could not be {verb}"
                    )
                    break

    async def create_schema(self, engine: AsyncEngine, where: str = "the probe database") -> None:
        """Create every table that does not exist yet; a table that fails is recorded in :attr:`broken`.

        One transaction for the whole schema first (the common case); when that fails, table by
        table in foreign-key order, so one table's problem costs only that table.
        """
        try:
            async with engine.begin() as connection:
                for metadata in self.metadatas:
                    await connection.run_sync(metadata.create_all)
            return
        except Exception:  # noqa: BLE001 - find the tables that cannot be created, one by one
            pass
        failed: dict[str, str] = {}
        for group in creation_groups(self.tables):
            try:
                async with engine.begin() as connection:
                    await connection.run_sync(_create_tables, group)
                continue
            except Exception as exc:  # noqa: BLE001 - recorded; the other tables go on
                if len(group) == 1:
                    failed[group[0].name] = f"it cannot be created on {where}: {exception_detail(exc)}"
                    continue
            for table in group:  # a cycle that failed: each table that can stand alone still does
                try:
                    async with engine.begin() as connection:
                        await connection.run_sync(_create_tables, [table])
                except Exception as exc:  # noqa: BLE001 - recorded; the other tables go on
                    failed[table.name] = f"it cannot be created on {where}: {exception_detail(exc)}"
        for table in self.tables:
            parent = next((p for p in _parent_tables(table) if p.name in self.broken), None)
            if parent is not None:
                self.broken[table.name] = f"its parent table {parent.name!r} could not be created"
            elif table.name in failed:
                self.broken[table.name] = failed[table.name]

    async def clear(self, engine: AsyncEngine) -> None:
        """Empty every usable table (children first)."""
        tables = self.usable_tables
        async with engine.begin() as connection:
            if connection.dialect.name == "postgresql" and tables:
                names = ", ".join(connection.dialect.identifier_preparer.format_table(t) for t in tables)
                await connection.execute(text(f"TRUNCATE {names} RESTART IDENTITY CASCADE"))
                return
            for table in reversed(tables):
                await connection.execute(delete(table))

    async def seed(self, engine: AsyncEngine, size: int) -> SeedResult:
        """Empty the tables and fill them at ``size``; a table that cannot be filled is marked
        broken. Raises :class:`SeedError` only when the user's seed hook fails."""
        await self.clear(engine)
        hook = self.hook()
        result = SeedResult(size=size, by_hook=hook is not None)
        if hook is not None:
            await self._run_hook(hook, engine, size)
        else:
            await self._generate(engine, size, result)
        await self._read_keys(engine, result)
        return result

    async def _run_hook(self, hook: Callable[..., Any], engine: AsyncEngine, size: int) -> None:
        try:
            async with AsyncSession(engine, expire_on_commit=False) as session:
                if inspect.iscoroutinefunction(hook):
                    await hook(session, size)
                else:
                    outcome = hook(session, size)
                    if inspect.isawaitable(outcome):
                        await outcome
                await session.commit()
        except Exception as exc:
            raise SeedError(
                f"the seed hook {self.hook_path} failed with {type(exc).__name__}: {exc}"
            ) from exc

    async def _generate(self, engine: AsyncEngine, size: int, result: SeedResult) -> None:
        """Fill the tables parents first, each in a transaction of its own on one connection.

        One connection for the whole fill, not one per table: opening one on the temporary SQLite
        file (a driver thread, the attached schemas, the PostgreSQL functions) cost about 1.5 ms
        more than a transaction, for each of a 1,000-route app's 200 tables, at each fill. After a
        table fails, the next one gets a new connection: a failed statement can leave it unusable.
        """
        counts: dict[str, int] = {}
        rows: dict[str, list[dict[str, Any]]] = {}
        connection: AsyncConnection | None = None
        try:
            for table in self.tables:
                if table.name in self.broken:
                    continue
                try:
                    generated = self._rows_of(table, _row_target(table, counts, size), rows)
                    if connection is None:
                        connection = await engine.connect()
                    async with connection.begin():
                        await _insert_rows(connection, table, generated)
                except Exception as exc:  # noqa: BLE001 - recorded; the other tables go on
                    if connection is not None:
                        with contextlib.suppress(Exception):
                            await connection.close()
                        connection = None
                    self._mark_unseedable(table, exc)
                    continue
                counts[table.name] = len(generated)
                rows[table.name] = generated
        finally:
            if connection is not None:
                await connection.close()
        result.rows = rows

    def _rows_of(
        self, table: Table, target: int, rows: dict[str, list[dict[str, Any]]]
    ) -> list[dict[str, Any]]:
        """Up to ``target`` generated rows of ``table`` whose unique keys differ; foreign keys point
        at ``rows`` of the parents."""
        generated: list[dict[str, Any]] = []
        used: set[tuple[Any, ...]] = set()
        attempts = 0
        index = 0
        while len(generated) < target and attempts < target * 4 + 4:
            attempts += 1
            row = self.row(table, index, rows, offset=attempts - 1)
            index += 1
            if row is None:
                break
            key = _unique_key(table, row)
            if key is not None and key in used:
                continue
            if key is not None:
                used.add(key)
            generated.append(row)
        return generated

    def _mark_unseedable(self, table: Table, exc: Exception) -> None:
        """Record why ``table`` could not be filled, and the tables that depend on it."""
        factory = self.row_factories.get(table.name)
        advice = (
            f"check the row factory {factory}"
            if factory
            else f"name a row factory for it in fastapi_rules_row_factories "
            f"({table.name} = module:function), or a seed function in fastapi_rules_seed"
        )
        self.broken[table.name] = f"a generated row cannot be inserted ({exception_detail(exc)}); {advice}"
        self._mark_dependents("seeded")

    def row(
        self,
        table: Table,
        index: int,
        rows: dict[str, list[dict[str, Any]]],
        offset: int = 0,
    ) -> dict[str, Any] | None:
        """One generated row of ``table``; foreign keys point at ``rows`` of the parents."""
        self._counter += 1
        values: dict[str, Any] = {}
        fk_columns: set[str] = set()
        for constraint in table.foreign_key_constraints:
            locals_ = [element.parent for element in constraint.elements]
            fk_columns.update(column.name for column in locals_)
            parent_rows = rows.get(constraint.referred_table.name) or []
            if constraint.referred_table is table:
                if not _required(constraint):
                    for column in locals_:
                        values[column.name] = None
                    continue
                return None
            if not parent_rows:
                if not _required(constraint):
                    for column in locals_:
                        values[column.name] = None
                    continue
                return None
            position = _parent_position(table, constraint, index, offset, len(parent_rows))
            parent = parent_rows[position]
            for element in constraint.elements:
                values[element.parent.name] = parent.get(element.column.name)
        dialect_name = self.dialect_name
        for column in table.columns:
            if column.name in fk_columns or not _should_generate(column, dialect_name):
                if _is_forced_flag(column):
                    values[column.name] = self.generator.value(column, index)
                continue
            try:
                values[column.name] = self.generator.value(column, index + 1000 * offset)
            except Exception as exc:
                raise ValueError(
                    f"no value for column {column.name!r} ({type(column.type).__name__}): "
                    f"{type(exc).__name__}{': ' + str(exc) if str(exc) else ''}"
                ) from exc
        factory_path = self.row_factories.get(table.name)
        if factory_path:
            for name, value in self._factory_row(factory_path, table, index + 1000 * offset).items():
                if name in table.columns and name not in fk_columns:
                    values[name] = value
        return values

    def _factory_row(self, path: str, table: Table, index: int) -> dict[str, Any]:
        """The column values the user's row factory gives for row ``index`` of ``table``.

        The factory is a function ``(index) -> mapping or model instance``, or a class with a
        ``build()`` method (a polyfactory ``SQLAlchemyFactory``, a factory_boy factory with the
        build strategy) that returns an instance of the mapped class.
        """
        factory = self._factories.get(path)
        if factory is None:
            factory = _import(path, "fastapi_rules_row_factories", "tests.factories:user_row", SeedError)
            self._factories[path] = factory
        build = getattr(factory, "build", None)
        produced = build() if inspect.isclass(factory) and callable(build) else factory(index)
        if isinstance(produced, dict):
            return dict(produced)
        from sqlalchemy import inspect as sa_inspect

        mapper: Any = sa_inspect(type(produced), raiseerr=False)
        found: dict[str, Any] = {}
        for prop in getattr(mapper, "column_attrs", ()):
            for column in prop.columns:
                value = getattr(produced, prop.key, None)
                if getattr(column, "table", None) is table and value is not None:
                    found[column.name] = value
        return found

    async def _read_keys(self, engine: AsyncEngine, result: SeedResult) -> None:
        async with engine.connect() as connection:
            for table in self.usable_tables:
                columns = list(table.primary_key.columns)
                if not columns:
                    continue
                result.pk_columns[table.name] = [column.name for column in columns]
                rows = await connection.execute(select(*columns).order_by(*columns).limit(200))
                result.pks[table.name] = [tuple(row) for row in rows]


def _create_tables(connection: Connection, tables: list[Table]) -> None:
    """Create ``tables`` (one table, or the tables of one foreign-key cycle) that do not exist yet.

    ``MetaData.create_all`` rather than ``Table.create``: for tables that refer to each other it
    creates them first and adds the keys that close the cycle afterwards (``ALTER TABLE``), where
    ``Table.create`` would refer to a table that does not exist yet.
    """
    tables[0].metadata.create_all(connection, tables=tables, checkfirst=True)


def creation_groups(tables: Sequence[Table]) -> list[list[Table]]:
    """``tables`` grouped so that each group can be created once the groups before it exist.

    A group is one table, or the tables of one foreign-key cycle (its strongly connected
    component), which can only be created together. Tarjan's algorithm over the edges from a
    table to the tables it refers to gives the components parents first.
    """
    known = {id(table) for table in tables}
    index_of: dict[int, int] = {}
    lowlink: dict[int, int] = {}
    stack: list[Table] = []
    on_stack: set[int] = set()
    groups: list[list[Table]] = []

    def visit(table: Table) -> None:
        key = id(table)
        index_of[key] = lowlink[key] = len(index_of)
        stack.append(table)
        on_stack.add(key)
        for parent in _parent_tables(table):
            parent_key = id(parent)
            if parent_key not in known:
                continue
            if parent_key not in index_of:
                visit(parent)
                lowlink[key] = min(lowlink[key], lowlink[parent_key])
            elif parent_key in on_stack:
                lowlink[key] = min(lowlink[key], index_of[parent_key])
        if lowlink[key] == index_of[key]:
            group: list[Table] = []
            while True:
                member = stack.pop()
                on_stack.discard(id(member))
                group.append(member)
                if member is table:
                    break
            groups.append(sorted(group, key=tables.index))
        return None

    for table in tables:
        if id(table) not in index_of:
            visit(table)
    return groups


def _import(path: str, setting: str, example: str, error: type[Exception]) -> Any:
    """The callable ``module:attr`` a setting names; raises ``error`` saying what is wrong."""
    module_name, _, attr = path.partition(":")
    try:
        target: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            target = getattr(target, part)
    except Exception as exc:  # noqa: BLE001 - reported to the user
        raise error(
            f"{setting} = {path}: cannot import it ({type(exc).__name__}: {exc}); "
            f"use module:function, e.g. {example}."
        ) from None
    if not callable(target):
        raise error(f"{setting} = {path} is not a function.")
    return target


async def _insert_rows(connection: AsyncConnection, table: Table, rows: list[dict[str, Any]]) -> None:
    """Insert ``rows`` and write the primary keys the database chose back into them.

    One statement for the whole table where the dialect can return the keys of a multi-row insert
    in the order of its rows (SQLite 3.35+, PostgreSQL): a thousand-route app has hundreds of
    tables, and a round trip per row made seeding the slowest part of the probe run. Elsewhere,
    or when the rows do not all name the same columns, one row at a time.
    """
    if not rows:
        return
    pk_columns = list(table.primary_key.columns)
    same_columns = all(row.keys() == rows[0].keys() for row in rows)
    if (
        len(rows) > 1
        and same_columns
        and pk_columns
        and connection.dialect.insert_executemany_returning_sort_by_parameter_order
    ):
        statement = insert(table).returning(*pk_columns, sort_by_parameter_order=True)
        result = await connection.execute(statement, rows)
        for row, keys in zip(rows, result.all(), strict=True):
            _fill_keys(row, pk_columns, tuple(keys))
        return
    for row in rows:
        outcome = await connection.execute(insert(table).values(**row))
        _fill_keys(row, pk_columns, outcome.inserted_primary_key)


def _fill_keys(row: dict[str, Any], pk_columns: list[Column[Any]], keys: Sequence[Any] | None) -> None:
    if keys is not None:
        for column, value in zip(pk_columns, keys, strict=False):
            if value is not None:
                row[column.name] = value


def _is_forced_flag(column: Column[Any]) -> bool:
    """Boolean flags the probe user needs set whatever their default (``is_superuser``)."""
    return isinstance(column_type(column), sqltypes.Boolean) and bool(
        _TRUE_FLAGS.search(column.name.lower()) or _FALSE_FLAGS.search(column.name.lower())
    )


def _parent_position(
    table: Table, constraint: ForeignKeyConstraint, index: int, offset: int, count: int
) -> int:
    """Round-robin over the parents; a second FK of the same table is shifted (distinct pairs)."""
    order = (
        list(table.foreign_key_constraints).index(constraint)
        if constraint in table.foreign_key_constraints
        else 0
    )
    return (index + order * (index // max(count, 1) + offset)) % count


def _unique_key(table: Table, row: dict[str, Any]) -> tuple[Any, ...] | None:
    """The values that must be unique together (a composite primary key made of foreign keys)."""
    columns = [column.name for column in table.primary_key.columns]
    if not columns or any(name not in row for name in columns):
        return None
    return tuple(_hashable(row[name]) for name in columns)


def _hashable(value: Any) -> Any:
    if isinstance(value, dict | list):
        return repr(value)
    if isinstance(value, enum.Enum):
        return value.value
    return value
