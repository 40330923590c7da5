"""Where the probes' throwaway database lives, decided once per session.

**By default the probe database follows the app.** The first engine the app holds or creates under
the redirection (``database.Redirector``) names the app's database. When that is PostgreSQL (any
driver, sync or async) and its server can be reached, every throwaway database of the session is
created on that same server, the way pytest-django creates its test database next to the configured
one: a fresh name (``fastapi_rules_<pid>_<random>``), never the configured database itself, dropped
at the end, also on failure or Ctrl-C (:meth:`IsolatedDatabase.drop` and its ``atexit`` hook).
The plugin's own connections use an async driver the app already has installed (asyncpg, else
psycopg 3), and the app's sync engines keep their own driver.

When the server cannot be reached in :data:`CONNECT_TIMEOUT` seconds, refuses the connection or
refuses ``CREATE DATABASE``, or no async driver is installed, the probes fall back to the embedded
SQLite database (``sqlite_fit.py`` makes PostgreSQL schemas fit it) and :attr:`DatabaseChoice.fallback`
says why; the report's summary and every skip that follows from the fallback repeat it. An app
whose engines use SQLite, another server, or no engine before its first request, is probed on
SQLite too.

``--fastapi-rules-db-url=sqlite`` (ini ``fastapi_rules_db_url``) forces the embedded database; an
explicit URL names the server, as before: there, a user without ``CREATEDB`` gets a throwaway schema
in the named database instead, and a server that cannot be reached is an error (the user asked for
it), remembered so that no later step waits for it again.

The decision is made once per session (:class:`DatabasePlacement`, kept on the session's facts) and
shared by every start of the app (the runtime facts, the probe run); each start creates and drops a
database of its own (:class:`PendingDatabase`). The decision may be needed while the app's lifespan
runs on the plugin's loop (an engine created at startup), so server databases are created on a
short-lived loop of their own in a helper thread, never on the plugin's loop.
"""

from __future__ import annotations

import asyncio
import atexit
import concurrent.futures
import contextlib
import importlib
import os
import secrets
import shutil
import tempfile
import threading
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar

from sqlalchemy import text
from sqlalchemy.engine import URL, Engine, make_url
from sqlalchemy.ext.asyncio import AsyncEngine
from sqlalchemy.ext.asyncio import create_async_engine as _original_create_async_engine
from sqlalchemy.pool import NullPool

from pytest_fastapi_rules.probing.counting import masked_url
from pytest_fastapi_rules.probing.sqlite_fit import add_postgres_functions, fit_dialect
from pytest_fastapi_rules.tracebacks import raise_again

T = TypeVar("T")

#: Seconds to reach a server and create a database there before giving up on it.
CONNECT_TIMEOUT = 10.0
#: The ``--fastapi-rules-db-url`` value that forces the embedded SQLite database.
SQLITE = "sqlite"
#: Async drivers the plugin's own engines may use, in order of preference, per backend.
ASYNC_DRIVERS = {"postgresql": ("asyncpg", "psycopg"), "mysql": ("aiomysql", "asyncmy")}
SYNC_DRIVERS = {"postgresql": ("psycopg", "psycopg2"), "mysql": ("pymysql", "mysqldb")}
#: Databases to connect to for ``CREATE DATABASE`` when the app's own does not exist (yet).
_MAINTENANCE_DATABASES = ("postgres", "template1")


class ProbeDatabaseError(Exception):
    """The isolated database cannot be created, reached or filled; the message is for the user.

    ``cause`` is the problem in a few words, for the one-line skip reasons that point at the item
    reporting the whole message (None: the message's first clause).
    """

    def __init__(self, message: str, cause: str | None = None) -> None:
        super().__init__(message)
        self.cause = cause


def driver_importable(driver: str) -> bool:
    module = {"mysqldb": "MySQLdb"}.get(driver, driver)
    try:
        importlib.import_module(module)
    except ImportError:
        return False
    return True


@dataclass(frozen=True)
class AppDatabase:
    """A database the app uses: an engine's URL (password included) and where the engine is."""

    url: URL
    where: str

    @property
    def shown(self) -> str:
        return masked_url(self.url)


