"""The wiring rules: FR101, FR104, FR105 (app half) and FR109 on the blog, its variants and small
apps; FR106 and FR107 as the probe run finds them.

Each variant run executes every rule, so it also proves the variant breaks exactly one rule. The
small inline apps hold the shapes that a careless heuristic would misjudge: shared packages beside
the app, mounted sub-apps, library routers, nested settings, sessions behind services; their runs
judge FR301 and FR805 too (MY_CODES), so those tests span three families and stay here, while FR301's
and FR805's own tests are in test_rules_layers.py and test_rules_stack.py. The probe rules' variants
(FR102, FR103, FR106-FR108) share one parametrized test across families in test_probes_variants.py.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi.routing
import pytest

from tests.conftest import RulesRun, RunRules, assert_located, line_of, only_failure

MY_CODES = ("FR101", "FR104", "FR105", "FR109", "FR301", "FR805")
SELECT_MINE = "--fastapi-rules-select=" + ",".join(MY_CODES)


def static_findings(run: RulesRun, code: str) -> list[dict[str, Any]]:
    """FR104/FR105 findings of the app half: the ones about which handlers are registered."""
    return [f for f in run.findings(code) if "no exception handler for" in f["message"]]


# -- the conforming blog ----------------------------------------------------------------------------


def test_conforming_blog_passes_every_wiring_rule(blog: Path, run_rules: RunRules) -> None:
    run = run_rules("src.main:app", SELECT_MINE)
    for code in ("FR101", "FR104", "FR105", "FR805"):
        assert run.outcomes(code) == {"app": "passed"}, run.results_for(code)
    for code in ("FR109", "FR301"):
        outcomes = run.outcomes(code)
        assert outcomes, code
        assert set(outcomes.values()) == {"passed"}, run.results_for(code)
        assert "GET /api/v1/posts/{post_id}" in outcomes
        # Health routes are infrastructure: no versioning or layering items for them.
        assert not any(target.startswith("GET /health") for target in outcomes), outcomes
    assert run.failing() == []


# -- the variants: each breaks exactly one rule ------------------------------------------------------


def test_fr101_on_event_beside_lifespan(blog: Path, run_rules: RunRules) -> None:
    run = run_rules("variants.fr101_on_event:app")
    failure = only_failure(run)
    assert (failure["code"], failure["target"], failure["outcome"]) == ("FR101", "app", "failed")
    [finding] = run.findings("FR101")
    assert "`warm_up_cache` is registered as an on_event('startup') handler" in finding["message"]
    assert "passes `lifespan=`, so Starlette never calls it" in finding["message"]
    variant = blog / "variants" / "fr101_on_event.py"
    assert_located(finding, "variants/fr101_on_event.py", line_of(variant, "async def warm_up_cache"))
    assert "FR101 lifespan-not-on-event" in run.output


def test_fr104_domain_errors_handled_by_middleware(blog: Path, run_rules: RunRules) -> None:
    run = run_rules("variants.fr104_domain_errors_in_middleware:app")
    failure = only_failure(run)
    assert (failure["code"], failure["target"], failure["outcome"]) == ("FR104", "app", "failed")
    [finding] = run.findings("FR104")
    message = finding["message"]
    assert "no exception handler for an app-defined exception class" in message
    assert "handlers exist only for HTTPException, RequestValidationError, Exception" in message
    assert "DomainError" not in message
    # Points at the handlers the app does register: where the missing one belongs.
    main = blog / "src" / "main.py"
    assert_located(finding, "src/main.py", line_of(main, "async def http_exception_handler"))
    assert "FR104 domain-error-handler" in run.output


def test_fr105_no_generic_handler(blog: Path, run_rules: RunRules) -> None:
    run = run_rules("variants.fr105_no_generic_handler:app")
    failure = only_failure(run)
    assert (failure["code"], failure["target"], failure["outcome"]) == ("FR105", "app", "failed")
    # The app half's finding (a runtime half may add its own observation of the same gap).
    [finding] = static_findings(run, "FR105")
    assert "no exception handler for `Exception` (or 500)" in finding["message"]
    assert "DomainError" in finding["message"]
    assert_located(finding, "src/main.py")
    assert "FR105 generic-error-handler" in run.output


CATCH_ALL_MIDDLEWARE = """
from fastapi import Request
from fastapi.responses import JSONResponse

