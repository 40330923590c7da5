"""The layer rules (FR3xx): FR301, an endpoint that takes the session, on its variant and through
the wrappers a session type hides in; FR304 and FR305, domains and their modules, on mutated copies
of the blog (a module on disk the app never imports, a domain without its modules, a renamed
repository, which FR302 still reads as the data-access layer); FR306 on an app whose dependency
yields a session factory, not a session.

FR302, FR303 and FR307's variants share one parametrized test with the other source rules
(test_rules_source.py), FR306's with the other probe rules (test_probes_variants.py); FR301 also
runs in test_rules_wiring.py's small apps.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator
from pathlib import Path
from typing import Annotated, Any, Optional

import pytest
from fastapi import Depends
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import Session, sessionmaker

from pytest_fastapi_rules.options import RulesOptions
from pytest_fastapi_rules.rules.layers import (
    _session_from_dependency,
    _session_in_annotation,
    domain_of_package,
)
from tests.conftest import RunRules, assert_located, line_of, only, only_failure
from tests.source_projects import ALL_BUT_CHILDREN, SELECT_OWN, where, write

# -- FR301: the endpoint takes the session ---------------------------------------------------------


def test_fr301_endpoint_takes_the_session(blog: Path, run_rules: RunRules) -> None:
    run = run_rules("variants.fr301_session_in_endpoint:app")
    failure = only_failure(run)
    target = "GET /api/v1/posts/{post_id}/author"
    assert (failure["code"], failure["target"], failure["outcome"]) == ("FR301", target, "failed")
    [finding] = run.findings("FR301")
    assert (
        "endpoint `get_post_author` receives a database session directly: "
        "parameter `db` (AsyncSession from `get_db`)"
    ) in finding["message"]
    variant = blog / "variants" / "fr301_session_in_endpoint.py"
    assert_located(
        finding, "variants/fr301_session_in_endpoint.py", line_of(variant, "async def get_post_author")
    )
    assert "FR301 router-uses-service" in run.output


# -- FR301's type reading, without a sandbox -------------------------------------------------------


async def _get_db() -> AsyncGenerator[AsyncSession, None]:
    yield AsyncSession()


def _get_sync_db() -> Generator[Session, None, None]:
    yield Session()


async def _get_sessions() -> list[AsyncSession]:
    return []


def test_session_types_are_read_through_wrappers() -> None:
    assert _session_in_annotation(Annotated[AsyncSession, Depends(_get_db)]) is AsyncSession
    assert _session_in_annotation(Optional[AsyncSession]) is AsyncSession  # noqa: UP045
    assert _session_in_annotation(Session | None) is Session
    assert _session_in_annotation("Annotated[AsyncSession, Depends(get_db)]") == "AsyncSession"
    # A bare, unresolved `Session` may be anything (a login session, requests.Session).
    assert _session_in_annotation("Session") is None
    assert _session_in_annotation(list[AsyncSession]) is None
    assert _session_from_dependency(_get_db) is AsyncSession
    assert _session_from_dependency(_get_sync_db) is Session
    assert _session_from_dependency(_get_sessions) is None
    assert _session_from_dependency(async_sessionmaker()) == "AsyncSession"
    assert _session_from_dependency(sessionmaker()) == "Session"


# -- FR304, FR305: domains and their modules, on mutated copies of the blog ------------------------

CROSS_DOMAIN_MODULE = """
    \"\"\"Author cards for the posts feed (not imported by the app yet: found by the disk walk).\"\"\"

    from src.users.repository import UserRepository


    class AuthorCards:
        def __init__(self, users: UserRepository) -> None:
            self.users = users

        async def card(self, user_id: int) -> dict[str, str]:
            user = await self.users.get_by_id(user_id)
            return {"username": user.username if user else "unknown"}