@dataclass(frozen=True)
class DatabaseChoice:
    """Where this session's probe databases live, and why."""

    #: The URL (async driver) on which throwaway databases are created; None: embedded SQLite.
    server: URL | None
    #: Why this database, in a few words, for the summary and for messages.
    origin: str
    #: Named by the user (``--fastapi-rules-db-url`` or its ini key), not followed from the app.
    explicit: bool = False
    #: Why the app's own server is not used, when the probes fell back to SQLite.
    fallback: str | None = None

    @property
    def described(self) -> str:
        """One line: the database and why, e.g. for the terminal summary."""
        where = (
            "the embedded SQLite database"
            if self.server is None
            else f"a throwaway database on {server_of(self.server)}"
        )
        reason = self.fallback or self.origin
        return f"{where} ({reason})"


class DatabasePlacement:
    """The session's probe-database decision, made the first time a probe database is needed."""

    def __init__(self, option: str | None, option_source: str | None = None) -> None:
        self.option = option.strip() if option and option.strip() else None
        self.option_source = option_source or "ini"
        self.choice: DatabaseChoice | None = None
        #: A server the user named that could not be used: raised again at once, never retried.
        self.failure: ProbeDatabaseError | None = None
        self._lock = threading.Lock()

    def create(
        self,
        hint: AppDatabase | None,
        allow: Callable[[Engine], None] | None = None,
        schemas: tuple[str, ...] = (),
    ) -> IsolatedDatabase:
        """A new throwaway database for one start of the app; decides where, the first time.

        ``hint`` is the app's first engine, if one is known; ``allow`` is told about every engine
        the plugin connects with meanwhile (the SQL guard of a running probe refuses the others);
        ``schemas`` are the schemas the app's tables name (``dispatch_core.organization``), made in
        the new database too. Safe to call from any thread, the plugin's loop thread included.
        """
        with self._lock:
            if self.failure is not None:
                raise_again(self.failure)
            if self.choice is None:
                try:
                    self.choice = self._decide(hint)
                except ProbeDatabaseError as exc:
                    self.failure = exc
                    raise
            choice = self.choice
            if choice.server is None:
                return create_sqlite(schemas)
            try:
                return run_elsewhere(
                    create_on_server(
                        choice.server, allow_schema=choice.explicit, allow=allow, schemas=schemas
                    ),
                    CONNECT_TIMEOUT * 6,
                )
            except ProbeDatabaseError as exc:
                if choice.explicit:
                    self.failure = ProbeDatabaseError(
                        f"cannot create the probe database on --fastapi-rules-db-url="
                        f"{masked_url(choice.server)} ({self.option_source}): {exc}. Start the server, "
                        "fix the URL, or pass --fastapi-rules-db-url=sqlite to probe on the embedded "
                        "SQLite database.",
                        cause=str(exc),
                    )
                    raise self.failure from None
                self.choice = DatabaseChoice(
                    server=None,
                    origin=choice.origin,
                    fallback=f"{choice.origin}, but {exc}; the probes use the embedded SQLite database "
                    "instead: make the server reachable, or pass --fastapi-rules-db-url=URL of one "
                    "that is",
                )
                return create_sqlite(schemas)

    def _decide(self, hint: AppDatabase | None) -> DatabaseChoice:
        option = self.option
        if option is not None:
            if option.lower() == SQLITE or _backend(option) == "sqlite":
                return DatabaseChoice(
                    server=None,
                    origin=f"--fastapi-rules-db-url={option} ({self.option_source})",
                    explicit=True,
                )
            try:
                url = make_url(option)
            except Exception:  # noqa: BLE001 - said to the user
                raise ProbeDatabaseError(
                    f"--fastapi-rules-db-url={option!r} ({self.option_source}) is not a database URL: "
                    "use postgresql+asyncpg://user@host:5432/postgres, or sqlite for the embedded one."
                ) from None
            server = _async_url(url)
            if server is None:
                backend = url.get_backend_name()
                wanted = " or ".join(ASYNC_DRIVERS.get(backend, ())) or "an async driver"
                raise ProbeDatabaseError(
                    f"--fastapi-rules-db-url={masked_url(url)} ({self.option_source}): the plugin's own "
                    f"connections to {backend} need an async driver, and none is installed: "
                    f"install {wanted} (pip install {ASYNC_DRIVERS.get(backend, ('asyncpg',))[0]}), "
                    "or pass --fastapi-rules-db-url=sqlite."
                )
            return DatabaseChoice(
                server=server,
                origin=f"--fastapi-rules-db-url ({self.option_source})",
                explicit=True,
            )
        if hint is None:
            return DatabaseChoice(
                server=None, origin="the app holds no database engine before its first request"
            )
        backend = hint.url.get_backend_name()
        engine = f"the app's engine at {hint.where} uses {hint.url.drivername}"
        if backend == "sqlite":
            return DatabaseChoice(server=None, origin=engine)
        if backend != "postgresql":
            return DatabaseChoice(
                server=None,
                origin=engine,
                fallback=f"{engine}; the probes follow a PostgreSQL database only, and use the embedded "
                "SQLite database: pass --fastapi-rules-db-url=URL to probe on a server",
            )
        server = _async_url(hint.url)
        if server is None:
            return DatabaseChoice(
                server=None,
                origin=engine,
                fallback=f"{engine}, but no async PostgreSQL driver is installed for the plugin's own "
                "connections (asyncpg or psycopg 3); the probes use the embedded SQLite database: "
                "install one of them to probe on the app's server",
            )
        return DatabaseChoice(server=server, origin=engine)