from src.main import create_application

app = create_application()
del app.exception_handlers[Exception]


@app.middleware("http")
async def catch_everything(request: Request, call_next):
    try:
        response = await call_next(request)
    except ValueError as exc:
        response = JSONResponse(status_code=422, content={"detail": "bad value"})
    except Exception as exc:
        response = JSONResponse(status_code=500, content={BODY})
    return response
"""

CATCH_ALL_ASGI_MIDDLEWARE = """
from fastapi.responses import JSONResponse

from src.main import create_application


class CatchAll:
    def __init__(self, app):
        self.app = app

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        overrides = scope["app"].dependency_overrides.values()
        if STOP_FIRST and any(getattr(f, "__name__", "") == "explode" for f in overrides):
            # answers before any route runs, as Netflix/dispatch's db middleware does for an
            # unknown schema: exactly for the probes' synthetic request here
            return await JSONResponse(status_code=500, content={})(scope, receive, send)
        try:
            await self.app(scope, receive, send)
        except Exception:
            response = JSONResponse(status_code=500, content={"error": "internal_server_error"})
            await response(scope, receive, send)


app = create_application()
del app.exception_handlers[Exception]
app.add_middleware(CatchAll)
"""


def test_fr105_a_middleware_that_answers_every_exception_is_the_generic_handler(
    blog: Path, run_rules: RunRules
) -> None:
    """Netflix/dispatch catches every exception in a middleware and answers a JSON 500. A
    `dispatch` that catches `Exception` around `call_next` and answers is the generic handler in
    all but name: the runtime half judges its answer (clean passes, leaking the exception's text
    fails). A pure ASGI middleware is not read; when the synthetic exception answered a clean
    JSON 500 the item is skipped with that reason, and when a middleware answered before the
    exception was even raised, that proves nothing and the static finding stands."""
    (blog / "catchall.py").write_text(
        CATCH_ALL_MIDDLEWARE.replace("{BODY}", '{"error": "internal_server_error"}')
    )
    clean = run_rules("catchall:app", "--fastapi-rules-select=FR105")
    assert clean.outcomes("FR105") == {"app": "passed"}, clean.output

    (blog / "leaky.py").write_text(CATCH_ALL_MIDDLEWARE.replace("{BODY}", '{"error": str(exc)}'))
    leaky = run_rules("leaky:app", "--fastapi-rules-select=FR105")
    assert leaky.outcomes("FR105") == {"app": "failed"}, leaky.output
    assert static_findings(leaky, "FR105") == []
    [finding] = leaky.findings("FR105")
    assert "the 500 answer to a synthetic exception in GET " in finding["message"]
    assert "carries the exception's text" in finding["message"]

    (blog / "asgi.py").write_text(CATCH_ALL_ASGI_MIDDLEWARE.replace("STOP_FIRST", "False"))
    asgi = run_rules("asgi:app", "--fastapi-rules-select=FR105")
    [result] = asgi.results_for("FR105")
    assert result["outcome"] == "skipped", asgi.output
    assert (
        "no exception handler for `Exception` is registered, but a synthetic exception in GET "
        in (result["message"])
    )
    assert (
        "answered a JSON 500 without internals: the app handles unexpected errors another way"
        in (result["message"])
    )

    (blog / "first.py").write_text(CATCH_ALL_ASGI_MIDDLEWARE.replace("STOP_FIRST", "True"))
    first = run_rules("first:app", "--fastapi-rules-select=FR105")
    assert first.outcomes("FR105") == {"app": "failed"}, first.output
    [finding] = static_findings(first, "FR105")
    assert "no exception handler for `Exception` (or 500)" in finding["message"]


def test_fr109_unversioned_untagged_alias(blog: Path, run_rules: RunRules) -> None:
    run = run_rules("variants.fr109_unversioned_alias:app")
    failure = only_failure(run)
    # A warning-severity rule: reported, not failing the run.
    assert (failure["code"], failure["target"], failure["outcome"]) == ("FR109", "GET /posts", "warning")
    findings = run.findings("FR109")
    assert [f["target"] for f in findings] == ["GET /posts", "GET /posts"]
    messages = [f["message"] for f in findings]
    assert "path `/posts` is not under a versioned prefix" in messages[0]
    assert "endpoint `list_posts` has no tags" in messages[1]
    router = blog / "src" / "posts" / "router.py"
    for finding in findings:
        assert_located(finding, "src/posts/router.py", line_of(router, "async def list_posts"))
    assert "FR109 versioned-prefix-and-tags: GET /posts" in run.output


# -- small apps: what a careless heuristic would misjudge ---------------------------------------------

BARE_APP = """
import os

