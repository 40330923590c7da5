"""Verdicts that held wrong on public projects, each as a small app: the finding that was wrong is
gone, and the violation next to it is still found (so the check did not just go quiet)."""

from __future__ import annotations

import codecs
from pathlib import Path
from typing import Any

import pytest

MISSING_TOKEN_APP = """
from fastapi import Depends, FastAPI, Request


class MissingTokenError(Exception):
    '''What a JWT library raises when the request carries no token (authx's shape).'''


async def current_user(request: Request) -> str:
    token = request.headers.get("authorization")
    if not token:
        raise MissingTokenError("no token")
    return token


app = FastAPI()


@app.get("/api/v1/items/{item_id}", tags=["items"])
async def item(item_id: int, user: str = Depends(current_user)) -> int:
    return item_id


@app.get("/api/v1/open/{item_id}", tags=["items"])
async def open_item(item_id: int) -> int:
    if item_id < 0:
        raise ValueError("negative")
    return item_id
"""


def test_fr210_does_not_blame_bad_input_for_a_500_the_valid_request_gets_too(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(tokens=MISSING_TOKEN_APP)
    run = run_rules("tokens:app", "--fastapi-rules-select=FR210")
    outcomes = run.outcomes("FR210")
    assert outcomes["GET /api/v1/items/{item_id}"] == "skipped", run.output
    (skipped,) = [r for r in run.results_for("FR210") if r["target"] == "GET /api/v1/items/{item_id}"]
    assert "the valid request to GET /api/v1/items/{item_id} answered 500" in skipped["message"]
    assert "says nothing about input handling" in skipped["message"]
    assert outcomes["GET /api/v1/open/{item_id}"] == "passed"


ASYNC_SESSIONMAKER_APP = """
import time
from typing import AsyncIterator

from fastapi import Depends, FastAPI
from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
from sqlalchemy.orm import sessionmaker

engine = create_async_engine("sqlite+aiosqlite://")
AsyncSessionLocal = sessionmaker(bind=engine, class_=AsyncSession, expire_on_commit=False)


async def get_db() -> AsyncIterator[AsyncSession]:
    async with AsyncSessionLocal() as session:
        yield session


async def slow() -> None:
    time.sleep(0.01)


app = FastAPI()


@app.get("/api/v1/ping", tags=["ping"])
async def ping(db: AsyncSession = Depends(get_db)) -> dict[str, str]:
    await slow()
    return {"ping": "pong"}
"""


def test_fr401_an_async_session_from_a_sessionmaker_does_not_block(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(asyncmaker=ASYNC_SESSIONMAKER_APP)
    run = run_rules("asyncmaker:app", "--fastapi-rules-select=FR401")
    messages = [f["message"] for f in run.findings("FR401")]
    assert not any("sessionmaker" in message for message in messages), messages
    assert any("time.sleep" in message for message in messages), messages  # the real one stays


SECRETS_APP = """
from fastapi import FastAPI

PK_TOKEN = "token"
ACCESS_TOKEN_COOKIE = "access_token"
SECRET_KEY = "dev-secret-key"

app = FastAPI()


@app.get("/api/v1/ping", tags=["ping"])
async def ping() -> dict[str, str]:
    return {"ping": PK_TOKEN + ACCESS_TOKEN_COOKIE}
"""


def test_fr703_a_literal_made_of_the_names_own_words_is_a_name_not_a_secret(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(secrets_app=SECRETS_APP)
    run = run_rules("secrets_app:app", "--fastapi-rules-select=FR703")
    messages = [f["message"] for f in run.findings("FR703")]
    assert len(messages) == 1 and "SECRET_KEY" in messages[0], messages


def test_fr801_reads_a_requirements_file_saved_as_utf16(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(
        plain="from fastapi import FastAPI\napp = FastAPI()\n",
    )
    text = "fastapi>=0.121.2\nrequests==2.31.0\n"
    Path(pytester.path / "requirements.txt").write_bytes(codecs.BOM_UTF16_LE + text.encode("utf-16-le"))
    run = run_rules("plain:app", "--fastapi-rules-select=FR801")
    assert "internal error" not in run.output
    messages = [f["message"] for f in run.findings("FR801")]
    assert any("requests" in message for message in messages), run.output


HEALTH_APP = """
from fastapi import APIRouter, FastAPI

app = FastAPI()
probe = APIRouter(prefix="/probe", tags=["probe"])


@probe.get("/live")
async def live() -> dict[str, str]:
    return {"status": "ok"}


@probe.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


app.include_router(probe)


@app.get("/things", tags=["things"])
async def things() -> list[int]:
    return []
"""


def test_fr109_leaves_health_routes_alone_under_a_prefix_too(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(healthapp=HEALTH_APP)
    run = run_rules("healthapp:app", "--fastapi-rules-select=FR109")
    # `/probe/health` is the rulebook's health path under a prefix; `/probe/live` is a name the
    # rulebook does not use: judged, with the setting that leaves it alone.
    assert run.outcomes("FR109") == {"GET /things": "warning", "GET /probe/live": "warning"}, run.output
    (live,) = [f for r in run.results_for("FR109") if r["target"] == "GET /probe/live" for f in r["findings"]]
    assert "`/probe/live` is not the rulebook's health path" in live["message"]
    assert "list it in the ini key fastapi_rules_infra_paths" in live["message"]


def test_infra_aliases_are_left_alone_only_when_listed(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(healthapp=HEALTH_APP)
    pytester.makeini("[pytest]\nfastapi_rules_infra_paths =\n    /health\n    */health\n    */live\n")
    run = run_rules("healthapp:app", "--fastapi-rules-select=FR109")
    assert run.outcomes("FR109") == {"GET /things": "warning"}, run.output


ROUTER_APP = """
from fastapi import Depends, FastAPI
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import AsyncSession


async def get_db() -> AsyncSession:
    raise NotImplementedError


app = FastAPI()


@app.post("/api/v1/items", status_code=201, tags=["items"])
async def create_item(db: AsyncSession = Depends(get_db)) -> dict[str, int]:
    await db.execute(text("SELECT 1"))
    query = select(text("1"))
    db.add(object())
    await db.commit()
    return {"ok": 1}
"""


def test_fr302_one_finding_per_function_listing_its_calls(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(routerapp=ROUTER_APP)
    run = run_rules("routerapp:app", "--fastapi-rules-select=FR302")
    (finding,) = run.findings("FR302")
    assert finding["message"] == (
        "router module `routerapp` uses the database session and builds SQL itself in `create_item`: "
        '`db.execute(text("SELECT 1"))`, `select(text("1"))`, `db.add(object())` (+1 more)'
    ), finding


CREATES_APP = """
from fastapi import APIRouter, FastAPI
from pydantic import BaseModel


class Out(BaseModel):
    id: int


class Ready(BaseModel):
    ready: bool


router = APIRouter(prefix="/api/v1", tags=["x"])


@router.get("/webhooks")
async def list_webhooks() -> list[Out]:
    return []


@router.post("/webhooks", status_code=201)
async def create_webhook() -> Out:
    return Out(id=1)


@router.get("/orders")
async def list_orders() -> list[Out]:
    return []


@router.post("/orders")
async def create_order() -> Out:
    return Out(id=1)


@router.post("/orders/{order_id}/cancel", status_code=201)
async def cancel_order(order_id: int) -> Out:
    return Out(id=order_id)


@router.get("/admin/email")
async def email_ready() -> Ready:
    return Ready(ready=True)


@router.post("/admin/email")
async def send_test_email() -> Ready:
    return Ready(ready=True)


@router.post("/recipes/delete")
async def delete_many() -> Ready:
    return Ready(ready=True)


app = FastAPI()
app.include_router(router)
"""


def test_fr204_decides_create_or_action_from_the_route_table(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(creates=CREATES_APP)
    run = run_rules("creates:app", "--fastapi-rules-select=FR204")
    assert run.outcomes("FR204") == {
        "POST /api/v1/webhooks": "passed",  # creates in the collection GET lists; 201 is right
        "POST /api/v1/orders": "failed",  # the same shape, answering 200
        "POST /api/v1/orders/{order_id}/cancel": "failed",  # an action (no collection), 201
        "POST /api/v1/admin/email": "skipped",  # GET answers one object, not a list: cannot tell
        "POST /api/v1/recipes/delete": "skipped",  # no collection, no action verb: cannot tell
    }, run.output


PUT_APP = """
from fastapi import FastAPI
from pydantic import BaseModel


class Settings(BaseModel):
    '''The full representation, with defaults a client may leave out (what GET returns).'''

    enabled: bool = True
    name: str = "default"


class SettingsPatch(BaseModel):
    enabled: bool | None = None
    name: str | None = None


app = FastAPI()


@app.put("/api/v1/settings/{key}", tags=["settings"])
async def replace_settings(key: str, body: Settings) -> Settings:
    return body


@app.put("/api/v1/other/{key}", tags=["settings"])
async def replace_other(key: str, body: SettingsPatch) -> Settings:
    return Settings()


class Recipe(BaseModel):
    '''What GET answers with, every field optional; PUT and PATCH take it too (as on mealie).'''

    name: str | None = None
    description: str | None = None


@app.get("/api/v1/recipes/{slug}", tags=["recipes"])
async def get_recipe(slug: str) -> Recipe:
    return Recipe()


@app.put("/api/v1/recipes/{slug}", tags=["recipes"])
async def replace_recipe(slug: str, body: Recipe) -> Recipe:
    return body


@app.patch("/api/v1/recipes/{slug}", tags=["recipes"])
async def patch_recipe(slug: str, body: Recipe) -> Recipe:
    return body
"""


def test_fr206_a_put_body_with_concrete_defaults_is_a_full_representation(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(putapp=PUT_APP)
    run = run_rules("putapp:app", "--fastapi-rules-select=FR206")
    assert run.outcomes("FR206") == {
        "PUT /api/v1/settings/{key}": "passed",
        "PUT /api/v1/other/{key}": "warning",
        "PUT /api/v1/recipes/{slug}": "passed",  # the class GET answers with: a full PUT
        "PATCH /api/v1/recipes/{slug}": "passed",
    }, run.output
    (finding,) = run.findings("FR206")
    assert (
        "PUT body `SettingsPatch` has no required field and every field defaults to None"
        in finding["message"]
    )


EMAIL_APP = """
from fastapi import FastAPI
from pydantic import BaseModel, field_validator


class Loose(BaseModel):
    email: str
    name: str

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return value.lower()  # a validator, but it accepts anything


class Strict(BaseModel):
    email: str

    @field_validator("email")
    @classmethod
    def _check(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("not an e-mail address")
        return value


app = FastAPI()


@app.post("/api/v1/loose", tags=["x"])
async def loose(body: Loose) -> dict[str, str]:
    return {}


@app.post("/api/v1/strict", tags=["x"])
async def strict(body: Strict) -> dict[str, str]:
    return {}
"""


def test_fr605_judges_an_email_validator_by_what_it_accepts(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(emailapp=EMAIL_APP)
    run = run_rules("emailapp:app", "--fastapi-rules-select=FR605")
    assert run.outcomes("FR605") == {"POST /api/v1/loose": "warning", "POST /api/v1/strict": "passed"}, (
        run.output
    )
    (finding,) = run.findings("FR605")
    assert finding["message"] == (
        "request field `Loose.email` has a validator of its own, yet accepts 'not-an-address', which is "
        "not an e-mail address"
    )


def test_fr201_on_a_sync_session_says_the_fix_is_async_sqlalchemy(shapes: Path, run_rules: Any) -> None:
    run = run_rules("sync_engine:app", "--fastapi-rules-select=FR201")
    findings = run.findings("FR201")
    assert findings and all("works with a sync SQLAlchemy session (`db`)" in f["message"] for f in findings)
    assert all("`async def` alone would run the sync session's queries" in f["fix"] for f in findings)


def test_fr801_leaves_out_a_requirement_whose_marker_does_not_apply(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(plain="from fastapi import FastAPI\napp = FastAPI()\n")
    (pytester.path / "requirements.txt").write_text(
        "fastapi>=0.121.2\nrequests==2.31.0; sys_platform == 'win32'\nhttpx>=0.28\n"
    )
    run = run_rules("plain:app", "--fastapi-rules-select=FR801")
    assert not any("requests" in f["message"] for f in run.findings("FR801")), run.output
    (pytester.path / "requirements.txt").write_text(
        "fastapi>=0.121.2\nrequests==2.31.0; sys_platform != 'win32'\n"
    )
    run = run_rules("plain:app", "--fastapi-rules-select=FR801")
    assert any("requests" in f["message"] for f in run.findings("FR801")), run.output


def test_items_point_at_the_route_in_junit_xml(pytester: pytest.Pytester) -> None:
    """CI annotations and JUnit XML take an item's file and line from ``reportinfo``."""
    import xml.etree.ElementTree as ET

    pytester.makepyfile(
        syncapp=(
            "from fastapi import FastAPI\napp = FastAPI()\n\n\n"
            '@app.get("/api/v1/items", tags=["x"])\ndef items() -> list[int]:\n    return []\n'
        )
    )
    junit = pytester.path / "junit.xml"
    pytester.runpytest(
        "--fastapi-app=syncapp:app",
        "--fastapi-rules-select=FR201",
        f"--junitxml={junit}",
        "-o",
        "junit_family=xunit1",
        "-p",
        "no:cacheprovider",
    )
    (case,) = [c for c in ET.parse(junit).iter("testcase") if "FR201" in c.get("name", "")]
    # The def line (6), which pytest counts from 0.
    # The def line (6), which pytest counts from 0.
    assert case.get("file") == "syncapp.py" and case.get("line") == "5", case.attrib


OWN_AUTH_APP = """
from typing import Optional

from fastapi import Depends, FastAPI, Header, HTTPException, Request
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel

AUTH_HEADER = "authorization"
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/login")


class NoteIn(BaseModel):
    title: str


def _decode(request: Request) -> str:
    value = request.headers.get(AUTH_HEADER)  # a library's constant: no literal to read
    if not value:
        raise HTTPException(401, "no token", headers={"WWW-Authenticate": "Bearer"})
    return value


async def who_is_calling(request: Request) -> str:
    return _decode(request)


async def caller(authorization: Optional[str] = Header(None)) -> str:
    return authorization.split()[1]  # AttributeError without the header: a 500


async def require_user() -> None:
    return None  # named like a check, checks nothing


async def current(token: str = Depends(oauth2)) -> str:
    if token != "good":
        raise HTTPException(401, "bad token", headers={"WWW-Authenticate": "Bearer"})
    return token


app = FastAPI()


@app.post("/api/v1/notes", status_code=201, tags=["notes"])
async def create_note(note: NoteIn, who: str = Depends(who_is_calling)) -> NoteIn:
    return note


@app.post("/api/v1/tags", status_code=201, tags=["tags"])
async def create_tag(note: NoteIn, who: str = Depends(caller)) -> NoteIn:
    return note


@app.post("/api/v1/drafts", status_code=201, tags=["drafts"])
async def create_draft(note: NoteIn) -> NoteIn:
    return note


@app.post("/api/v1/labels", status_code=201, tags=["labels"], dependencies=[Depends(require_user)])
async def create_label(note: NoteIn) -> NoteIn:
    return note


@app.delete("/api/v1/notes/{note_id}", status_code=204, tags=["notes"])
async def delete_note(note_id: int, token: str = Depends(current)) -> None:
    return None
"""


def test_fr706_recognises_authentication_by_what_it_reads_and_by_the_answer(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(ownauth=OWN_AUTH_APP)
    run = run_rules("ownauth:app", "--fastapi-rules-select=FR706")
    outcomes = run.outcomes("FR706")
    # Refused the probes' request without credentials with 401: protected, whatever the names.
    assert outcomes["POST /api/v1/notes"] == "passed", run.output
    # Its dependency reads the Authorization header itself.
    assert outcomes["POST /api/v1/tags"] == "passed", run.output
    # Nothing reads credentials and the probes' request was accepted: still found, with that evidence.
    assert outcomes["POST /api/v1/drafts"] == "warning", run.output
    (finding,) = [
        f for r in run.results_for("FR706") if r["target"] == "POST /api/v1/drafts" for f in r["findings"]
    ]
    assert "endpoint `create_draft` changes data without a security dependency" in finding["message"]
    assert "POST /api/v1/drafts without credentials answered 201" in finding["message"]
    # Only a name says `require_user` checks anything, and the app let the anonymous write through.
    (named,) = [
        f for r in run.results_for("FR706") if r["target"] == "POST /api/v1/labels" for f in r["findings"]
    ]
    assert named["message"] == (
        "endpoint `create_label` changes data for anyone: its dependency `require_user` is named like "
        "an authentication check, but the probes' POST /api/v1/labels without credentials answered 201"
    )


def test_fr704_judges_a_dependency_that_reads_the_credentials_itself(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(ownauth=OWN_AUTH_APP)
    run = run_rules("ownauth:app", "--fastapi-rules-select=FR704")
    outcomes = run.outcomes("FR704")
    assert outcomes["POST /api/v1/tags"] == "failed", run.output
    messages = [
        f["message"]
        for r in run.results_for("FR704")
        if r["target"] == "POST /api/v1/tags"
        for f in r["findings"]
    ]
    assert any(
        "with no credentials answered 500" in m
        and "`caller` reads the `authorization` header and crashed" in m
        for m in messages
    ), messages
    # Structure alone cannot see `who_is_calling` read the header: not judged, not guessed.
    assert "POST /api/v1/notes" not in outcomes
    assert outcomes["DELETE /api/v1/notes/{note_id}"] == "passed", run.output


SETTINGS_CHAIN_APP = """
from functools import lru_cache

from fastapi import Depends, FastAPI
from pydantic import BaseModel
from pydantic_settings import BaseSettings


class DatabaseSettings(BaseSettings):
    url: str = "sqlite://"


class Config(BaseModel):
    database: DatabaseSettings


def _load() -> Config:
    return Config(database=DatabaseSettings())


@lru_cache
def get_config() -> Config:
    return _load()  # built once, two calls down


app = FastAPI()


@app.get("/api/v1/info", tags=["info"])
async def info(config: Config = Depends(get_config)) -> str:
    return config.database.url
"""

SETTINGS_PER_REQUEST_APP = """
from fastapi import Depends, FastAPI
from pydantic_settings import BaseSettings


class Settings(BaseSettings):
    name: str = "demo"


settings = Settings()  # cached... but the requests do not read it


def get_settings() -> Settings:
    return Settings()


app = FastAPI(title=settings.name)


@app.get("/api/v1/info", tags=["info"])
async def info(current: Settings = Depends(get_settings)) -> str:
    return current.name


@app.get("/api/v1/name", tags=["info"])
async def name(current: Settings = Depends(get_settings)) -> str:
    return current.name
"""


def test_fr805_follows_the_cached_accessor_call_chain(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(chain=SETTINGS_CHAIN_APP)
    run = run_rules("chain:app", "--fastapi-rules-select=FR805")
    assert run.outcomes("FR805") == {"app": "passed"}, run.output


def test_fr805_reports_an_uncached_accessor_the_requests_call(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(perrequest=SETTINGS_PER_REQUEST_APP)
    run = run_rules("perrequest:app", "--fastapi-rules-select=FR805")
    assert run.outcomes("FR805") == {"app": "warning"}, run.output
    (finding,) = run.findings("FR805")
    assert "`get_settings` builds `Settings()` each time it runs and is not cached" in finding["message"]
    assert "requests run it (GET /api/v1/info and 1 more)" in finding["message"]
    assert (finding["location"]["file"], finding["location"]["line"]) == ("perrequest.py", 12), finding


def test_fr805_reports_settings_built_by_depends_on_the_class(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    app = SETTINGS_PER_REQUEST_APP.replace("Depends(get_settings)", "Depends(Settings)")
    pytester.makepyfile(perclass=app)
    run = run_rules("perclass:app", "--fastapi-rules-select=FR805")
    (finding,) = run.findings("FR805")
    assert "`Depends(Settings)` builds `Settings()` for each request" in finding["message"], finding


LAYERED_SESSION_APP = """
from typing import AsyncIterator

from fastapi import Depends, FastAPI
from fastapi.security import OAuth2PasswordBearer
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine("sqlite+aiosqlite:///./layered.db")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/login")


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


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class ItemRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def titles(self) -> list[str]:
        return list((await self.session.scalars(select(Item.title))).all())


def get_user_repository(session: AsyncSession = Depends(get_db)) -> UserRepository:
    return UserRepository(session)


def get_item_repository(session: AsyncSession = Depends(get_db)) -> ItemRepository:
    return ItemRepository(session)


async def get_current_user(
    token: str = Depends(oauth2), users: UserRepository = Depends(get_user_repository)
) -> User:
    raise NotImplementedError  # replaced by the probe user


app = FastAPI()


@app.get("/api/v1/me", tags=["users"])
async def me(user: User = Depends(get_current_user)) -> dict:
    return {"id": user.id}


@app.get("/api/v1/items", tags=["items"])
async def items(repo: ItemRepository = Depends(get_item_repository)) -> list[str]:
    return await repo.titles()
"""


def test_fr306_tries_the_routes_until_one_reaches_the_session(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    pytester.makepyfile(layered=LAYERED_SESSION_APP)
    run = run_rules("layered:app", "--fastapi-rules-select=FR306")
    # GET /api/v1/me reaches the session only through the current user, which the probe user
    # replaces; GET /api/v1/items reaches it, and its commit and rollback are judged.
    assert run.outcomes("FR306") == {"app": "passed"}, run.output


def test_fr306_says_which_routes_it_tried(pytester: pytest.Pytester, run_rules: Any) -> None:
    app = LAYERED_SESSION_APP.replace(
        '@app.get("/api/v1/items"',
        '@app.get("/api/v1/items", include_in_schema=False, dependencies=[Depends(get_current_user)]',
    )
    app = app.replace("repo: ItemRepository = Depends(get_item_repository)", "")
    app = app.replace("return await repo.titles()", "return []")
    pytester.makepyfile(layered=app)
    run = run_rules("layered:app", "--fastapi-rules-select=FR306")
    assert run.outcomes("FR306") == {"app": "skipped"}, run.output
    (result,) = run.results_for("FR306")
    assert "no route's request let the plugin write through its session; tried:" in result["message"]
    assert "GET /api/v1/me (no SQLAlchemy session reached `get_user_repository`)" in result["message"]


GUARDED_APP = """
import os

from fastapi import Depends, FastAPI, Header, HTTPException
from sqlalchemy import select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Ticket(Base):
    __tablename__ = "tickets"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str]


async def get_db():
    async with sessions() as session:
        yield session


async def require_api_key(x_api_key: str = Header("")) -> None:
    if x_api_key != os.environ["SECRET_KEY"]:
        raise HTTPException(401, "bad key", headers={"WWW-Authenticate": "ApiKey"})


app = FastAPI()


@app.get("/api/v1/tickets/{ticket_id}", tags=["tickets"])
async def ticket(ticket_id: int, db=Depends(get_db)) -> dict[str, str]:
    row = await db.get(Ticket, ticket_id)
    return {"title": row.title, "ratio": str(1 / 0)}  # broken for every id


@app.get("/api/v1/tickets", tags=["tickets"], dependencies=[Depends(require_api_key)])
async def tickets(db=Depends(get_db)) -> list[str]:
    rows = (await db.scalars(select(Ticket))).all()
    return [row.title for row in rows]
"""


def test_fr211_does_not_blame_the_missing_row_for_a_500_every_id_gets(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    pytester.makepyfile(guarded=GUARDED_APP)
    run = run_rules("guarded:app", "--fastapi-rules-select=FR211")
    (result,) = run.results_for("FR211")
    assert result["outcome"] == "skipped", run.output
    assert result["message"].startswith(
        "FR211 missing-resource-is-404: the valid request to GET /api/v1/tickets/{ticket_id} (an id "
        "that exists) answered 500"
    ), result
    assert "says nothing about the missing-row path" in result["message"]


def test_fr510_measures_nothing_on_a_route_that_refused_every_probe(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    """A 401 runs no query of the route's work: no pass on it, a skip that says why."""
    pytester.makepyfile(guarded=GUARDED_APP)
    run = run_rules("guarded:app", "--fastapi-rules-select=FR510")
    (result,) = [r for r in run.results_for("FR510") if r["target"] == "GET /api/v1/tickets"]
    assert result["outcome"] == "skipped", run.output
    assert "the probes' valid requests to GET /api/v1/tickets answered 401, never 2xx" in result["message"]


SETTINGS_CHOSEN_AT_IMPORT_APP = """
import os

from fastapi import FastAPI
from pydantic_settings import BaseSettings


class Config(BaseSettings):
    name: str = "demo"


class LocalConfig(Config):
    debug: bool = True


class ProductionConfig(Config):
    debug: bool = False


def get_config() -> Config:
    choices = {"local": LocalConfig(), "prod": ProductionConfig()}
    return choices[os.getenv("ENV", "local")]


config: Config = get_config()  # called once, at import
app = FastAPI(title=config.name)


@app.get("/api/v1/info", tags=["info"])
async def info() -> str:
    return config.name
"""


def test_fr805_settings_chosen_once_at_import_are_cached(pytester: pytest.Pytester, run_rules: Any) -> None:
    """Seen on teamhide/fastapi-boilerplate: every class the module-level call builds is built once."""
    pytester.makepyfile(chosen=SETTINGS_CHOSEN_AT_IMPORT_APP)
    run = run_rules("chosen:app", "--fastapi-rules-select=FR805")
    assert run.outcomes("FR805") == {"app": "passed"}, run.output


def test_fr805_an_accessor_called_at_import_and_per_request_is_still_reported(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    app = SETTINGS_CHOSEN_AT_IMPORT_APP.replace(
        "async def info() -> str:\n    return config.name",
        "async def info(current: Config = Depends(get_config)) -> str:\n    return current.name",
    ).replace("from fastapi import FastAPI", "from fastapi import Depends, FastAPI")
    pytester.makepyfile(chosenagain=app)
    run = run_rules("chosenagain:app", "--fastapi-rules-select=FR805")
    (finding,) = run.findings("FR805")
    assert "`get_config` builds `LocalConfig()`, `ProductionConfig()` each time it runs" in finding["message"]


PYDANTIC_USER_APP = """
from typing import AsyncIterator

from fastapi import Depends, FastAPI, HTTPException
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.ext.hybrid import hybrid_property
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column, relationship

engine = create_async_engine("sqlite+aiosqlite:///./pydantic_user.db")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)
oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/login")


class Base(DeclarativeBase):
    pass


class Group(Base):
    __tablename__ = "groups"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    group_id: Mapped[int] = mapped_column(ForeignKey("groups.id"))
    group: Mapped[Group] = relationship()

    @hybrid_property
    def group_name(self) -> str:  # on the class, `User.group.name` raises: as on mealie
        return self.group.name


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    text: Mapped[str] = mapped_column(String(100))


class GroupOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    name: str


class PrivateUser(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    email: str
    group_name: str
    group: GroupOut  # a lazy relationship, read while the model is built


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


async def get_current_user(
    token: str = Depends(oauth2), db: AsyncSession = Depends(get_db)
) -> PrivateUser:
    raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})


app = FastAPI()


@app.get("/api/v1/notes", tags=["notes"])
async def list_notes(
    user: PrivateUser = Depends(get_current_user), db: AsyncSession = Depends(get_db)
) -> list[str]:
    return list(await db.scalars(select(Note.text).order_by(Note.id).limit(20)))
"""


def test_a_current_user_returning_a_pydantic_model_is_stood_in_for(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """Seen on mealie: `get_current_user` returns `PrivateUser`, a Pydantic model read from the
    `User` row; the probes build it from a seeded row (its lazy `group` included) and get past it."""
    pytester.makepyfile(pydanticuser=PYDANTIC_USER_APP)
    run = run_rules("pydanticuser:app", "--fastapi-rules-select=FR509,FR510")
    assert run.outcomes("FR510") == {"GET /api/v1/notes": "passed"}, run.output
    assert run.outcomes("FR509") == {"GET /api/v1/notes": "passed"}, run.output


def test_a_pydantic_user_no_orm_class_can_fill_says_why_the_probes_could_not_sign_in(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    app = PYDANTIC_USER_APP.replace("    group: GroupOut  #", "    tenant: str\n    group: GroupOut  #")
    pytester.makepyfile(pydanticuser=app)
    run = run_rules("pydanticuser:app", "--fastapi-rules-select=FR510")
    (result,) = run.results_for("FR510")
    assert result["outcome"] == "skipped", run.output
    assert (
        "the probes could not sign in: `get_current_user`: it returns `PrivateUser`, and no ORM "
        "class has an attribute for each of its required fields" in result["message"]
    ), result


def test_a_pydantic_user_the_seeded_row_cannot_build_is_dropped_with_the_reason(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    app = PYDANTIC_USER_APP.replace(
        "    group: GroupOut  #",
        "    @field_validator('email')\n    @classmethod\n    def company_only(cls, value: str) -> str:\n"
        "        raise ValueError('not a company address')\n\n    group: GroupOut  #",
    ).replace(
        "from pydantic import BaseModel, ConfigDict",
        "from pydantic import BaseModel, ConfigDict, field_validator",
    )
    pytester.makepyfile(pydanticuser=app)
    run = run_rules("pydanticuser:app", "--fastapi-rules-select=FR510")
    (result,) = run.results_for("FR510")
    assert result["outcome"] == "skipped", run.output
    assert (
        "it returns `PrivateUser`, which the plugin could not build from a seeded `User` row"
        in result["message"]
    )
    assert "internal error" not in run.output


SIGNUP_APP = """
from collections.abc import AsyncIterator

import bcrypt
from fastapi import Depends, FastAPI, HTTPException
from pydantic import BaseModel, EmailStr, Field
from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine("sqlite+aiosqlite:///./signup.db")
SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(255))
    hashed_password: Mapped[str] = mapped_column(String(100))


class UserRegister(BaseModel):
    email: EmailStr = Field(max_length=255)  # as SQLModel declares it: polyfactory had no value
    password: str = Field(min_length=8, max_length=128)


class Invite(BaseModel):
    email: str  # a plain str the app stores and answers with as an address
    password: str = Field(min_length=8, max_length=128)


class UserOut(BaseModel):
    id: int
    email: EmailStr


async def get_db() -> AsyncIterator[AsyncSession]:
    async with SessionLocal() as session:
        yield session


app = FastAPI()


async def _store(db: AsyncSession, email: str, password: str) -> UserOut:
    hashed = bcrypt.hashpw(password.encode(), bcrypt.gensalt(rounds=4)).decode()
    user = User(email=email, hashed_password=hashed)
    db.add(user)
    await db.commit()
    return UserOut(id=user.id, email=user.email)


@app.post("/api/v1/auth/register", status_code=201, tags=["auth"])
async def register(body: UserRegister, db: AsyncSession = Depends(get_db)) -> UserOut:
    return await _store(db, body.email, body.password)


@app.post("/api/v1/auth/invite", status_code=201, tags=["auth"])
async def invite(body: Invite, db: AsyncSession = Depends(get_db)) -> UserOut:
    return await _store(db, body.email, body.password)


class Join(BaseModel):  # teamhide/fastapi-boilerplate's CreateUserRequest
    email: EmailStr
    password1: str
    password2: str


@app.post("/api/v1/auth/join", status_code=201, tags=["auth"])
async def join(body: Join, db: AsyncSession = Depends(get_db)) -> UserOut:
    if body.password1 != body.password2:
        raise HTTPException(401, "passwords do not match")  # as the boilerplate's exception does
    user = User(email=body.email, hashed_password=body.password1)  # stored as typed
    db.add(user)
    await db.commit()
    return UserOut(id=user.id, email=user.email)
"""


def test_bodies_with_a_constrained_email_or_an_email_named_str_are_sent(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """Seen on full-stack-fastapi-template: `EmailStr = Field(max_length=255)` left the probes
    without a valid body (422 on signup, FR705 skipped), and a plain `email: str` got text that the
    app's `EmailStr` answer refused (500)."""
    pytester.makepyfile(signup=SIGNUP_APP)
    run = run_rules("signup:app", "--fastapi-rules-select=FR705,FR510")
    # password1/password2 get one value (the boilerplate answered 401 to two different ones, so
    # FR705 never saw its plain-text password)
    assert run.outcomes("FR705") == {
        "POST /api/v1/auth/register": "passed",
        "POST /api/v1/auth/invite": "passed",
        "POST /api/v1/auth/join": "failed",
    }, run.output
    assert set(run.outcomes("FR510").values()) == {"passed"}, run.output


DOCS_APP = """
from fastapi import FastAPI
from fastapi.responses import HTMLResponse

app = FastAPI(openapi_url="")  # no schema, so no docs pages at the root, as on dispatch
api = FastAPI(docs_url="/docs", redoc_url=None, openapi_url="/openapi.json")  # on in every environment


@api.get("/items", tags=["items"])
async def list_items() -> list[int]:
    return []


app.mount("/api/v1", api)


@app.get("/{path:path}", include_in_schema=False)
async def single_page_app(path: str) -> HTMLResponse:
    if path == "redoc":
        raise RuntimeError("index.html does not exist")  # the front end is not built here
    return HTMLResponse("<html><body><div id=root></div></body></html>")  # the front end's fallback
"""


def test_fr108_judges_the_documentation_the_app_declares_not_what_answers_at_its_paths(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """Seen on Netflix/dispatch: the docs live in a sub-app at /api/v1, and the front end's fallback
    page answers /docs at the root. The sub-app's docs are the finding; the fallback page is not."""
    pytester.makepyfile(docsapp=DOCS_APP)
    run = run_rules("docsapp:app", "--fastapi-rules-select=FR108")
    messages = sorted(f["message"] for f in run.findings("FR108"))
    assert messages == [
        "with ENVIRONMENT=production, GET /api/v1/docs answers 200, not 404",
        "with ENVIRONMENT=production, GET /api/v1/openapi.json answers 200, not 404",
    ], run.output