def server_of(url: URL) -> str:
    """The server part of ``url`` (no database, password hidden): ``postgresql+asyncpg://u:***@h:5432``.

    ``URL.set(database=None)`` leaves the database as it is, so the URL is built anew.
    """
    server = URL.create(
        url.drivername, username=url.username, password=url.password, host=url.host, port=url.port
    )
    return masked_url(server)


def _backend(url: str) -> str | None:
    try:
        return make_url(url).get_backend_name()
    except Exception:  # noqa: BLE001
        return None


def _async_url(url: URL) -> URL | None:
    """``url`` with an async driver that is installed: the app's own when it is async, else the
    first installed of :data:`ASYNC_DRIVERS` (query options of another driver are dropped)."""
    backend = url.get_backend_name()
    drivers = ASYNC_DRIVERS.get(backend, ())
    current = url.get_driver_name()
    if current in drivers and driver_importable(current):
        return url
    chosen = next((driver for driver in drivers if driver_importable(driver)), None)
    if chosen is None:
        return None
    return url.set(drivername=f"{backend}+{chosen}", query={})


class PendingDatabase:
    """The throwaway database of one start of the app, created when it is first needed."""

    def __init__(
        self,
        placement: DatabasePlacement,
        allow: Callable[[Engine], None] | None = None,
        schemas: tuple[str, ...] = (),
    ) -> None:
        self.placement = placement
        self.allow = allow
        self.schemas = schemas
        self.database: IsolatedDatabase | None = None
        self._lock = threading.Lock()

    def get(self, hint: AppDatabase | None = None) -> IsolatedDatabase:
        with self._lock:
            if self.database is None:
                self.database = self.placement.create(hint, self.allow, self.schemas)
            return self.database


def run_elsewhere(coro: Coroutine[Any, Any, T], timeout: float) -> T:
    """Run ``coro`` to completion on a fresh event loop in a helper thread, and return its result.

    The caller may be the plugin's own loop thread (an engine created in the app's lifespan), which
    must not wait on itself; the connections made here live and die on the helper's loop.
    """
    pool = concurrent.futures.ThreadPoolExecutor(1, thread_name_prefix="fastapi-rules-db")
    try:
        return pool.submit(asyncio.run, coro).result(timeout=timeout)
    except concurrent.futures.TimeoutError:
        raise ProbeDatabaseError(f"the server did not answer within {timeout:g} s") from None
    finally:
        pool.shutdown(wait=False)


# -- the throwaway database ---------------------------------------------------------------------