from fastapi import FastAPI

DEBUG = os.environ.get("DEBUG", "") == "1"

app = FastAPI()


@app.on_event("shutdown")
async def close_clients() -> None:
    pass


@app.get("/items")
async def list_items() -> list[int]:
    return []


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


@app.get("/internal/debug", include_in_schema=False)
async def debug_dump() -> dict[str, str]:
    return {}
"""


def test_bare_app_each_missing_piece_is_one_finding(pytester: pytest.Pytester, run_rules: RunRules) -> None:
    """No handlers, no settings, no lifespan, no prefix: one finding per missing thing."""
    path = pytester.makepyfile(bare_app=BARE_APP)
    run = run_rules("bare_app:app", SELECT_MINE)

    [on_event] = run.findings("FR101")
    assert "`close_clients` is registered as an on_event('shutdown') handler" in on_event["message"]
    # No lifespan= here: the handler does run, so the message must not claim otherwise.
    assert "never calls" not in on_event["message"]

    app_line = line_of(path, "app = FastAPI()")
    for code, essence in (
        ("FR104", "no exception handler for an app-defined exception class"),
        ("FR105", "no exception handler for `Exception` (or 500)"),
    ):
        assert run.outcomes(code) == {"app": "failed"}
        [finding] = static_findings(run, code)
        assert essence in finding["message"]
        defaults = "only FastAPI's default handlers exist (HTTPException, RequestValidationError"
        assert defaults in finding["message"]
        assert_located(finding, "bare_app.py", app_line)

    # Only the API route gets FR109/FR301 items: /health is infrastructure, /internal is hidden.
    assert run.outcomes("FR109") == {"GET /items": "warning"}
    assert [f["message"].split(" (")[0] for f in run.findings("FR109")] == [
        "path `/items` is not under a versioned prefix",
        "endpoint `list_items` has no tags",
    ]
    assert run.outcomes("FR301") == {"GET /items": "passed"}

    [settings] = run.findings("FR805")
    assert "no `pydantic_settings.BaseSettings` subclass in the app's code" in settings["message"]
    assert_located(settings, "bare_app.py", line_of(path, "os.environ.get"))


SHARED_ERRORS = """
class DomainError(Exception):
    status_code = 400
"""

SHARED_CONFIG = """
from functools import lru_cache

from pydantic import Field
from pydantic_settings import BaseSettings


class DbSettings(BaseSettings):
    url: str = "sqlite+aiosqlite:///:memory:"


class Settings(BaseSettings):
    name: str = "svc"
    db: DbSettings = Field(default_factory=DbSettings)


@lru_cache
def load():
    return Settings()
"""

SHARED_DB = """
from collections.abc import AsyncIterator, Iterator
from typing import Annotated

from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session


class SQLModelLikeSession(Session):
    \"\"\"Like sqlmodel.Session: a subclass of SQLAlchemy's.\"\"\"


