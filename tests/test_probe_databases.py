"""Where the probes run and what they can hold: the probe database follows the app's PostgreSQL, falls
back to SQLite with the reason, holds PostgreSQL schemas and the apps' own column types, and a
table or a phase that fails costs only what depends on it (``sample_apps/shapes``)."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import BigInteger, Column, ForeignKey, Integer, MetaData, String, Table
from sqlalchemy.dialects import postgresql
from sqlalchemy.schema import CreateTable

from tests.conftest import RulesRun, _pg

PROBE_RULES = "FR102,FR103,FR205,FR210,FR211,FR306,FR402,FR509,FR510,FR511,FR704,FR705"

#: Per shape: the routes whose N+1 check must have run (passed, not skipped) on the seeded data.
SHAPES: dict[str, tuple[str, ...]] = {
    "bigint_keys": (
        "GET /api/v1/accounts",
        "GET /api/v1/accounts/{account_id}",
        "GET /api/v1/accounts/{account_id}/tokens",
    ),
    "circular_keys": (
        "GET /api/v1/cases",
        "GET /api/v1/participants",
        "GET /api/v1/teams/{team_id}",
        "GET /api/v1/members",
    ),
    "composite_key": (
        "GET /api/v1/memberships",
        "GET /api/v1/memberships/{membership_id}",
        "GET /api/v1/orgs/{org_id}/memberships",
    ),
    "guid_type": (
        "GET /api/v1/documents",
        "GET /api/v1/documents/{document_id}",
        "GET /api/v1/documents/{document_id}/notes",
    ),
    "postgres_types": ("GET /api/v1/events", "GET /api/v1/events/{event_id}"),
    "password_uuid": ("GET /api/v1/users",),
    "sync_engine": ("GET /api/v1/recipes", "GET /api/v1/recipes/{recipe_id}"),
}


def _check_shape(run: RulesRun, module: str) -> None:
    """No item of the shape's run errors or fails, and its routes were really probed."""
    bad = [(r["code"], r["target"], r["message"][:300]) for r in run.failing()]
    assert bad == [], run.output
    fr509 = run.outcomes("FR509")
    for target in SHAPES[module]:
        assert fr509.get(target) == "passed", (target, fr509, run.output)
    assert run.outcomes("FR102") == {"app": "passed"}
    assert "internal error" not in run.output
    # The plugin's own work warns nothing into the user's warnings summary (a table cycle did).
    assert "warnings summary" not in run.output, run.output


def _needs_driver(module: str) -> None:
    if module == "sync_engine":
        pytest.importorskip("psycopg", reason="the sync-engine shape runs on psycopg against PostgreSQL")


@pytest.mark.parametrize("module", sorted(SHAPES))
def test_each_schema_shape_is_probed_on_the_embedded_sqlite(
    shapes: Path, run_rules: Any, module: str
) -> None:
    run = run_rules(f"{module}:app", f"--fastapi-rules-select={PROBE_RULES}")
    _check_shape(run, module)
    assert run.report["probe_database"].startswith("the embedded SQLite database (the app's engine at ")
    assert (
        f"fastapi-rules: the probes ran on the embedded SQLite database (the app's engine at {module}."
        in (run.output)
    )
    fr511 = run.results_for("FR511")[0]
    assert fr511["outcome"] == "skipped" and "runs only against PostgreSQL" in fr511["message"]