@dataclass
class IsolatedDatabase:
    """A throwaway database: an SQLite file in a temporary folder, or a database/schema on a server."""

    backend: str
    #: The URL the plugin's own engines use (an async driver).
    url: URL
    description: str
    tmpdir: Path | None = None
    admin_url: URL | None = None
    name: str | None = None
    schema: str | None = None
    dropped: bool = False
    #: SQLite: the schemas the app's tables name, each a database file attached under its name.
    schemas: tuple[str, ...] = ()

    @property
    def stable_description(self) -> str:
        """The description without what changes from run to run (temporary path, database name).

        Probe messages use this one: a report must read the same on every run of the same app.
        """
        if self.backend == "sqlite":
            return "a temporary SQLite database"
        server = server_of(self.admin_url) if self.admin_url is not None else self.backend
        return f"a throwaway {'schema' if self.schema else 'database'} on {server}"

    # -- URLs and options for the app's engines -----------------------------------------------------

    @property
    def application_name(self) -> str:
        """What every connection of the probes calls itself on the server (FR511 terminates those)."""
        return f"fastapi-rules-{self.name or 'sqlite'}"

    def connect_args(self, driver: str) -> dict[str, Any]:
        """Connection arguments every isolated engine needs: its name, and a schema's search path."""
        if self.backend != "postgresql":
            return {}
        settings = {"application_name": self.application_name}
        if self.schema:
            settings["search_path"] = self.schema
        if driver == "asyncpg":
            return {"server_settings": settings}
        if driver in ("psycopg", "psycopg2"):
            args: dict[str, Any] = {"application_name": self.application_name}
            if self.schema:
                args["options"] = f"-csearch_path={self.schema}"
            return args
        return {}

    def url_for(self, requested: URL | None, is_async: bool) -> URL:
        """The isolated URL an engine gets when the app asked for ``requested``."""
        if self.backend == "sqlite":
            assert self.url.database
            return make_url(
                f"sqlite+aiosqlite:///{self.url.database}" if is_async else f"sqlite:///{self.url.database}"
            )
        if is_async:
            return self.url
        driver = None
        if requested is not None and requested.get_backend_name() == self.backend:
            candidate = requested.get_driver_name()
            if candidate in SYNC_DRIVERS.get(self.backend, ()):
                driver = candidate
        if driver is None:
            driver = next((d for d in SYNC_DRIVERS.get(self.backend, ()) if driver_importable(d)), None)
        if driver is None:
            raise ProbeDatabaseError(
                f"the app creates a synchronous {self.backend} engine, and no synchronous driver "
                f"for {self.backend} is installed to redirect it to the probe database."
            )
        return self.url.set(drivername=f"{self.backend}+{driver}")

    def create_plugin_engine(self) -> AsyncEngine:
        """An engine for the plugin's own work (schema, seeding, inspection): no pool, not counted."""
        url = self.url
        engine = _original_create_async_engine(
            url, poolclass=NullPool, connect_args=self.connect_args(url.get_driver_name())
        )
        self.tune(engine)
        return engine

    def tune(self, engine: AsyncEngine | Engine) -> None:
        """Fit an engine on the temporary SQLite file to the app's schema, and make commits cheap.

        The engine's dialect instance is fitted (``sqlite_fit.py``: integer keys of any width
        autoincrement, PostgreSQL-only types stored as types SQLite holds, server-default functions
        such as ``gen_random_uuid()`` exist), so the plugin's schema creation and the app's own
        ``create_all`` or migrations at startup see the same tables. ``PRAGMA synchronous=OFF``:
        nothing on the file needs to survive a crash, and without it every commit of the app and of
        the seeding waited for the disk (fsync), which made writes the slowest requests of the probe
        run. Statements issued here bypass the SQL counting (they run on the driver connection).
        """
        if self.backend != "sqlite":
            return
        from sqlalchemy import event

        sync_engine = getattr(engine, "sync_engine", engine)
        fit_dialect(sync_engine.dialect)

        folder = self.tmpdir if self.tmpdir is not None else Path(self.url.database or ".").parent
        attached = [(schema, str(folder / f"schema-{index}.db")) for index, schema in enumerate(self.schemas)]

        def on_connect(dbapi_connection: Any, _record: Any) -> None:
            cursor = dbapi_connection.cursor()
            try:
                cursor.execute("PRAGMA synchronous=OFF")
                for schema, path in attached:
                    quoted = schema.replace('"', '""')
                    cursor.execute(f'ATTACH DATABASE ? AS "{quoted}"', (path,))
            finally:
                cursor.close()
            add_postgres_functions(dbapi_connection)

        event.listen(sync_engine, "connect", on_connect)

    # -- dropping ---------------------------------------------------------------------------------

    async def drop(self) -> None:
        """Delete the database (the file, or the server database/schema); safe to call twice."""
        if self.dropped:
            return
        self.dropped = True
        if self.tmpdir is not None:
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            return
        assert self.admin_url is not None and self.name is not None
        admin = _original_create_async_engine(
            self.admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool
        )
        try:
            async with admin.connect() as connection:
                if self.schema:
                    await connection.execute(text(f'DROP SCHEMA IF EXISTS "{self.name}" CASCADE'))
                    return
                if self.backend == "postgresql":
                    await connection.execute(
                        text(
                            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                            "WHERE datname = :name AND pid <> pg_backend_pid()"
                        ),
                        {"name": self.name},
                    )
                await connection.execute(text(f'DROP DATABASE IF EXISTS "{self.name}"'))
        finally:
            await admin.dispose()

    def drop_blocking(self) -> None:
        """Last-resort cleanup from ``atexit``, on a loop of its own."""
        if self.dropped:
            return
        if self.tmpdir is not None:
            self.dropped = True
            shutil.rmtree(self.tmpdir, ignore_errors=True)
            return
        with contextlib.suppress(Exception):
            asyncio.run(self.drop())


