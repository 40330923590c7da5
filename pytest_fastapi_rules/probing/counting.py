"""Per-request SQL statement counting, and the guard that keeps probes off the user's database.

One pair of listeners is attached to the ``Engine`` *class* while probes run, so every engine of the
process is seen, including ones the plugin never discovered (SQLAlchemy engine listeners are global;
an ``AsyncEngine`` delegates to the sync ``Engine`` behind it, whose events fire in the greenlet that
runs on the request's task, so a :class:`~contextvars.ContextVar` set around one request is visible
in them).

- ``before_cursor_execute``: a statement on an *isolated* engine is recorded into the recorder of the
  current request (if any); a statement on any other engine is refused with
  :class:`DatabaseEscapeError` before it reaches the driver.
- ``do_connect`` (a dialect event): a new DBAPI connection for an engine that is not isolated is
  refused the same way, so not even an SQLite file is created in the user's project.

Refusing is the last line of defence of the isolation: redirection (``database.py``) should have
pointed every engine at the isolated database already, and every refusal is recorded so the probes
can report the path they could not redirect.
"""

from __future__ import annotations

import contextlib
import contextvars
import re
import traceback
import weakref
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine

_CURRENT: contextvars.ContextVar[StatementLog | None] = contextvars.ContextVar(
    "pytest_fastapi_rules_statements", default=None
)
_WHITESPACE = re.compile(r"\s+")
_COLUMNS = re.compile(r"^(SELECT (?:DISTINCT )?)((?:[^,()]+, ){2,}[^,()]+?) FROM ")
_LITERAL_LIST = re.compile(r"\((\s*(\?|%\(\w+\)s|\$\d+|:\w+|__\[POSTCOMPILE_\w+\])\s*,?)+\)")


class DatabaseEscapeError(RuntimeError):
    """The app tried to reach a database the probes did not redirect; the plugin refused it."""


@dataclass(frozen=True)
class Statement:
    """One SQL statement a request ran, as sent to the driver."""

    sql: str
    #: Tables the statement reads or writes (from the compiled construct, when there is one).
    tables: tuple[str, ...] = ()
    #: ``table.column`` names compared with a bound parameter in the WHERE clause.
    filter_columns: tuple[str, ...] = ()

    @property
    def shape(self) -> str:
        """The statement with whitespace and IN-lists normalised: equal shapes are "the same query"."""
        text = _WHITESPACE.sub(" ", self.sql).strip()
        return _LITERAL_LIST.sub("(...)", text)

    @property
    def short(self) -> str:
        """The shape with a long column list shortened: ``SELECT users.id, ... FROM users WHERE ...``."""
        text = _COLUMNS.sub(
            lambda m: f"{m.group(1)}{_LABEL.sub('', m.group(2).split(',')[0])}, ... FROM ", self.shape
        )
        return text if len(text) <= 200 else text[:197] + "..."


#: A column's label (``users.id AS users_id``): SQLAlchemy 2.0 writes it, 2.1 does not.
_LABEL = re.compile(r"\s+AS\s+\S+$", re.IGNORECASE)


@dataclass
class StatementLog:
    """The statements one request ran (appended from SQLAlchemy's event, in any copied context)."""

    statements: list[Statement] = field(default_factory=list)

    @property
    def count(self) -> int:
        return len(self.statements)


@dataclass
class Escape:
    """A database access the guard refused: which engine, and where in the app it came from."""

    url: str
    where: str


#: Tables and filtered columns of a statement (``_walk_construct``), per compiled form: weakly
#: keyed by SQLAlchemy's compiled object, which dies with the engine's statement cache.
Described = weakref.WeakKeyDictionary[Any, tuple[tuple[str, ...], tuple[str, ...]]]


def _describe_construct(context: Any, described: Described) -> tuple[tuple[str, ...], tuple[str, ...]]:
    """Tables and filtered columns of the compiled statement behind an execution context.

    SQLAlchemy reuses one compiled form for every execution of the same statement shape, so each
    shape is walked once per monitor (``described``), not per execution.
    """
    compiled = getattr(context, "compiled", None)
    statement = getattr(compiled, "statement", None)
    if statement is None:
        return (), ()
    try:
        return described[compiled]
    except (KeyError, TypeError):
        pass
    found = _walk_construct(statement)
    with contextlib.suppress(TypeError):  # a compiled form that takes no weak reference
        described[compiled] = found
    return found


