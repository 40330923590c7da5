"""The probe run itself: the conforming app passes every probe rule, its database is untouched, and
the process is left as it was; the probes on other app shapes (no database, a service that is down,
PostgreSQL, seeded rows the app's schemas accept), reports that read the same on every run, one
production-mode child for several rules, and pytest-xdist's split of the run.

A test here judges the run or rules of several families at once; a test of one family's probe rule
is in that family's file (test_rules_<family>.py), and each probe rule's violating variant in
test_probes_variants.py.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BLOG, RulesRun, _pg, line_of

PROBE_CODES = (
    "FR102",
    "FR103",
    "FR106",
    "FR107",
    "FR205",
    "FR210",
    "FR211",
    "FR509",
    "FR510",
    "FR704",
    "FR705",
    "FR806",
)

#: Rows in the app's own configured database before the plugin runs (it must not change).
SEED_APP_DB = """
import asyncio, sys
from src.database import Base, sessionmanager
from src.config import get_settings
from src.users.models import User
from src.posts.models import Post

async def main():
    sessionmanager.init(get_settings().DATABASE_URL)
    await sessionmanager.create_all()
    async with sessionmanager.session_factory() as session:
        alice = User(email="alice@example.com", username="alice", hashed_password="x" * 60)
        session.add(alice)
        await session.flush()
        session.add_all([Post(title=f"t{i}", content="c", author_id=alice.id) for i in range(3)])
        await session.commit()
    await sessionmanager.close()

asyncio.run(main())
"""

#: A conftest in the sandbox that records, at the end of the session, what the probes must restore.
STATE_CONFTEST = """
import json, os
import pytest

_before = {}

def pytest_sessionstart(session):
    _before["environ"] = dict(os.environ)

def pytest_sessionfinish(session):
    import fastapi.routing
    import sqlalchemy
    import sqlalchemy.ext.asyncio
    from sqlalchemy.engine import Dialect, Engine
    state = {"loaded": "src.main" in __import__("sys").modules}
    if state["loaded"]:
        from src.main import app
        import src.database
        state["overrides"] = [repr(k) for k in app.dependency_overrides]
    def count(listeners):
        return sum(len(fns) for fns in listeners._clslevel.values())

    state["cursor_listeners"] = count(Engine.dispatch.before_cursor_execute)
    state["connect_listeners"] = count(Dialect.dispatch.do_connect)
    state["create_async_engine"] = getattr(sqlalchemy.ext.asyncio.create_async_engine, "__module__", "")
    state["create_engine"] = getattr(sqlalchemy.create_engine, "__module__", "")
    state["serialize_response"] = getattr(fastapi.routing.serialize_response, "__module__", "")
    state["environ_changed"] = sorted(
        k for k in set(_before["environ"]) | set(os.environ)
        if _before["environ"].get(k) != os.environ.get(k) and k != "PYTEST_CURRENT_TEST"
    )
    with open("probe-state.json", "w") as f:
        json.dump(state, f)
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_asyncpg_is_imported_before_any_pytester_run() -> None:
    # A pytester run that imports asyncpg first (an app with a postgresql+asyncpg engine, the
    # PostgreSQL probes) would re-import its C protocol after pytester restores sys.modules, and
    # crash the interpreter; tests/conftest.py imports it once, up front.
    import importlib.util

    assert importlib.util.find_spec("asyncpg") is None or "asyncpg.protocol.protocol" in sys.modules


# -- the conforming app ----------------------------------------------------------------------------