_LIVE: list[IsolatedDatabase] = []
_ATEXIT_LOCK = threading.Lock()
_ATEXIT_REGISTERED = False


def register_atexit(database: IsolatedDatabase) -> None:
    global _ATEXIT_REGISTERED
    with _ATEXIT_LOCK:
        _LIVE.append(database)
        if not _ATEXIT_REGISTERED:
            atexit.register(_drop_leftovers)
            _ATEXIT_REGISTERED = True


def _drop_leftovers() -> None:
    while _LIVE:
        _LIVE.pop().drop_blocking()


def forget(database: IsolatedDatabase) -> None:
    with _ATEXIT_LOCK, contextlib.suppress(ValueError):
        _LIVE.remove(database)


def create_sqlite(schemas: tuple[str, ...] = ()) -> IsolatedDatabase:
    """A temporary SQLite file (aiosqlite), deleted with its folder at the end.

    A schema the app's tables name is a database of its own in SQLite: one more file in the same
    folder, attached under that name on every connection (``IsolatedDatabase.tune``).
    """
    try:
        import aiosqlite  # noqa: F401
    except ImportError:
        raise ProbeDatabaseError(
            "The probes run on an embedded SQLite database by default, which needs the "
            "`aiosqlite` package: install it, or point --fastapi-rules-db-url at a PostgreSQL "
            "server (postgresql+asyncpg://user@host:5432/postgres)."
        ) from None
    tmpdir = Path(tempfile.mkdtemp(prefix="fastapi-rules-"))
    path = tmpdir / "probe.db"
    database = IsolatedDatabase(
        backend="sqlite",
        url=make_url(f"sqlite+aiosqlite:///{path}"),
        description=f"a temporary SQLite database ({path})",
        tmpdir=tmpdir,
        schemas=tuple(schemas),
    )
    register_atexit(database)
    return database