"""


def test_cross_domain_repository_import_fails_fr304(blog: Path, run_rules: Any) -> None:
    write(blog, {"src/posts/feed.py": CROSS_DOMAIN_MODULE})
    # The module is not imported by the app: only the source and project rules can see it, so the
    # run selects them (the conforming app passes every other rule, as the other suites show).
    run = run_rules("src.main:app", SELECT_OWN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR304", "app")], (failing, run.output)
    finding = only(run.findings("FR304"))
    assert finding["message"] == (
        "domain `src.posts` imports the repository of domain `src.users` in `src.posts.feed`: "
        "`from src.users.repository import UserRepository`"
    )
    assert where(finding) == ("src/posts/feed.py", 3, 1)
    assert "FR304" in run.output


TAGS_DOMAIN = {
    "src/tags/__init__.py": "",
    "src/tags/logic.py": """
        class TagService:
            async def cloud(self) -> list[str]:
                return ["fastapi", "python"]
    """,
    "src/tags/router.py": """
        from fastapi import APIRouter
        from pydantic import BaseModel

        from src.tags.logic import TagService

        router = APIRouter()


        class TagCloud(BaseModel):
            tags: list[str]


        @router.get("/cloud")
        async def get_tag_cloud() -> TagCloud:
            return TagCloud(tags=await TagService().cloud())
    """,
    "tagsapp.py": """
        from src.main import create_application
        from src.tags.router import router

        app = create_application()
        app.include_router(router, prefix="/api/v1/tags", tags=["Tags"])
    """,
}


def test_domain_without_its_modules_fails_fr305(blog: Path, run_rules: Any) -> None:
    """A `tags` domain with only a router (service in `logic.py`, schemas in the router)."""
    write(blog, TAGS_DOMAIN)
    run = run_rules("tagsapp:app", ALL_BUT_CHILDREN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR305", "app")], (failing, run.output)
    findings = run.findings("FR305")
    # One finding for the domain, naming every missing module and how to add them.
    finding = only(findings)
    assert finding["message"] == (
        "domain `src.tags` has no `service.py`, `schemas.py`; it has: __init__.py, logic.py, router.py"
    )
    assert finding["fix"] == (
        "Add `service.py` and `schemas.py` to `src/tags/` (a package of the same name also counts)."
    )
    assert where(finding) == ("src/tags/__init__.py", 1, 1)
    # The layout is configurable: `logic.py` may fill the service role.
    configured = run_rules(
        "tagsapp:app",
        "--fastapi-rules-select=FR305",
        "-o",
        "fastapi_rules_domain_layout=service = service logic",
    )
    assert [f["message"] for f in configured.findings("FR305")] == [
        "domain `src.tags` has no `schemas.py`; it has: __init__.py, logic.py, router.py"
    ]


def test_domain_touching_the_database_gets_one_fr305_finding(blog: Path, run_rules: Any) -> None:
    write(
        blog,
        {**TAGS_DOMAIN, "src/tags/logic.py": "from sqlalchemy import select\n\n\nclass TagService: ...\n"},
    )
    run = run_rules("tagsapp:app", "--fastapi-rules-select=FR305")
    finding = only(run.findings("FR305"))
    assert finding["message"] == (
        "domain `src.tags` has no `service.py`, `schemas.py`, `repository.py`, `models.py` "
        "(`repository.py` and `models.py` because it touches the database); "
        "it has: __init__.py, logic.py, router.py"
    )
    assert finding["fix"] == (
        "Add `service.py`, `schemas.py`, `repository.py` and `models.py` to `src/tags/` "
        "(a package of the same name also counts)."
    )


def _tags_router_taking_a_session(body: str) -> str:
    return f"""
        from fastapi import APIRouter, Depends
        from sqlalchemy.ext.asyncio import AsyncSession

        from src.database import get_db

        router = APIRouter()


        @router.get("/cloud")
        async def get_tag_cloud(db: AsyncSession = Depends(get_db)) -> list[str]:
            {body}
    """


def test_a_domain_that_only_receives_a_session_does_not_touch_the_database_fr305(
    blog: Path, run_rules: Any
) -> None:
    """minimal-fastapi-postgres-template's health check takes `_: AsyncSession = Depends(...)` to
    open a connection and queries nothing: no repository or models are asked of it. A domain that
    uses the session it receives touches the database, even with nothing else from SQLAlchemy."""
    write(blog, {**TAGS_DOMAIN, "src/tags/router.py": _tags_router_taking_a_session('return ["ok"]')})
    unused = run_rules("tagsapp:app", "--fastapi-rules-select=FR305")
    assert [f["message"] for f in unused.findings("FR305")] == [
        "domain `src.tags` has no `service.py`, `schemas.py`; it has: __init__.py, logic.py, router.py"
    ], unused.output
    write(
        blog,
        {"src/tags/router.py": _tags_router_taking_a_session('await db.commit()\n            return ["ok"]')},
    )
    used = run_rules("tagsapp:app", "--fastapi-rules-select=FR305")
    assert [f["message"] for f in used.findings("FR305")] == [
        "domain `src.tags` has no `service.py`, `schemas.py`, `repository.py`, `models.py` "
        "(`repository.py` and `models.py` because it touches the database); "
        "it has: __init__.py, logic.py, router.py"
    ], used.output


NESTED_API_DOMAINS = {
    # fastapi_best_architecture's plugins: the domain's routes sit in `api/v1/<group>/`
    "src/notes/__init__.py": "",
    "src/notes/api/__init__.py": "",
    "src/notes/api/v1/__init__.py": "",
    "src/notes/api/v1/sys/__init__.py": "",
    "src/notes/api/v1/sys/notes.py": """
        from fastapi import APIRouter

        from src.notes.schemas import Note
        from src.notes.service import NoteService

        router = APIRouter()


        @router.get("/latest")
        async def latest_note() -> Note:
            return await NoteService().latest()
    """,
    "src/notes/schemas.py": """
        from pydantic import BaseModel


        class Note(BaseModel):
            text: str
    """,
    "src/notes/service.py": """
        from src.notes.schemas import Note


        class NoteService:
            async def latest(self) -> Note:
                return Note(text="hi")
    """,
    # teamhide/fastapi-boilerplate's ports and adapters: `adapter/input/` holds only the API layer
    "src/badges/__init__.py": "",
    "src/badges/adapter/__init__.py": "",
    "src/badges/adapter/input/__init__.py": "",
    "src/badges/adapter/input/api/__init__.py": "",
    "src/badges/adapter/input/api/v1/__init__.py": "",
    "src/badges/adapter/input/api/v1/badges.py": """
        from fastapi import APIRouter

        router = APIRouter()


        @router.get("/count")
        async def badge_count() -> int:
            return 0
    """,
    "nestedapp.py": """
        from src.badges.adapter.input.api.v1.badges import router as badges
        from src.main import create_application
        from src.notes.api.v1.sys.notes import router as notes

        app = create_application()
        app.include_router(notes, prefix="/api/v1/notes", tags=["Notes"])
        app.include_router(badges, prefix="/api/v1/badges", tags=["Badges"])
    """,
}


def test_domains_whose_routes_sit_deep_in_their_api_layer_fr305(blog: Path, run_rules: Any) -> None:
    """A domain's `api/v1/<group>/` route modules belong to the domain above `api` (its service and
    schemas are there); a package holding nothing but the folder of its routes is a layer, not a
    domain, and is not judged (the layout cannot say where its domain is)."""
    write(blog, NESTED_API_DOMAINS)
    run = run_rules("nestedapp:app", "--fastapi-rules-select=FR305")
    # `src.notes` is judged as the domain (its routes in `api/`, not the rulebook's `router.py`);
    # `src.badges.adapter.input` is not judged at all.
    assert [f["message"] for f in run.findings("FR305")] == [
        "domain `src.notes` has no `router.py`; it has: __init__.py, api/, schemas.py, service.py (`api` is "
        "not the rulebook's name; to accept it on purpose, add the line `router = api` to the ini key "
        "fastapi_rules_domain_layout)"
    ], run.output


CORE_ROUTES = {
    "src/core/__init__.py": "",
    "src/core/router.py": """
        from fastapi import APIRouter
        from pydantic import BaseModel

        router = APIRouter()


        class Info(BaseModel):
            name: str


        @router.get("/info")
        async def get_info() -> Info:
            return Info(name="blog")
    """,
    "coreapp.py": """
        from src.core.router import router
        from src.main import create_application

        app = create_application()
        app.include_router(router, prefix="/api/v1/core", tags=["Core"])
    """,
}


def test_core_package_is_a_domain_unless_listed_as_shared_fr305(blog: Path, run_rules: Any) -> None:
    """The rulebook's shared package is `shared/`: a `core` package with routes is a domain (here
    one with only a router) until the team lists it in fastapi_rules_shared_packages."""
    write(blog, CORE_ROUTES)
    run = run_rules("coreapp:app", ALL_BUT_CHILDREN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR305", "app")], (failing, run.output)
    note = (
        " (`core` is judged as a domain: the rulebook's shared package is `shared`; if `core` holds "
        "code shared by every domain, set the ini key fastapi_rules_shared_packages = shared core)"
    )
    assert [f["message"] for f in run.findings("FR305")] == [
        f"domain `src.core` has no `service.py`, `schemas.py`; it has: __init__.py, router.py{note}",
    ]
    listed = run_rules("coreapp:app", SELECT_OWN, "-o", "fastapi_rules_shared_packages=shared core")
    assert listed.failing() == [], listed.output


def _rename_posts_repository(blog: Path, name: str) -> None:
    """The posts domain with its data access in ``<name>.py``, imports updated."""
    posts = blog / "src" / "posts"
    (posts / "repository.py").rename(posts / f"{name}.py")
    for module in ("service.py", "dependencies.py"):
        path = posts / module
        path.write_text(path.read_text().replace("src.posts.repository", f"src.posts.{name}"))


def test_crud_module_is_not_the_rulebooks_repository_fr305(blog: Path, run_rules: Any) -> None:
    """The rulebook names `repository.py`: `crud.py` conforms only when the team lists it, and the
    finding names the setting. It is still recognised as the data-access layer meanwhile."""
    _rename_posts_repository(blog, "crud")
    run = run_rules("src.main:app", ALL_BUT_CHILDREN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR305", "app")], (failing, run.output)
    assert [f["message"] for f in run.findings("FR305")] == [
        "domain `src.posts` has no `repository.py` (`repository.py` because it touches the database); "
        "it has: __init__.py, "
        "crud.py, dependencies.py, exceptions.py, models.py, router.py, schemas.py, service.py "
        "(`crud` is not the rulebook's name; to accept it on purpose, add the line "
        "`repository = crud` to the ini key fastapi_rules_domain_layout)"
    ]
    configured = run_rules("src.main:app", SELECT_OWN, "-o", "fastapi_rules_domain_layout=repository = crud")
    assert configured.failing() == [], configured.output


def test_crud_module_is_still_a_repository_for_the_layer_rules(blog: Path, run_rules: Any) -> None:
    """What a module is recognised as is not what FR305 accepts: a router importing `crud` is a
    router reaching into the data-access layer (FR302), with or without the layout setting."""
    _rename_posts_repository(blog, "crud")
    router = blog / "src" / "posts" / "router.py"
    router.write_text("from src.posts.crud import PostRepository  # noqa: F401\n" + router.read_text())
    run = run_rules("src.main:app", "--fastapi-rules-select=FR302")
    assert [(r["code"], r["target"]) for r in run.failing()] == [("FR302", "app")], run.output
    assert "src.posts.crud" in only(run.findings("FR302"))["message"]
    named = run_rules(
        "src.main:app", "--fastapi-rules-select=FR302", "-o", "fastapi_rules_domain_layout=repository = crud"
    )
    assert [(r["code"], r["target"]) for r in named.failing()] == [("FR302", "app")], named.output


# -- FR305's domain packages, directly -------------------------------------------------------------


def test_domain_packages() -> None:
    options = RulesOptions(app_spec="src.main:app", app_dir=Path("."))
    assert domain_of_package("src.users", options) == "src.users"
    assert domain_of_package("src.users.routers", options) == "src.users"
    assert domain_of_package("src.modules.posts", options) == "src.modules.posts"
    assert domain_of_package("src", options) is None  # the app's own package
    assert domain_of_package("app.api.routes", options) is None  # layered: api/routes is no domain
    assert domain_of_package("app.api.v1", options) is None
    assert domain_of_package("src.shared", options) is None
    # The rulebook's shared package is `shared`: `core`/`common` are domains unless listed.
    assert domain_of_package("src.core.health", options) == "src.core.health"
    listed = RulesOptions(app_spec="src.main:app", app_dir=Path("."), shared_packages=("shared", "core"))
    assert domain_of_package("src.core.health", listed) is None
    custom = RulesOptions(app_spec="src.main:app", app_dir=Path("."), shared_packages=("kernel",))
    assert domain_of_package("src.core", custom) == "src.core"
    assert domain_of_package("src.kernel", custom) is None


# -- FR306: the session dependency, at runtime -----------------------------------------------------

FACTORY_DEPENDENCY_APP = """
import os
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, FastAPI
from sqlalchemy import String, select
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])
factory = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(50))


async def get_session() -> AsyncIterator[async_sessionmaker]:
    # Named like a session dependency, but yields the factory: the use case owns the transaction.
    yield factory


AsyncSession = Annotated[async_sessionmaker, Depends(get_session)]


class ListNotes:
    def __init__(self, session: AsyncSession) -> None:
        self.factory = session

    async def execute(self) -> list[str]:
        async with self.factory.begin() as session:
            return list((await session.scalars(select(Note.title))).all())


app = FastAPI()


@app.get("/api/v1/notes", tags=["notes"])
async def notes(use_case: Annotated[ListNotes, Depends(ListNotes)]) -> list[str]:
    return await use_case.execute()
"""


def test_a_dependency_that_yields_a_session_factory_is_not_the_session_dependency(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    pytester.makepyfile(factorydep=FACTORY_DEPENDENCY_APP)
    run = run_rules("factorydep:app", "--fastapi-rules-select=FR306,FR509")
    assert run.outcomes("FR509") == {"GET /api/v1/notes": "passed"}, run.output
    (result,) = run.results_for("FR306")
    assert result["outcome"] == "skipped", run.output
    assert "no route depends on a database-session dependency" in result["message"]