def test_conforming_app_passes_every_probe_rule_and_its_database_is_untouched(
    blog: Path, run_rules: Any, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    subprocess.run([sys.executable, "-c", SEED_APP_DB], cwd=blog, check=True, env=_env(pytester))
    app_db = Path(os.environ["DATABASE_URL"].split("///", 1)[1])
    before = sha256(app_db)
    pytester.makeconftest(STATE_CONFTEST)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    run = run_rules(BLOG)

    failing = [r for r in run.failing() if r["code"] in PROBE_CODES]
    assert failing == [], run.output
    for code in ("FR102", "FR106", "FR107", "FR806"):
        assert run.outcomes(code) == {"app": "passed"}, (code, run.output)
    # Every GET route was measured at both sizes, protected ones through the current-user override.
    assert set(run.outcomes("FR509").values()) == {"passed"}
    assert run.outcomes("FR509")["GET /api/v1/users/me"] == "passed"
    assert run.outcomes("FR704")["POST /api/v1/posts"] == "passed"
    assert run.outcomes("FR705") == {"POST /api/v1/auth/register": "passed"}
    assert run.outcomes("FR211")["GET /api/v1/posts/{post_id}"] == "passed"
    assert run.outcomes("FR210")["POST /api/v1/posts"] == "passed"
    assert run.outcomes("FR205")["DELETE /api/v1/posts/{post_id}"] == "passed"
    assert run.outcomes("FR103") == {"app": "passed"}

    # Nothing lost: the app's configured SQLite database is byte-for-byte what it was.
    assert sha256(app_db) == before
    assert not app_db.with_name(app_db.name + "-journal").exists()
    assert not list(scratch.glob("fastapi-rules-*")), "the probes left their temporary database behind"

    state = json.loads((blog / "probe-state.json").read_text())
    assert state["overrides"] == []
    assert state["cursor_listeners"] == 0 and state["connect_listeners"] == 0
    assert state["create_async_engine"] == "sqlalchemy.ext.asyncio.engine"
    assert state["create_engine"] == "sqlalchemy.engine.create"
    assert state["serialize_response"] == "fastapi.routing"
    assert state["environ_changed"] == []


def _env(pytester: pytest.Pytester) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(pytester.path)}


# -- PostgreSQL ------------------------------------------------------------------------------------


def _dump(url: Any) -> list[Any]:
    text = url.render_as_string(hide_password=False)
    return _pg(text, "SELECT id, email, username, hashed_password FROM users ORDER BY id") + _pg(
        text, "SELECT id, title, author_id FROM posts ORDER BY id"
    )


def test_postgres_probes_pass_and_the_apps_database_keeps_every_row(
    blog: Path, run_rules: Any, pytester: pytest.Pytester, postgres_url: str, app_database: Any
) -> None:
    subprocess.run([sys.executable, "-c", SEED_APP_DB], cwd=blog, check=True, env=_env(pytester))
    before = _dump(app_database)
    assert len(before) == 4

    run = run_rules(
        BLOG, f"--fastapi-rules-db-url={postgres_url}", "--fastapi-rules-select=FR1,FR2,FR3,FR5,FR7"
    )

    failing = [r for r in run.failing() if r["code"] in (*PROBE_CODES, "FR306", "FR511")]
    assert failing == [], run.output
    assert run.outcomes("FR511") == {"app": "passed"}
    assert run.outcomes("FR306") == {"app": "passed"}
    assert set(run.outcomes("FR509").values()) == {"passed"}
    assert _dump(app_database) == before
    leftovers = _pg(
        postgres_url, f"SELECT datname FROM pg_database WHERE datname LIKE 'fastapi_rules_{os.getpid()}_%'"
    )
    assert leftovers == []


# -- the probes on other app shapes ------------------------------------------------------------------

NO_DATABASE_APP = """
from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import HTTPBearer, OAuth2PasswordBearer
from pydantic import BaseModel

app = FastAPI()
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/token")


class Item(BaseModel):
    id: int
    name: str


class Who(BaseModel):
    name: str


async def current_user(token: str = Depends(oauth2)) -> Who:
    if token != "valid":
        raise HTTPException(401, "bad token", headers={"WWW-Authenticate": "Bearer"})
    return Who(name="x")


@app.get("/api/v1/items/{item_id}", tags=["items"])
async def get_item(item_id: int) -> Item:
    if item_id > 100:
        raise HTTPException(404, "no such item")
    return Item(id=item_id, name="thing")


@app.get("/api/v1/me", tags=["me"])
async def me(user: Who = Depends(current_user)) -> Who:
    return user


@app.get("/api/v1/hidden", tags=["me"], dependencies=[Depends(HTTPBearer())])
async def hidden() -> Who:
    return Who(name="x")
"""