async def create_on_server(
    base: URL,
    allow_schema: bool,
    allow: Callable[[Engine], None] | None = None,
    schemas: tuple[str, ...] = (),
) -> IsolatedDatabase:
    """``CREATE DATABASE fastapi_rules_<pid>_<random>`` on the server of ``base`` (async driver).

    Connects to ``base``'s own database, or to a maintenance database when that one does not exist.
    With ``allow_schema`` (a server the user named), a user who may not create databases gets a
    throwaway schema in ``base``'s database instead. Raises :class:`ProbeDatabaseError` saying why.

    The new database gets what the app's migrations would have made before its tables: the
    ``schemas`` its tables name, and the extensions installed in the app's own database (read from
    its catalog, ``pg_extension``; nothing of its data is read), so ``pg_trgm`` operators or
    ``uuid-ossp`` defaults work there too. Either is best effort: what cannot be made is left out,
    and the tables that need it are reported as such.
    """
    backend = base.get_backend_name()
    name = f"fastapi_rules_{os.getpid()}_{secrets.token_hex(3)}"
    candidates = [base] + [
        base.set(database=maintenance)
        for maintenance in _MAINTENANCE_DATABASES
        if backend == "postgresql" and base.database != maintenance
    ]
    last: BaseException | None = None
    for admin_url in candidates:
        admin = _original_create_async_engine(admin_url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
        if allow is not None:
            allow(admin.sync_engine)

        own = admin_url is base

        async def attempt(admin: AsyncEngine = admin, own: bool = own) -> tuple[bool, list[str]]:
            """Create the database (True), or the schema when only that is allowed (False); and the
            extensions of the app's own database, when it is the one connected to."""
            async with admin.connect() as connection:
                extensions: list[str] = []
                if own and backend == "postgresql":
                    with contextlib.suppress(Exception):
                        rows = await connection.execute(
                            text("SELECT extname FROM pg_extension WHERE extname <> 'plpgsql'")
                        )
                        extensions = [str(row[0]) for row in rows]
                try:
                    await connection.execute(text(f'CREATE DATABASE "{name}"'))
                    return True, extensions
                except Exception as exc:
                    if not (allow_schema and _is_permission_error(exc)):
                        raise
                    await connection.execute(text(f'CREATE SCHEMA "{name}"'))
                    return False, []

        try:
            whole_database, extensions = await asyncio.wait_for(attempt(), CONNECT_TIMEOUT)
        except Exception as exc:  # noqa: BLE001 - the server is down, refuses us, or lacks the database
            last = exc
            if _database_missing(exc):
                continue
            break
        finally:
            await admin.dispose()
        if whole_database:
            database = IsolatedDatabase(
                backend=backend,
                url=base.set(database=name),
                description=f"a throwaway database {name} on {server_of(base)}",
                admin_url=admin_url,
                name=name,
            )
            register_atexit(database)
            await _prepare(database.url, schemas, extensions, allow)
            return database
        else:
            database = IsolatedDatabase(
                backend=backend,
                url=admin_url,
                description=f"a throwaway schema {name} in {masked_url(admin_url)}",
                admin_url=admin_url,
                name=name,
                schema=name,
            )
        register_atexit(database)
        return database
    raise ProbeDatabaseError(_why_not(base, last))


async def _prepare(
    url: URL, schemas: tuple[str, ...], extensions: list[str], allow: Callable[[Engine], None] | None
) -> None:
    """Make the app's schemas and extensions in a new database (best effort, each on its own)."""
    statements = [f'CREATE EXTENSION IF NOT EXISTS "{name}"' for name in extensions]
    statements += [f'CREATE SCHEMA IF NOT EXISTS "{name}"' for name in schemas]
    if not statements:
        return
    engine = _original_create_async_engine(url, isolation_level="AUTOCOMMIT", poolclass=NullPool)
    if allow is not None:
        allow(engine.sync_engine)
    try:
        async with engine.connect() as connection:
            for statement in statements:
                with contextlib.suppress(Exception):
                    await asyncio.wait_for(connection.execute(text(statement)), CONNECT_TIMEOUT)
    except Exception:  # noqa: BLE001 - the tables that need them are reported as broken
        pass
    finally:
        await engine.dispose()


def _why_not(base: URL, exc: BaseException | None) -> str:
    server = server_of(base)
    if isinstance(exc, TimeoutError | asyncio.TimeoutError):
        return f"its server {server} did not answer within {CONNECT_TIMEOUT:g} s"
    lines = str(exc).strip().splitlines() if exc is not None else []
    detail = f"{type(exc).__name__}: {lines[0][:200]}" if lines else type(exc).__name__
    if exc is not None and _is_permission_error(exc):
        return f"its server {server} refused CREATE DATABASE ({detail})"
    return f"its server {server} could not be reached ({detail})"


def _is_permission_error(exc: BaseException) -> bool:
    words = f"{type(exc).__name__} {exc}".lower()
    return "permission denied" in words or "insufficientprivilege" in words or "access denied" in words


def _database_missing(exc: BaseException) -> bool:
    words = f"{type(exc).__name__} {exc}".lower()
    return "invalidcatalogname" in words or ("database" in words and "does not exist" in words)


def placement_of(facts: Any, option: str | None, source: str | None = None) -> DatabasePlacement:
    """The session's :class:`DatabasePlacement`, kept on its ``AppFacts`` (made on first use)."""
    placement = getattr(facts, "database_placement", None)
    if not isinstance(placement, DatabasePlacement):
        placement = DatabasePlacement(option, source)
        facts.database_placement = placement
    return placement