def _walk_construct(statement: Any) -> tuple[tuple[str, ...], tuple[str, ...]]:
    tables: list[str] = []
    columns: list[str] = []
    try:
        from sqlalchemy.sql import visitors
        from sqlalchemy.sql.elements import BinaryExpression, BindParameter, ColumnClause
        from sqlalchemy.sql.schema import Table

        table = getattr(statement, "table", None)
        if isinstance(table, Table):
            tables.append(table.name)
        for element in visitors.iterate(statement):
            if isinstance(element, Table) and element.name not in tables:
                tables.append(element.name)
        where = getattr(statement, "whereclause", None)
        if where is not None:
            for element in visitors.iterate(where):
                if not isinstance(element, BinaryExpression):
                    continue
                left, right = element.left, element.right
                for column, other in ((left, right), (right, left)):
                    if isinstance(column, ColumnClause) and isinstance(other, BindParameter):
                        owner = getattr(column, "table", None)
                        name = f"{getattr(owner, 'name', '?')}.{column.name}"
                        if name not in columns:
                            columns.append(name)
    except Exception:  # noqa: BLE001 - describing is best effort; the SQL text is what counts
        return tuple(tables), tuple(columns)
    return tuple(tables), tuple(columns)


def _app_frame(frames: list[traceback.FrameSummary], own_roots: tuple[str, ...]) -> str:
    for frame in reversed(frames):
        if own_roots and frame.filename.startswith(own_roots):
            return f"{frame.filename}:{frame.lineno} in {frame.name}"
    return "an unknown place (no frame of the app's own code on the stack)"


class SqlMonitor:
    """Counts statements on isolated engines per request, and refuses every other engine.

    ``install`` and ``remove`` are idempotent; ``remove`` leaves the ``Engine`` class exactly as it
    was (SQLAlchemy sets a class-level ``_has_events`` flag when a class listener is added).
    """

    def __init__(self, own_roots: tuple[str, ...] = ()) -> None:
        self.isolated_engines: set[int] = set()
        self.isolated_dialects: set[int] = set()
        self.escapes: list[Escape] = []
        self.own_roots = own_roots
        #: The statements described so far (a cache: it lives and dies with the monitor).
        self._described: Described = weakref.WeakKeyDictionary()
        self._installed = False
        self._had_flag = False
        self._flag: Any = None

    def allow(self, sync_engine: Engine) -> None:
        """Treat ``sync_engine`` (the sync engine behind an AsyncEngine) as isolated."""
        self.isolated_engines.add(id(sync_engine))
        self.isolated_dialects.add(id(sync_engine.dialect))

    def is_isolated(self, sync_engine: Any) -> bool:
        return id(sync_engine) in self.isolated_engines

    def install(self) -> None:
        if self._installed:
            return
        self._had_flag = "_has_events" in Engine.__dict__
        self._flag = Engine.__dict__.get("_has_events")
        event.listen(Engine, "before_cursor_execute", self._before_cursor_execute)
        event.listen(Engine, "do_connect", self._do_connect)
        self._installed = True

    def remove(self) -> None:
        if not self._installed:
            return
        with contextlib.suppress(Exception):
            event.remove(Engine, "before_cursor_execute", self._before_cursor_execute)
        with contextlib.suppress(Exception):
            event.remove(Engine, "do_connect", self._do_connect)
        if self._had_flag:
            Engine._has_events = self._flag
        elif "_has_events" in Engine.__dict__:
            delattr(Engine, "_has_events")
        self._installed = False

    def _refuse(self, url: Any) -> DatabaseEscapeError:
        where = _app_frame(traceback.extract_stack(), self.own_roots)
        shown = _masked(url)
        self.escapes.append(Escape(url=shown, where=where))
        return DatabaseEscapeError(
            f"pytest-fastapi-rules refused a connection to {shown} during probes: probes only "
            "use the isolated test database"
        )

    def _before_cursor_execute(
        self, conn: Any, cursor: Any, statement: str, parameters: Any, context: Any, executemany: bool
    ) -> None:
        engine = getattr(conn, "engine", None)
        if engine is not None and not self.is_isolated(engine):
            raise self._refuse(getattr(engine, "url", "?"))
        log = _CURRENT.get()
        if log is not None:
            tables, columns = _describe_construct(context, self._described)
            log.statements.append(Statement(sql=str(statement), tables=tables, filter_columns=columns))

    def _do_connect(self, dialect: Any, conn_rec: Any, cargs: Any, cparams: Any) -> None:
        if id(dialect) not in self.isolated_dialects:
            target = cparams.get("database") or (cargs[0] if cargs else "?")
            raise self._refuse(f"{dialect.name} database {target}")


@contextlib.contextmanager
def recording() -> Iterator[StatementLog]:
    """Record the statements run in this context (and contexts copied from it) into a new log."""
    log = StatementLog()
    token = _CURRENT.set(log)
    try:
        yield log
    finally:
        _CURRENT.reset(token)


@contextlib.contextmanager
def not_recording() -> Iterator[None]:
    """Statements of the plugin's own work inside a request (loading the probe user) do not count."""
    token = _CURRENT.set(None)
    try:
        yield
    finally:
        _CURRENT.reset(token)


def _masked(url: Any) -> str:
    """A URL (or description) with its password hidden."""
    render = getattr(url, "render_as_string", None)
    if render is not None:
        try:
            return str(render(hide_password=True))
        except Exception:  # noqa: BLE001
            return "?"
    return str(url)


masked_url = _masked