async def get_db() -> AsyncIterator[AsyncSession]:
    yield AsyncSession()


def get_sync_db() -> Iterator[SQLModelLikeSession]:
    yield SQLModelLikeSession()


SessionDep = Annotated[SQLModelLikeSession, Depends(get_sync_db)]
"""

AUTHKIT = """
from fastapi import APIRouter


def get_auth_router() -> APIRouter:
    \"\"\"Like fastapi-users: a library hands out a ready-made router.\"\"\"
    router = APIRouter()

    @router.post("/login")
    async def login() -> dict[str, str]:
        return {"access_token": "t"}

    return router
"""

SVC_MAIN = """
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel
from sqlalchemy.ext.asyncio import AsyncSession

from authkit import get_auth_router
from shared.config import load
from shared.db import SessionDep, get_db
from shared.errors import DomainError


class Session(BaseModel):
    \"\"\"A login session of the app's own: not a database session.\"\"\"

    token: str


class Repository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session


class Service:
    def __init__(self, repository: Repository) -> None:
        self.repository = repository


async def get_repository(session: Annotated[AsyncSession, Depends(get_db)]) -> Repository:
    return Repository(session)


async def get_service(repository: Annotated[Repository, Depends(get_repository)]) -> Service:
    return Service(repository)


async def get_login_session() -> Session:
    return Session(token="t")


@asynccontextmanager
async def lifespan(app: FastAPI):
    app.state.title = load().name
    yield


users = APIRouter()


@users.get("")
async def list_users(service: Annotated[Service, Depends(get_service)]) -> list[int]:
    return []


@users.post("/logout", dependencies=[Depends(get_db)])
async def logout(session: Annotated[Session, Depends(get_login_session)]) -> dict[str, str]:
    return {}


@users.on_event("startup")
async def warm_users() -> None:
    pass


bad = APIRouter()


@bad.get("/classic")
async def classic(db: AsyncSession = Depends(get_db)) -> list[int]:
    return []


@bad.get("/template")
async def template_style(session: SessionDep) -> list[int]:
    return []


@bad.get("/unannotated")
async def unannotated(db=Depends(get_db)) -> list[int]:
    return []


reports = FastAPI()


@reports.on_event("startup")
async def load_report_templates() -> None:
    pass


@reports.get("/reports", tags=["Reports"])
async def list_reports() -> list[int]:
    return []


app = FastAPI(lifespan=lifespan)


async def domain_error_handler(request: Request, exc: DomainError) -> JSONResponse:
    return JSONResponse({"error": "domain"}, status_code=exc.status_code)


async def server_error_handler(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "internal"}, status_code=500)