def test_app_without_a_database_is_probed_and_database_rules_skip(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(nodb=NO_DATABASE_APP)
    run = run_rules("nodb:app", "--fastapi-rules-select=FR102,FR103,FR210,FR306,FR509,FR704")
    assert run.outcomes("FR102") == {"app": "passed"}
    assert run.outcomes("FR103") == {"app": "skipped"}
    assert run.outcomes("FR306") == {"app": "skipped"}
    assert run.outcomes("FR210")["GET /api/v1/items/{item_id}"] == "passed"
    # The protected route's current user is not an ORM object: it is probed unauthenticated, and
    # its challenge is still checked.
    assert run.outcomes("FR704")["GET /api/v1/me"] == "passed"
    # Why the protected route gave nothing to measure: the probes could not stand in for its user.
    (me,) = [r for r in run.results_for("FR509") if r["target"] == "GET /api/v1/me"]
    assert me["outcome"] == "skipped"
    assert (
        "answered 401 at both data sizes: no rows to measure (the probes could not sign in: "
        "`current_user`: it returns `Who`, and no ORM class has an attribute for each of its "
        "required fields" in me["message"]
    ), me
    assert "fastapi_rules_auth_headers" in me["message"]
    # A route that depends on the scheme itself (fastapi_best_architecture's
    # `dependencies=[Depends(HTTPBearer())]`) has no current-user dependency: the reason says so,
    # instead of taking the endpoint for one.
    (hidden,) = [r for r in run.results_for("FR509") if r["target"] == "GET /api/v1/hidden"]
    assert (
        "(the probes could not sign in: `hidden`: the route depends on the scheme `HTTPBearer` "
        "itself, not on a current-user dependency" in hidden["message"]
    ), hidden
    assert "FR103 lifespan-disposes-engines: the app used no SQLAlchemy engine" in run.output


SERVICE_DOWN_APP = """
import asyncio
from contextlib import asynccontextmanager
from fastapi import FastAPI


@asynccontextmanager
async def lifespan(app):
    reader, writer = await asyncio.open_connection("127.0.0.1", 9)  # the cache server: down
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/api/v1/ping", tags=["ping"])
async def ping() -> dict[str, str]:
    return {"ping": "pong"}
"""


def test_lifespan_needing_a_service_that_is_down_reports_the_apps_error(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(servicedown=SERVICE_DOWN_APP)
    run = run_rules("servicedown:app", "--fastapi-rules-select=FR102,FR509")
    (startup,) = run.findings("FR102")
    assert "the lifespan failed at startup" in startup["message"]
    assert "ConnectionRefusedError" in startup["message"]
    assert run.outcomes("FR509") == {"GET /api/v1/ping": "error"}
    assert "cannot check, the app did not start" in run.output
    assert "servicedown.py" in run.output


def test_unreachable_probe_database_is_a_clear_error(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(nodb=NO_DATABASE_APP)
    run = run_rules(
        "nodb:app",
        "--fastapi-rules-select=FR509",
        "--fastapi-rules-db-url=postgresql+asyncpg://u:secret@127.0.0.1:9/x",
    )
    # One error item with the cause; the other route's item points at it.
    assert run.outcomes("FR509") == {
        "GET /api/v1/items/{item_id}": "error",
        "GET /api/v1/me": "skipped",
        "GET /api/v1/hidden": "skipped",
    }
    assert (
        "cannot create the probe database on --fastapi-rules-db-url=postgresql+asyncpg://u:***@127.0.0.1:9/x"
        in run.output
    )
    assert "secret" not in run.output


# -- seeding that the app's own schemas accept; 500s that name the app's exception -------------------

SCHEMA_SEED_APP = """
import os
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, ConfigDict, EmailStr, Field
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

engine = create_async_engine(os.environ["DATABASE_URL"])
sessions = async_sessionmaker(engine, expire_on_commit=False)


class AutoString(TypeDecorator):
    # What SQLModel declares every `str` field as: a decorator around String.
    impl = String
    cache_ok = True


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(AutoString, unique=True)
    username: Mapped[str] = mapped_column(String(20), unique=True)
    hashed_password: Mapped[str] = mapped_column(AutoString)


class AccountRead(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: EmailStr
    username: Annotated[str, Field(min_length=2, max_length=20, pattern=r"^[a-z0-9]+$")]


async def get_db():
    async with sessions() as session:
        yield session


app = FastAPI()


@app.get("/api/v1/accounts", tags=["accounts"])
async def accounts(db=Depends(get_db)) -> list[AccountRead]:
    rows = (await db.scalars(select(Account))).all()
    for row in rows:
        if not row.hashed_password.startswith("$2b$"):
            raise ValueError("hash could not be identified")  # what pwdlib says to a random string
    return rows


@app.get("/api/v1/profiles/{username}", tags=["accounts"])
async def profile(username: str, db=Depends(get_db)) -> AccountRead:
    account = await db.scalar(select(Account).where(Account.username == username))
    if account is None:
        raise HTTPException(404, "no such account")
    return account


@app.get("/api/v1/tasks/{task_id}", tags=["tasks"])
async def task(task_id: str) -> dict[str, str]:
    info = None  # the queue has no such job
    return vars(info)
"""


def test_seeded_rows_satisfy_the_apps_schemas_and_a_500_names_the_apps_exception(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    path = pytester.makepyfile(schemaseed=SCHEMA_SEED_APP)
    run = run_rules("schemaseed:app", "--fastapi-rules-select=FR211,FR509,FR510")
    # A decorated string column still gets an e-mail and a bcrypt hash; `username` meets the
    # response schema's pattern: the list route answers 200 at both sizes and is measured.
    assert run.outcomes("FR509")["GET /api/v1/accounts"] == "passed", run.output
    assert run.outcomes("FR510")["GET /api/v1/accounts"] == "passed", run.output
    # `{username}` names a unique column: the probes fill it from the seeded rows (and an unknown
    # one for FR211), instead of "1".
    assert run.outcomes("FR509")["GET /api/v1/profiles/{username}"] == "passed", run.output
    assert run.outcomes("FR211")["GET /api/v1/profiles/{username}"] == "passed", run.output
    # A real bug is named with its exception and the app's line, not "no answer below 500".
    (task,) = [r for r in run.results_for("FR510") if r["target"] == "GET /api/v1/tasks/{task_id}"]
    assert task["outcome"] == "skipped"
    line = line_of(path, r"return vars\(info\)")
    assert (
        "every valid probe request to GET /api/v1/tasks/{task_id} answered 500 (TypeError: vars() "
        f"argument must have __dict__ attribute at schemaseed.py:{line})" in task["message"]
    ), task
    assert "seeded data the app cannot handle" in task["message"]
    (task509,) = [r for r in run.results_for("FR509") if r["target"] == "GET /api/v1/tasks/{task_id}"]
    assert (
        f"(TypeError: vars() argument must have __dict__ attribute at schemaseed.py:{line})"
        in task509["message"]
    )


# -- FR306: the session dependency, and writes that cannot be injected ---------------------------------


SYNC_SESSION_APP = """
import os

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import ForeignKey, String, create_engine, select
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

engine = create_engine(os.environ["DATABASE_URL"].replace("+aiosqlite", ""))
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/login/access-token")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))


class Item(Base):
    __tablename__ = "items"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[int] = mapped_column(ForeignKey("users.id"))


def get_db():
    with Session(engine) as session:
        yield session  # never committed: the full-stack template's shape


def get_current_user(session: Session = Depends(get_db), token: str = Depends(oauth2)) -> User:
    raise HTTPException(403, "Could not validate credentials")


app = FastAPI()


@app.get("/api/v1/items", tags=["items"])
def read_items(session: Session = Depends(get_db), user: User = Depends(get_current_user)) -> list[int]:
    return list(session.scalars(select(Item.id).where(Item.owner_id == user.id)).all())
"""


def test_session_dependency_used_by_endpoints_directly_is_wrapped_and_judged(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    path = pytester.makepyfile(syncsession=SYNC_SESSION_APP)
    run = run_rules("syncsession:app", "--fastapi-rules-select=FR306,FR704")
    # The only dependency above the session is the current user, which the probe user replaces:
    # the write goes through the session dependency itself, and its missing commit is found.
    (finding,) = run.findings("FR306")
    assert finding["message"] == (
        "the plugin's probe wrote a marker row through the session from `get_db` during a successful "
        "GET /api/v1/items, and it was not committed: the app's own writes there would be lost the "
        "same way"
    ), run.output
    assert finding["location"]["file"] == "syncsession.py"
    assert finding["location"]["line"] == line_of(path, r"^def get_db")
    # FR704: the current-user dependency answers 403 to a garbage token; the finding names it and
    # points at it (one cause, one place, on every protected route).
    (challenge,) = run.findings("FR704")
    assert challenge["message"] == (
        "GET /api/v1/items with a garbage bearer token answered 403, not 401 "
        "(the token is read by `get_current_user`)"
    )
    assert challenge["location"]["file"] == "syncsession.py"
    assert challenge["location"]["line"] == line_of(path, r"^def get_current_user")
    assert "Make `get_current_user` raise an authentication error" in challenge["fix"]


# -- reports read the same on every run ----------------------------------------------------------------

UUID_KEYS_APP = """
import os
import uuid

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import ForeignKey, String, Uuid, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])
sessions = async_sessionmaker(engine, expire_on_commit=False)
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/login")


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(100))


class Item(Base):
    __tablename__ = "items"
    id: Mapped[uuid.UUID] = mapped_column(Uuid, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(100))
    owner_id: Mapped[uuid.UUID] = mapped_column(ForeignKey("users.id"))


async def get_db():
    async with sessions() as session:
        yield session


async def get_current_user(token: str = Depends(oauth2), session: AsyncSession = Depends(get_db)) -> User:
    raise HTTPException(403, "Could not validate credentials")


app = FastAPI()


@app.get("/api/v1/items/{id}", tags=["items"])
async def read_item(id: uuid.UUID, session: AsyncSession = Depends(get_db), user: User = Depends(get_current_user)) -> str:
    item = await session.get(Item, id)
    if item is None:
        raise HTTPException(404, f"item {uuid.uuid4()} not found")
    return item.title


@app.get("/api/v1/boom/{id}", tags=["items"])
async def boom(id: uuid.UUID) -> str:
    raise RuntimeError(f"request {uuid.uuid4()} failed at {object()}")
"""


def test_two_runs_on_an_app_with_uuid_keys_give_the_same_report(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    pytester.makepyfile(uuidkeys=UUID_KEYS_APP)
    args = ("--fastapi-rules-select=FR1,FR2,FR3,FR4,FR5,FR704", "-p", "no:randomly")
    first = run_rules("uuidkeys:app", *args)
    second = run_rules("uuidkeys:app", *args)
    assert first.report["results"] == second.report["results"]
    # What used to differ: ids in the FR704 message, the temporary database in FR511's reason.
    messages = " ".join(r["message"] for r in first.report["results"])
    assert "GET /api/v1/items/{id} with a garbage bearer token answered 403" in messages
    assert "/tmp" not in messages and "probe.db" not in messages, [
        r["message"] for r in first.report["results"] if "/tmp" in r["message"] or "probe.db" in r["message"]
    ]
    assert re.search(r"[0-9a-f]{8}-[0-9a-f]{4}-", messages) is None
    assert "RuntimeError: request <uuid> failed at <object object> at uuidkeys.py:" in messages, [
        r["message"] for r in first.report["results"] if "boom" in r["message"]
    ]


# -- one production-mode child for FR108, FR503 and FR802 ------------------------------------------------


def test_one_production_mode_child_serves_fr108_fr503_and_fr802(
    blog: Path, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production-mode rules and FR802 import the app with the same environment: one child
    gathers both sets of facts (a second one imported the app again)."""
    from pytest_fastapi_rules.production import launcher

    started: list[list[str]] = []
    original = launcher.ChildProcess.__init__

    def counting(self: Any, module: str, args: list[str], *rest: Any, **named: Any) -> None:
        started.append([module, *args])
        original(self, module, args, *rest, **named)

    monkeypatch.setattr(launcher.ChildProcess, "__init__", counting)
    run = run_rules(BLOG, "--fastapi-rules-select=FR108,FR503,FR802")
    outcomes = {code: list(run.outcomes(code).values()) for code in ("FR108", "FR503", "FR802")}
    assert outcomes == {"FR108": ["passed"], "FR503": ["passed"], "FR802": ["passed"]}, run.output
    assert len(started) == 1, started
    assert started[0][0] == "pytest_fastapi_rules.production" and "--logging" in started[0]


def test_the_spare_child_is_the_one_used_and_is_never_left_running(
    blog: Path, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The production-mode child's interpreter starts with pytest (issue #20); the rules that read
    the child get that process, and a run in which none of them runs ends it (deselected) or never
    starts it (listing only)."""
    from pytest_fastapi_rules import plugin
    from pytest_fastapi_rules.production import launcher

    spares: list[Any] = []
    original_start = plugin.start_spare

    def recording(module: str, count_coverage: bool = False) -> None:
        original_start(module, count_coverage)
        spares.append(launcher._SPARES[(module, count_coverage)].process)

    monkeypatch.setattr(plugin, "start_spare", recording)
    children: list[Any] = []
    original_init = launcher.ChildProcess.__init__

    def counting(self: Any, *args: Any, **named: Any) -> None:
        original_init(self, *args, **named)
        children.append(self._process)

    monkeypatch.setattr(launcher.ChildProcess, "__init__", counting)

    run = run_rules(BLOG, "--fastapi-rules-select=FR108")
    assert run.outcomes("FR108") == {"app": "passed"}, run.output
    assert len(spares) == 1 and children == spares

    spares.clear()
    children.clear()
    run = run_rules(BLOG, "--fastapi-rules-select=FR108,FR201", "-k", "FR201")
    assert "FR108" not in {r["code"] for r in run.report["results"]}, run.output
    assert len(spares) == 1 and spares[0].poll() is not None and children == []

    spares.clear()
    run_rules(BLOG, "--fastapi-rules-select=FR108", "--collect-only")
    assert spares == [] and launcher._SPARES == {}


LOGGING_CRASH_APP = """
import os

import structlog
from fastapi import FastAPI


def explode(logger, method_name, event_dict):
    raise RuntimeError("the renderer exploded")


if os.environ.get("ENVIRONMENT") == "production":
    structlog.configure(processors=[explode])

app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)


@app.get("/api/v1/ping", tags=["ping"])
async def ping() -> dict[str, str]:
    return {"ping": "pong"}
"""


def test_a_crash_of_the_logging_half_of_the_child_is_fr802s_alone(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(loggingcrash=LOGGING_CRASH_APP)
    run = run_rules("loggingcrash:app", "--fastapi-rules-select=FR108,FR802")
    assert list(run.outcomes("FR108").values()) == ["passed"], run.output
    (result,) = run.results_for("FR802")
    assert result["outcome"] == "skipped", run.output
    assert "looking at the app's logging failed: RuntimeError: the renderer exploded" in result["message"]


# -- pytest-xdist: the probe run split between workers --------------------------------------------


@pytest.mark.parametrize("app", [BLOG, "variants.fr106_default_http_errors:app"])
def test_xdist_splits_the_probe_run_and_gives_the_verdicts_of_one_process(
    blog: Path, run_rules: Any, app: str
) -> None:
    pytest.importorskip("xdist")
    serial = run_rules(app)
    parallel = run_rules(app, "-n", "2")
    assert parallel.report["results"] == serial.report["results"], parallel.output
    # FR106 compares the answers of several routes, which two workers probe separately: its samples
    # (and so its verdict and message) are those of the whole run.
    fr106 = serial.results_for("FR106")
    assert [r["outcome"] for r in fr106] == (["passed"] if app == BLOG else ["warning"])


#: Routes of a thing that answer 404 to any id and 422 to bad input, and never 401 (no authentication);
#: every request the app receives is appended to the file named by FR106_REQUEST_LOG.
ENVELOPE_WALK_APP = """
import os
from fastapi import FastAPI, HTTPException, Request
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


app = FastAPI()


@app.middleware("http")
async def record(request: Request, call_next):
    with open(os.environ["FR106_REQUEST_LOG"], "a") as log:
        log.write(f"{request.method} {request.url.path}\\n")
    return await call_next(request)
"""


def test_xdist_envelope_samples_walk_one_phase_per_status(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first shard sends another shard's requests only until each kind of answer is found: an
    app that never answers 401 does not make it send every bad input of the other shard's routes."""
    pytest.importorskip("xdist")
    from pytest_fastapi_rules.probing.requests import BAD_VALUE
    from pytest_fastapi_rules.probing.shards import shard_index

    paths = [f"/api/v1/things{index}/{{thing_id}}" for index in range(12)]
    other_shard = [path for path in paths if shard_index(f"GET {path}", 2) == 1]
    assert len(other_shard) >= 3
    handlers = "".join(
        f'\n\n@app.get("{path}", tags=["things"])\nasync def thing{index}(thing_id: int) -> dict[str, int]:\n'
        '    raise HTTPException(status_code=404, detail="not found")\n'
        for index, path in enumerate(paths)
    )
    pytester.makepyfile(walk=ENVELOPE_WALK_APP + handlers)
    log = pytester.path / "requests.log"
    monkeypatch.setenv("FR106_REQUEST_LOG", str(log))

    def bad_inputs(*args: str) -> tuple[RulesRun, int]:
        log.write_text("")
        run = run_rules("walk:app", "--fastapi-rules-select=FR106,FR210", *args)
        return run, sum(BAD_VALUE in line for line in log.read_text().splitlines())

    serial, sent_serially = bad_inputs()
    parallel, sent_in_parallel = bad_inputs("-n", "2")
    assert parallel.report["results"] == serial.report["results"], parallel.output
    (fr106,) = serial.results_for("FR106")
    assert fr106["outcome"] == "warning", serial.output
    assert "(404: {detail}; 422: {detail})" in fr106["message"], fr106["message"]
    assert sent_serially == len(paths)
    # Each route's own bad input once, and at most the first route's again for FR106's 422 sample.
    assert sent_in_parallel <= sent_serially + 1, (sent_serially, sent_in_parallel)


def test_xdist_shards_report_a_probe_setup_failure_once_each(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytest.importorskip("xdist")
    from pytest_fastapi_rules.probing.shards import shard_index

    routes = [f"/api/v1/items{index}/{{item_id}}" for index in range(6)]
    assert {shard_index(f"GET {path}", 2) for path in routes} == {0, 1}  # both workers have routes
    handlers = "".join(
        f'\n\n@app.get("{path}", tags=["items"])\nasync def items{index}(item_id: int) -> int:\n    return item_id\n'
        for index, path in enumerate(routes)
    )
    pytester.makepyfile(nodb=NO_DATABASE_APP + handlers)
    run = run_rules(
        "nodb:app",
        "--fastapi-rules-select=FR102,FR210,FR509",
        "--fastapi-rules-db-url=postgresql+asyncpg://u:secret@127.0.0.1:9/x",
        "-n",
        "2",
    )
    errors = [r for r in run.failing() if r["outcome"] == "error"]
    # One red item per worker's part of the run; FR102 judges the lifespan and only points at one.
    assert len(errors) == 2 and {e["code"] for e in errors} == {"FR210"}, run.output
    assert run.failing() == errors
    assert run.outcomes("FR102") == {"app": "skipped"}
    erroring = {e["nodeid"] for e in errors}
    for result in run.report["results"]:
        if result["outcome"] == "skipped" and "see " in result["message"]:
            pointer = result["message"].rsplit("see ", 1)[-1]
            assert pointer in erroring, result
            assert "127.0.0.1:9 could not be reached" in result["message"], result
    assert "secret" not in run.output


BLOCKING_APP = """
import asyncio
import os
import time

from fastapi import Depends, FastAPI
from sqlalchemy import String, select, text
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(50))


async def get_db():
    async with sessions() as session:
        yield session


app = FastAPI()
calls = {"warming": 0}


@app.get("/api/v1/notes", tags=["notes"])
async def notes(db=Depends(get_db)) -> list[str]:
    time.sleep(0.001)
    return list((await db.scalars(select(Note.text))).all())


@app.get("/api/v1/offloaded", tags=["notes"])
async def offloaded(db=Depends(get_db)) -> list[str]:
    await asyncio.to_thread(time.sleep, 0.001)
    return list((await db.scalars(select(Note.text))).all())


@app.get("/api/v1/busy", tags=["notes"])
async def busy() -> dict[str, int]:
    end = time.thread_time() + 0.15  # CPU time: the same stall on a loaded machine
    while time.thread_time() < end:
        pass
    return {"spun": 1}


@app.delete("/api/v1/notes/{note_id}", status_code=204, tags=["notes"])
async def delete_note(note_id: int, db=Depends(get_db)) -> None:
    note = await db.get(Note, note_id)
    if note is not None:
        await db.delete(note)
        await db.commit()


@app.get("/api/v1/warming", tags=["notes"])
async def warming(db=Depends(get_db)) -> list[str]:
    # A cache filled on the second request: three statements once, not one per row.
    calls["warming"] += 1
    if calls["warming"] == 2:
        for _ in range(3):
            await db.execute(text("SELECT 1"))
    return list((await db.scalars(select(Note.text))).all())
"""


def test_blocking_calls_and_loop_stalls_at_runtime_and_a_one_off_extra_statement(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    path = pytester.makepyfile(blockapp=BLOCKING_APP)
    run = run_rules("blockapp:app", "--fastapi-rules-select=FR402,FR509")
    assert run.outcomes("FR402") == {
        "GET /api/v1/notes": "failed",
        "GET /api/v1/offloaded": "passed",
        "GET /api/v1/busy": "failed",
        "DELETE /api/v1/notes/{note_id}": "skipped",
        "GET /api/v1/warming": "passed",
    }, run.output
    (delete,) = [r for r in run.results_for("FR402") if r["outcome"] == "skipped"]
    assert "the event loop is not watched on DELETE requests" in delete["message"], delete
    sleep_line = line_of(path, r"^    time\.sleep\(")
    (sleep,) = [f for f in run.findings("FR402") if f["target"] == "GET /api/v1/notes"]
    assert sleep["message"] == (
        "time.sleep ran on the event loop while serving GET /api/v1/notes "
        f"(at blockapp.py:{sleep_line} in notes)"
    ), sleep
    (stall,) = [r for r in run.results_for("FR402") if r["target"] == "GET /api/v1/busy"]
    assert "GET /api/v1/busy stalled the event loop for over 100 ms on 2 of 2 requests" in stall["message"]
    # The extra statements of one request are not a query per row: a second sample at the large
    # size shows the route's real count.
    assert run.outcomes("FR509")["GET /api/v1/warming"] == "passed", run.output
    assert run.outcomes("FR509")["GET /api/v1/notes"] == "passed", run.output