@pytest.mark.parametrize("module", sorted(SHAPES))
def test_each_schema_shape_is_probed_beside_the_apps_postgres_and_leaves_nothing(
    shapes: Path, app_database: Any, postgres_url: str, run_rules: Any, module: str
) -> None:
    _needs_driver(module)
    run = run_rules(f"{module}:app", f"--fastapi-rules-select={PROBE_RULES}")
    _check_shape(run, module)
    # No option: the probes followed the app's engine to its server, on a database of their own.
    assert run.report["probe_database"].startswith("a throwaway database on postgresql+"), run.output
    assert f"(the app's engine at {module}.engine uses postgresql+" in run.report["probe_database"]
    assert run.outcomes("FR511") == {"app": "passed"}
    leftovers = _pg(
        postgres_url, f"SELECT datname FROM pg_database WHERE datname LIKE 'fastapi_rules_{os.getpid()}_%'"
    )
    assert leftovers == []
    app_url = app_database.render_as_string(hide_password=False)
    assert _pg(app_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []


def test_a_path_parameter_naming_the_serial_column_of_a_composite_key_is_bound(
    shapes: Path, run_rules: Any
) -> None:
    run = run_rules("composite_key:app", "--fastapi-rules-select=FR211")
    assert run.outcomes("FR211") == {"GET /api/v1/memberships/{membership_id}": "passed"}, run.output


def test_a_table_the_generator_cannot_fill_costs_only_the_routes_that_read_it(
    shapes: Path, run_rules: Any
) -> None:
    run = run_rules("guid_type:app", f"--fastapi-rules-select={PROBE_RULES}")
    reason = (
        "GET /api/v1/vault needs table 'vault', which the probes could not use: a generated row cannot "
        "be inserted ((sqlite3.IntegrityError) NOT NULL constraint failed: vault.secret); name a row "
        "factory for it in fastapi_rules_row_factories (vault = module:function), or a seed function "
        "in fastapi_rules_seed"
    )
    for code in ("FR210", "FR402", "FR509", "FR510"):
        (result,) = [r for r in run.results_for(code) if r["target"] == "GET /api/v1/vault"]
        assert result["outcome"] == "skipped"
        assert result["message"] == f"{code} {result['name']}: {reason}", result
    # The GUID tables next to it were seeded and probed.
    assert run.outcomes("FR509")["GET /api/v1/documents/{document_id}/notes"] == "passed"


def test_a_row_factory_named_in_the_ini_fills_that_table(
    shapes: Path, pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makeini("[pytest]\nfastapi_rules_row_factories =\n    Vault = guid_type:vault_row\n")
    run = run_rules("guid_type:app", f"--fastapi-rules-select={PROBE_RULES}")
    _check_shape(run, "guid_type")
    assert run.outcomes("FR509")["GET /api/v1/vault"] == "passed"


def test_a_malformed_row_factory_line_is_a_usage_error(shapes: Path, pytester: pytest.Pytester) -> None:
    pytester.makeini("[pytest]\nfastapi_rules_row_factories =\n    vault guid_type.vault_row\n")
    result = pytester.runpytest("--fastapi-app=guid_type:app", "-p", "no:cacheprovider")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(
        [
            "*fastapi_rules_row_factories: 'vault guid_type.vault_row' needs the form TABLE_OR_MODEL = module:attr*"
        ]
    )


def test_an_unreachable_app_server_falls_back_to_sqlite_and_says_why(
    shapes: Path, monkeypatch: pytest.MonkeyPatch, run_rules: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app:secret@127.0.0.1:9/app")
    run = run_rules("postgres_types:app", f"--fastapi-rules-select={PROBE_RULES}")
    _check_shape(run, "postgres_types")
    why = (
        "the app's engine at postgres_types.engine uses postgresql+asyncpg, but its server "
        "postgresql+asyncpg://app:***@127.0.0.1:9 could not be reached"
    )
    assert run.report["probe_database"].startswith(f"the embedded SQLite database ({why} ("), run.output
    assert f"fastapi-rules: the probes ran on the embedded SQLite database ({why}" in run.output
    (fr511,) = run.results_for("FR511")
    assert fr511["outcome"] == "skipped"
    assert why in fr511["message"] and "make the server reachable" in fr511["message"]
    assert "secret" not in run.output


def test_sqlite_named_on_the_command_line_is_used_whatever_the_app_uses(
    shapes: Path, app_database: Any, run_rules: Any
) -> None:
    run = run_rules(
        "bigint_keys:app", f"--fastapi-rules-select={PROBE_RULES}", "--fastapi-rules-db-url=sqlite"
    )
    _check_shape(run, "bigint_keys")
    assert run.report["probe_database"] == (
        "the embedded SQLite database (--fastapi-rules-db-url=sqlite (command line))"
    )
    assert "probe database: the embedded SQLite (from command line)" in run.output


CRASH_PLUGIN = """
import importlib

# By its full name: pytester's runs re-import the plugin's modules, and the package attribute
# ``probing.runner`` may still name the copy of an earlier run.
runner = importlib.import_module("pytest_fastapi_rules.probing.runner")

_saved = {}


def _crash(self, *args, **kwargs):
    raise RuntimeError("the plugin's own bug, on purpose")


def pytest_configure(config):
    _saved["method"] = getattr(runner.ProbeRun, "{method}")
    setattr(runner.ProbeRun, "{method}", _crash)


def pytest_unconfigure(config):
    setattr(runner.ProbeRun, "{method}", _saved.pop("method"))
"""


@pytest.mark.parametrize(
    ("module", "method", "phase", "code", "target"),
    [
        ("bigint_keys", "_send_health", "health", "FR107", "app"),
        ("password_uuid", "_check_password", "password-scan", "FR705", "POST /api/v1/users"),
    ],
)
def test_a_phase_that_crashes_errors_only_the_rules_it_feeds(
    shapes: Path,
    pytester: pytest.Pytester,
    run_rules: Any,
    module: str,
    method: str,
    phase: str,
    code: str,
    target: str,
) -> None:
    # A plugin of its own name per case (a conftest module would be shared between pytester runs).
    plugin = f"crash_{method.strip('_')}"
    pytester.makepyfile(**{plugin: CRASH_PLUGIN.replace("{method}", method)})
    pytester.syspathinsert()
    run = run_rules(f"{module}:app", f"--fastapi-rules-select={PROBE_RULES},{code}", "-p", plugin)
    assert [(r["code"], r["target"], r["outcome"]) for r in run.failing()] == [(code, target, "error")]
    (error,) = run.failing()
    assert error["message"] == (
        f"{code} {error['name']}: internal error in pytest-fastapi-rules: the probe phase {phase!r} "
        f"crashed (RuntimeError: the plugin's own bug, on purpose), so {target} cannot be judged. "
        f"Only the rules that read it are affected ({code}). This is a bug in the plugin, "
        "not a finding about your app: please report it with the traceback below."
    )
    assert run.output.count('raise RuntimeError("the plugin\'s own bug, on purpose")') == 1
    # Every other probe rule reported as usual.
    assert set(run.outcomes("FR509").values()) == {"passed"}
    assert run.outcomes("FR102") == {"app": "passed"}


# -- the SQLite fit and the column values, in-process ------------------------------------------------


def test_the_sqlite_fit_changes_the_probe_dialect_and_never_the_apps_metadata() -> None:
    from sqlalchemy.dialects.sqlite import aiosqlite

    from pytest_fastapi_rules.probing.sqlite_fit import fit_dialect, fitted_sqlite_dialect

    metadata = MetaData()
    tags = postgresql.ARRAY(String(20))
    table = Table(
        "events",
        metadata,
        Column("id", BigInteger, primary_key=True),
        Column("tags", tags),
        Column("payload", postgresql.JSONB),
        Column("source", postgresql.INET),
    )
    pair = Table(
        "pairs",
        metadata,
        Column("id", Integer, primary_key=True, autoincrement=True),
        Column("event_id", ForeignKey("events.id"), primary_key=True),
    )
    fitted = [str(CreateTable(t).compile(dialect=fitted_sqlite_dialect())) for t in (table, pair)]
    assert "id INTEGER NOT NULL" in fitted[0] and "tags JSON" in fitted[0] and "source TEXT" in fitted[0]
    assert "PRIMARY KEY (id, event_id)" in fitted[1]
    # The app's objects are the same objects, and a plain SQLite dialect still refuses them.
    assert table.c.tags.type is tags and isinstance(table.c.id.type, BigInteger)
    assert table.c.id.autoincrement == "auto" and pair.c.id.autoincrement is True
    for t in (table, pair):
        with pytest.raises(Exception, match=r"ARRAY|composite primary keys"):
            CreateTable(t).compile(dialect=aiosqlite.dialect())
    plain = aiosqlite.dialect()
    assert fit_dialect(plain) is plain and fit_dialect(plain) is plain  # idempotent


def test_an_apps_own_type_decorator_gets_a_value_it_accepts() -> None:
    import importlib.util

    from sqlalchemy.dialects.sqlite import aiosqlite

    from pytest_fastapi_rules.probing.column_values import declared_types
    from pytest_fastapi_rules.probing.seeding import RowGenerator

    spec = importlib.util.spec_from_file_location(
        "shape_guid_type", Path(__file__).parent.parent / "sample_apps" / "shapes" / "guid_type.py"
    )
    assert spec is not None and spec.loader is not None
    os.environ.setdefault("DATABASE_URL", "sqlite+aiosqlite://")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    try:
        generator = RowGenerator(
            declared=declared_types([module.Document, module.Note, module.Vault]),
            dialect=aiosqlite.dialect(),
        )
        document_id = generator.value(module.Document.__table__.c.id, 3)
        note_id = generator.value(module.Note.__table__.c.id, 3)  # declared Mapped[GUID]
        assert isinstance(document_id, uuid.UUID)
        assert module.GUID().process_bind_param(note_id, None) is not None
        assert generator.value(module.Document.__table__.c.id, 3) == document_id  # deterministic
        assert generator.value(module.Vault.__table__.c.secret, 3) is None  # nothing fits: a factory's job
    finally:
        asyncio.run(module.engine.dispose())


def test_a_server_named_on_the_command_line_that_is_down_is_one_clear_error_for_the_engine_rules(
    shapes: Path, run_rules: Any
) -> None:
    run = run_rules(
        "bigint_keys:app",
        "--fastapi-rules-select=FR501,FR502,FR504",
        "--fastapi-rules-db-url=postgresql+asyncpg://u:secret@127.0.0.1:9/x",
    )
    message = (
        "cannot check: cannot create the probe database on --fastapi-rules-db-url="
        "postgresql+asyncpg://u:***@127.0.0.1:9/x (command line): its server "
        "postgresql+asyncpg://u:***@127.0.0.1:9 could not be reached"
    )
    for code in ("FR501", "FR502", "FR504"):
        (result,) = run.results_for(code)
        assert result["outcome"] == "error" and message in result["message"], result
    assert "internal error" not in run.output and "secret" not in run.output


GLOBALS_PROXY_APP = """
import os

from fastapi import FastAPI
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Globals:
    # A request-globals proxy (fastapi-globals' shape): every missing name answers None, even
    # ``__dict__``; it has no namespace of its own.
    __slots__ = ("_values",)

    def __init__(self):
        object.__setattr__(self, "_values", {})

    def __getattr__(self, name):
        return self._values.get(name)


g = Globals()
engine = create_async_engine(os.environ["DATABASE_URL"])
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


app = FastAPI()


@app.get("/api/v1/things", tags=["things"])
async def things() -> list[str]:
    async with sessions() as session:
        return list(await session.scalars(select(Thing.name).limit(50)))
"""


def test_an_object_that_answers_every_attribute_does_not_stop_the_probes(
    pytester: pytest.Pytester, app_env: None, run_rules: Any
) -> None:
    pytester.makepyfile(globalsproxy=GLOBALS_PROXY_APP)
    run = run_rules("globalsproxy:app", "--fastapi-rules-select=FR102,FR501,FR509,FR510")
    assert run.failing() == [] or {r["code"] for r in run.failing()} == {"FR501"}, run.output
    assert run.outcomes("FR509") == {"GET /api/v1/things": "passed"}
    assert "internal error" not in run.output


SLOW_VALIDATOR_APP = """
import time
from typing import Any

from fastapi import FastAPI
from pydantic import BaseModel, model_validator


class Order(BaseModel):
    quantity: float
    notes: dict[str, object] = {}

    @model_validator(mode="after")
    def _slow(self) -> "Order":
        if self.notes == {"slow": True}:
            time.sleep(60)  # never reached by a client; the probes' bodies must not get here
        return self


class Slow(BaseModel):
    name: str

    @model_validator(mode="after")
    def _forever(self) -> "Slow":
        time.sleep(60)  # a validator that never finishes on the probes' bodies
        return self


app = FastAPI()


@app.post("/api/v1/orders", status_code=201, tags=["orders"])
async def create_order(order: Order) -> dict[str, Any]:
    return {"quantity": order.quantity, "notes": order.notes}


@app.post("/api/v1/slow", status_code=201, tags=["slow"])
async def create_slow(body: Slow) -> dict[str, str]:
    return {"name": body.name}
"""


def test_request_bodies_are_json_and_a_validator_that_never_ends_costs_only_its_route(
    pytester: pytest.Pytester, app_env: None, run_rules: Any
) -> None:
    import time

    pytester.makepyfile(slowapp=SLOW_VALIDATOR_APP)
    started = time.monotonic()
    run = run_rules("slowapp:app", "--fastapi-rules-select=FR210,FR510")
    assert time.monotonic() - started < 40, run.output
    # ``dict[str, object]`` bodies are JSON: the order route was probed.
    assert run.outcomes("FR510") == {"POST /api/v1/orders": "passed", "POST /api/v1/slow": "skipped"}
    (slow,) = [r for r in run.results_for("FR510") if r["target"] == "POST /api/v1/slow"]
    assert slow["message"] == (
        "FR510 query-budget: the probes sent nothing to POST /api/v1/slow: building a request body "
        "took over 5 s in the app's validators"
    )
    assert "internal error" not in run.output


def test_a_route_whose_requests_cannot_be_built_errors_only_its_own_items(
    shapes: Path, pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(
        crash_tokens="""
import importlib

requests = importlib.import_module("pytest_fastapi_rules.probing.requests")
_saved = {}


def pytest_configure(config):
    original = _saved["happy"] = requests.RequestBuilder._happy

    def happy(self, route, pick):
        if route.path.endswith("/tokens"):
            raise RuntimeError("no request for tokens")
        return original(self, route, pick)

    requests.RequestBuilder._happy = happy


def pytest_unconfigure(config):
    requests.RequestBuilder._happy = _saved.pop("happy")
"""
    )
    pytester.syspathinsert()
    run = run_rules("bigint_keys:app", f"--fastapi-rules-select={PROBE_RULES}", "-p", "crash_tokens")
    target = "GET /api/v1/accounts/{account_id}/tokens"
    failing = {(r["code"], r["target"], r["outcome"]) for r in run.failing()}
    assert failing == {(code, target, "error") for code in ("FR210", "FR402", "FR509", "FR510")}, run.output
    assert run.output.count('raise RuntimeError("no request for tokens")') == 1
    assert (
        f"building the probe requests of {target} crashed (RuntimeError: no request for tokens)" in run.output
    )
    assert run.outcomes("FR509")["GET /api/v1/accounts"] == "passed"


def test_a_named_server_without_an_installed_async_driver_says_which_to_install(
    shapes: Path, run_rules: Any
) -> None:
    for module in ("aiomysql", "asyncmy"):
        try:
            __import__(module)
        except ImportError:
            continue
        pytest.skip(f"{module} is installed: the plugin would use it")
    run = run_rules(
        "bigint_keys:app",
        "--fastapi-rules-select=FR509,FR501",
        "--fastapi-rules-db-url=mysql://u:secret@db/x",
    )
    expected = (
        "--fastapi-rules-db-url=mysql://u:***@db/x (command line): the plugin's own connections to mysql "
        "need an async driver, and none is installed: install aiomysql or asyncmy (pip install aiomysql), "
        "or pass --fastapi-rules-db-url=sqlite."
    )
    assert expected in run.output, run.output
    assert "internal error" not in run.output and "secret" not in run.output
    assert {r["outcome"] for r in run.failing()} == {"error"}


PG_STARTUP_APP = """
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

engine = create_async_engine(os.environ["DATABASE_URL"])


@asynccontextmanager
async def lifespan(app):
    async with engine.begin() as connection:
        await connection.execute(text("CREATE EXTENSION IF NOT EXISTS pg_trgm"))
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)


@app.get("/api/v1/ping", tags=["ping"])
async def ping() -> dict[str, str]:
    return {"ping": "pong"}
"""


def test_a_startup_that_only_postgresql_can_run_is_not_judged_on_the_sqlite_fallback(
    pytester: pytest.Pytester, app_env: None, monkeypatch: pytest.MonkeyPatch, run_rules: Any
) -> None:
    monkeypatch.setenv("DATABASE_URL", "postgresql+asyncpg://app:secret@127.0.0.1:9/app")
    pytester.makepyfile(pgstartup=PG_STARTUP_APP)
    run = run_rules("pgstartup:app", "--fastapi-rules-select=FR102,FR509")
    (fr102,) = run.results_for("FR102")
    assert fr102["outcome"] == "skipped", fr102
    assert "the lifespan failed with a database error on the probes' SQLite database" in fr102["message"]
    assert "127.0.0.1:9 could not be reached" in fr102["message"]
    # The items that need the running app cannot check it, and say why the app ran on SQLite.
    (fr509,) = run.results_for("FR509")
    assert fr509["outcome"] == "error"
    assert "The probes started the app on SQLite because the app's engine at pgstartup.engine" in run.output
    assert "secret" not in run.output


SIZE_DEPENDENT_APP = """
import os

from fastapi import FastAPI
from sqlalchemy import String, func, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


app = FastAPI()


@app.get("/api/v1/items", tags=["items"])
async def items() -> list[str]:
    async with sessions() as session:
        if await session.scalar(select(func.count(Item.id))) > 5:
            raise RuntimeError("too many items")
        return list(await session.scalars(select(Item.name)))
"""


def test_a_route_that_answers_at_one_data_size_only_says_so(
    pytester: pytest.Pytester, app_env: None, run_rules: Any
) -> None:
    pytester.makepyfile(sizes=SIZE_DEPENDENT_APP)
    run = run_rules("sizes:app", "--fastapi-rules-select=FR509")
    (result,) = run.results_for("FR509")
    assert result["outcome"] == "skipped"
    assert result["message"].startswith(
        "FR509 no-n-plus-one: the valid request to GET /api/v1/items answered 2xx in the small phase "
        "but answered 500 (RuntimeError: too many items at sizes.py:"
    ), result["message"]
    assert result["message"].endswith("in the large phase, so there is no pair of answers to compare")


SLOW_PG_APP = """
import asyncio
import os

from fastapi import FastAPI
from sqlalchemy import String
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(40))


app = FastAPI()


@app.get("/api/v1/slow", tags=["slow"])
async def slow() -> dict[str, str]:
    open("probing-started", "w").close()
    await asyncio.sleep(120)
    return {}
"""


def test_sigterm_during_the_probes_still_drops_their_database(
    pytester: pytest.Pytester, app_env: None, app_database: Any, postgres_url: str
) -> None:
    import signal
    import subprocess
    import sys
    import time

    pytester.makepyfile(slowpg=SLOW_PG_APP)
    process = pytester.popen(
        [
            sys.executable,
            "-m",
            "pytest",
            "--fastapi-app=slowpg:app",
            "--fastapi-rules-select=FR509",
            "-p",
            "no:cacheprovider",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
    )
    try:
        deadline = time.monotonic() + 60
        while not (pytester.path / "probing-started").exists():
            assert time.monotonic() < deadline and process.poll() is None, process.stdout.read()  # type: ignore[union-attr]
            time.sleep(0.1)
        assert _pg(
            postgres_url,
            f"SELECT datname FROM pg_database WHERE datname LIKE 'fastapi_rules_{process.pid}_%'",
        )
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    leftovers = _pg(
        postgres_url, f"SELECT datname FROM pg_database WHERE datname LIKE 'fastapi_rules_{process.pid}_%'"
    )
    assert leftovers == [], process.stdout.read()  # type: ignore[union-attr]