app.add_exception_handler(DomainError, domain_error_handler)
app.add_exception_handler(500, server_error_handler)
app.include_router(users, prefix="/api/v1/users", tags=["Users"])
app.include_router(bad, prefix="/v2/bad", tags=["Bad"])
app.include_router(get_auth_router(), prefix="/api/v1/auth", tags=["Auth"])
app.mount("/api/v1/internal", reports)
"""


def test_shared_packages_sub_apps_and_library_routers(pytester: pytest.Pytester, run_rules: RunRules) -> None:
    """Code beside the app's package is still its own; nested sessions and sessions-by-name pass."""
    pytester.makepyfile(
        **{
            "shared/__init__": "",
            "shared/errors": SHARED_ERRORS,
            "shared/config": SHARED_CONFIG,
            "shared/db": SHARED_DB,
            "authkit": AUTHKIT,
            "svc/__init__": "",
            "svc/main": SVC_MAIN,
        }
    )
    run = run_rules("svc.main:app", SELECT_MINE)

    # FR104: DomainError lives in `shared`, a sibling package no endpoint comes from.
    assert run.outcomes("FR104") == {"app": "passed"}
    # FR105: the main app's 500 handler counts; the mounted app answers its own errors without one.
    [generic] = static_findings(run, "FR105")
    assert generic["message"] == (
        "the app mounted at `/api/v1/internal` has no exception handler for `Exception` (or 500): "
        "only FastAPI's default handlers exist (HTTPException, RequestValidationError, "
        "WebSocketRequestValidationError)"
    )
    main = pytester.path / "svc" / "main.py"
    assert_located(generic, "svc/main.py", line_of(main, "reports = FastAPI()"))
    # FR805: Settings is cached by an unannotated lru_cache function; DbSettings lives inside it.
    assert run.outcomes("FR805") == {"app": "passed"}

    # FR109: routes of a library router and of a mounted sub-app under /api/v1 pass; /v2 without
    # /api is not the rulebook's prefix (see test_version_without_api_is_judged_unless_accepted).
    assert run.outcomes("FR109") == {
        "GET /api/v1/users": "passed",
        "POST /api/v1/users/logout": "passed",
        "GET /v2/bad/classic": "warning",
        "GET /v2/bad/template": "warning",
        "GET /v2/bad/unannotated": "warning",
        "POST /api/v1/auth/login": "passed",
        "GET /api/v1/internal/reports": "passed",
    }

    # FR301: a session behind a service, a parameterless get_db and an own `Session` model pass;
    # the three ways of handing an endpoint the session directly fail, naming the parameter.
    outcomes = run.outcomes("FR301")
    for target in (
        "GET /api/v1/users",
        "POST /api/v1/users/logout",
        "POST /api/v1/auth/login",
        "GET /api/v1/internal/reports",
    ):
        assert outcomes[target] == "passed", run.results_for("FR301")
    messages = {f["target"]: f["message"] for f in run.findings("FR301")}
    assert messages == {
        "GET /v2/bad/classic": "endpoint `classic` receives a database session directly: "
        "parameter `db` (AsyncSession from `get_db`)",
        "GET /v2/bad/template": "endpoint `template_style` receives a database session directly: "
        "parameter `session` (SQLModelLikeSession from `get_sync_db`)",
        "GET /v2/bad/unannotated": "endpoint `unannotated` receives a database session directly: "
        "parameter `db` (AsyncSession from `get_db`)",
    }

    # FR101: the router's on_event handler is reported; FastAPI versions that merge router
    # lifespans still run it, older ones drop it because the app passes lifespan=.
    on_event, mounted = run.findings("FR101")
    assert "`warm_users` is registered as an on_event('startup') handler" in on_event["message"]
    merges = hasattr(fastapi.routing, "_merge_lifespan_context")
    assert ("never calls" in on_event["message"]) is not merges
    # A mounted app never receives lifespan events at all.
    assert mounted["message"] == (
        "`load_report_templates` is registered as an on_event('startup') handler of the app "
        "mounted at `/api/v1/internal`; mounted apps get no lifespan events, so it never runs"
    )
    assert_located(mounted, "svc/main.py", line_of(main, "async def load_report_templates"))


MOUNTED_API_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse


class DomainError(Exception):
    pass


async def domain_error(request: Request, exc: DomainError) -> JSONResponse:
    return JSONResponse({"error": "domain"}, status_code=400)


async def server_error(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": "internal"}, status_code=500)


api = FastAPI(exception_handlers={DomainError: domain_error, Exception: server_error})


@api.get("/items", tags=["Items"])
async def list_items() -> list[int]:
    return []


app = FastAPI(exception_handlers={Exception: server_error})


@app.get("/health")
async def health() -> dict[str, str]:
    return {"status": "ok"}


app.mount("/api/v1", api)
"""


def test_handlers_of_a_mounted_api_app_count(pytester: pytest.Pytester, run_rules: RunRules) -> None:
    """The shell app mounts the versioned API app, which registers the domain handler itself."""
    pytester.makepyfile(mounted_api=MOUNTED_API_APP)
    run = run_rules("mounted_api:app", "--fastapi-rules-select=FR104,FR105")
    assert run.outcomes("FR104") == {"app": "passed"}
    assert static_findings(run, "FR105") == []


LIBRARY_ERRORS_APP = """
import asyncio
from functools import lru_cache

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from pydantic_settings import BaseSettings
from sqlalchemy.exc import IntegrityError


class Settings(BaseSettings):
    name: str = "lib"

    @classmethod
    @lru_cache
    def get(cls) -> "Settings":
        return cls()


class FeatureFlags(BaseSettings):
    beta: bool = False


class StorageError(Exception):
    \"\"\"Defined by the app, but no handler is registered for it.\"\"\"


async def handle(request: Request, exc: Exception) -> JSONResponse:
    return JSONResponse({"error": type(exc).__name__}, status_code=400)


app = FastAPI(root_path="/api/v1")
app.state.flags = FeatureFlags()
app.add_exception_handler(IntegrityError, handle)
app.add_exception_handler(ValidationError, handle)
app.add_exception_handler(Exception, handle)


@app.get("/items", tags=["Items"])
async def list_items() -> list[int]:
    return []


# An endpoint the app did not write (here: a stdlib coroutine function).
app.add_api_route("/sleep", asyncio.sleep, tags=["Items"])
"""


def test_library_exception_handlers_are_not_domain_handlers(
    pytester: pytest.Pytester, run_rules: RunRules
) -> None:
    """Handlers for library errors do not count; root_path and singleton settings do."""
    pytester.makepyfile(lib_errors_app=LIBRARY_ERRORS_APP)
    run = run_rules("lib_errors_app:app", SELECT_MINE)
    [finding] = run.findings("FR104")
    assert finding["message"] == (
        "no exception handler for an app-defined exception class: handlers exist only for "
        "IntegrityError, ValidationError, Exception (besides FastAPI's defaults)"
    )
    assert run.outcomes("FR105") == {"app": "passed"}
    # Served under the proxy prefix root_path="/api/v1".
    assert run.outcomes("FR109") == {"GET /items": "passed", "GET /sleep": "passed"}
    # FR301 judges the app's own endpoints; a library's ready-made endpoint is skipped, saying so.
    assert run.outcomes("FR301") == {"GET /items": "passed", "GET /sleep": "skipped"}
    [skipped] = [r for r in run.results_for("FR301") if r["target"] == "GET /sleep"]
    assert "endpoint `sleep` comes from `asyncio.tasks`, not the app's code" in skipped["message"]
    # A classmethod lru_cache singleton, and an instance kept on app.state, are both cached.
    assert run.outcomes("FR805") == {"app": "passed"}
    assert [r["code"] for r in run.failing()] == ["FR104"]


LIBRARY_BASE_APP = """
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError


class StorageError(SQLAlchemyError):
    \"\"\"The app's own errors derive from a base class a shared library ships.\"\"\"


async def handle(request: Request, exc: SQLAlchemyError) -> JSONResponse:
    return JSONResponse({"error": "storage"}, status_code=503)


app = FastAPI()
app.add_exception_handler(SQLAlchemyError, handle)
"""


def test_handler_for_a_library_base_of_own_errors_counts(
    pytester: pytest.Pytester, run_rules: RunRules
) -> None:
    """A company-wide DomainError shipped as a wheel: the app's errors subclass it."""
    pytester.makepyfile(lib_base_app=LIBRARY_BASE_APP)
    run = run_rules("lib_base_app:app", "--fastapi-rules-select=FR104")
    assert run.outcomes("FR104") == {"app": "passed"}


BARE_VERSION_APP = """
from fastapi import APIRouter, FastAPI

router = APIRouter(tags=["Items"])


@router.get("/items")
async def list_items() -> list[int]:
    return [1]


app = FastAPI()
app.include_router(router, prefix="/api/v2")
app.include_router(router, prefix="/v1")
"""


def test_version_without_api_is_judged_unless_accepted(
    pytester: pytest.Pytester, run_rules: RunRules
) -> None:
    """The rulebook's prefix is `/api/v1` (later versions alike); `/v1` alone is a team's choice:
    judged by default, the finding naming the setting, and accepted once the setting says so."""
    pytester.makepyfile(bareversion=BARE_VERSION_APP)
    run = run_rules("bareversion:app", "--fastapi-rules-select=FR109")
    assert run.outcomes("FR109") == {"GET /api/v2/items": "passed", "GET /v1/items": "warning"}
    [finding] = run.findings("FR109")
    assert finding["message"] == (
        "path `/v1/items` is not under a versioned prefix (expected to match "
        "`^/api/v[0-9]+(\\.[0-9]+)?(/|$)`); a version without `/api` is not the rulebook's "
        "`/api/v1`: to accept it on purpose, set the ini key fastapi_rules_version_prefix = "
        "^(/api)?/v[0-9]+(\\.[0-9]+)?(/|$)"
    )
    accepted = run_rules(
        "bareversion:app",
        "--fastapi-rules-select=FR109",
        "-o",
        "fastapi_rules_version_prefix=^(/api)?/v[0-9]+(\\.[0-9]+)?(/|$)",
    )
    assert accepted.outcomes("FR109") == {"GET /api/v2/items": "passed", "GET /v1/items": "passed"}


# -- FR106, FR107: what the probe run finds --------------------------------------------------------

#: One error envelope for 404 and 422, its machine-readable code under `code`, not the rulebook's `error`.
CODE_ENVELOPE_APP = """
from fastapi import FastAPI, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from starlette.exceptions import HTTPException as StarletteHTTPException


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str]


app = FastAPI()


@app.exception_handler(StarletteHTTPException)
async def http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"code": "not_found", "message": str(exc.detail)}, status_code=exc.status_code)


@app.exception_handler(RequestValidationError)
async def validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    return JSONResponse({"code": "validation_error", "message": "bad input"}, status_code=422)


@app.get("/api/v1/things/{thing_id}", tags=["things"])
async def get_thing(thing_id: int) -> dict[str, int]:
    raise HTTPException(status_code=404, detail="not found")
"""


def test_error_code_under_another_key_than_the_rulebooks(pytester: pytest.Pytester, run_rules: Any) -> None:
    """The rulebook's envelope carries its code in `error`: one shared envelope with `code` instead
    is reported with the setting that accepts it, and passes once the setting names `code`."""
    pytester.makepyfile(codeenvelope=CODE_ENVELOPE_APP)
    run = run_rules("codeenvelope:app", "--fastapi-rules-select=FR106")
    (finding,) = run.findings("FR106")
    assert finding["message"] == (
        "error responses share one envelope, with the machine-readable code in `code`, not in "
        "`error` (404: {code, message}; 422: {code, message}); to accept it on purpose, set the ini "
        "key fastapi_rules_error_code_key = code"
    ), run.output
    named = run_rules(
        "codeenvelope:app", "--fastapi-rules-select=FR106", "-o", "fastapi_rules_error_code_key=code"
    )
    assert named.outcomes("FR106") == {"app": "passed"}, named.output


def test_readiness_alias_is_probed_once_named(blog: Path, run_rules: Any) -> None:
    """The rulebook's readiness path is `/health/ready`: another one fails FR107 with the setting
    named in the finding, and passes (its database check included) once the setting names it."""
    run = run_rules("variants.fr107_readiness_alias:app", "--fastapi-rules-select=FR107")
    (finding,) = run.findings("FR107")
    assert finding["message"] == (
        "the app has no readiness route (`GET /health/ready`); it has `GET /health/readiness`, not "
        "the rulebook's path: to probe that one on purpose, set the ini key "
        "fastapi_rules_readiness_path = /health/readiness"
    )
    named = run_rules(
        "variants.fr107_readiness_alias:app",
        "--fastapi-rules-select=FR107,FR109",
        "-o",
        "fastapi_rules_readiness_path=/health/readiness",
    )
    assert named.outcomes("FR107") == {"app": "passed"}, named.output
    assert "GET /health/readiness" not in named.outcomes("FR109")
