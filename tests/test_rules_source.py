"""Source and project rules: FR302-FR307, FR401, FR403, FR602, FR703, FR801, FR804.

The conforming blog passes them; each violating variant (or mutated copy of the blog, for the rules
about the layout, pyproject and Dockerfile) fails exactly its rule at the expected place; small inline
projects pin the false positives each heuristic must not produce.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pytest_fastapi_rules.dockerfile import Heredoc, heredocs_of, parse_dockerfile
from pytest_fastapi_rules.options import RulesOptions
from pytest_fastapi_rules.rules.layers import domain_of_package
from pytest_fastapi_rules.rules.security import mask_secret
from pytest_fastapi_rules.rules.stack import (
    _older,
    declared_dependencies,
    dockerfile_problems,
    dockerfiles,
)
from tests.conftest import OLD_FASTAPI, line_of, only
from tests.source_projects import ALL_BUT_CHILDREN, CHECKED_CODES, SELECT_OWN, column_of, where, write

# -- the conforming app ---------------------------------------------------------------------------


def test_conforming_blog_passes_every_source_and_project_rule(blog: Path, run_rules: Any) -> None:
    run = run_rules("src.main:app", SELECT_OWN)
    for code in CHECKED_CODES:
        assert run.outcomes(code) == {"app": "passed"}, (code, run.results_for(code), run.output)


# -- one violating variant per rule ---------------------------------------------------------------

VARIANTS = [
    # (module, code, message essence, line pattern, text the column points at)
    (
        "fr302_router_uses_repository",
        "FR302",
        "imports the repository `src.posts.repository.PostRepository`: "
        "`from src.posts.repository import PostRepository`",
        r"^from src.posts.repository import",
        "from",
    ),
    (
        "fr303_star_import",
        "FR303",
        "star-imports `src.posts.schemas`: `from src.posts.schemas import *`",
        r"import \*",
        "from",
    ),
    (
        "fr307_service_raises_http",
        "FR307",
        "service `PublishedPostService.get_published_post` raises an HTTP exception: `raise HTTPException(",
        r"raise HTTPException",
        "raise",
    ),
    (
        "fr401_blocking_open",
        "FR401",
        "sync `read_message_of_the_day`, called from async `get_message_of_the_day` "
        '(variants/fr401_blocking_open.py:31:33) calls blocking open: `open(path, encoding="utf-8")`',
        r"with open\(",
        "open(",
    ),
    (
        "fr403_gather_on_one_session",
        "FR403",
        "`DashboardService.get_dashboard` runs awaitables concurrently on one database session "
        "(shared through `self.repository`): `asyncio.gather(",
        r"asyncio\.gather\(",
        "asyncio.gather(",
    ),
    (
        "fr602_v1_dict",
        "FR602",
        "`.dict()` on the Pydantic model `PostResponse` is the v1 API (v2: `model_dump()`): "
        '`post.dict(include={"id", "title"})`',
        r"post\.dict\(",
        "post.dict(",
    ),
    (
        "fr703_hardcoded_secret",
        "FR703",
        # The first 3 characters, the rest masked, and the length: enough to judge, never the secret.
        "`SHARE_LINK_SECRET` is assigned a literal secret (32 characters): "
        f'`SHARE_LINK_SECRET = "8f4{"*" * 29}"`',
        r"^SHARE_LINK_SECRET =",
        "SHARE_LINK_SECRET",
    ),
]


@pytest.mark.parametrize(
    ("module", "code", "essence", "line_pattern", "column_text"), VARIANTS, ids=[v[1] for v in VARIANTS]
)
def test_variant_fails_only_its_rule(
    blog: Path,
    run_rules: Any,
    module: str,
    code: str,
    essence: str,
    line_pattern: str,
    column_text: str,
) -> None:
    run = run_rules(f"variants.{module}:app", ALL_BUT_CHILDREN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [(code, "app")], (failing, run.output)
    finding = only(run.findings(code))
    assert essence in finding["message"], finding
    file = f"variants/{module}.py"
    assert where(finding) == (
        file,
        line_of(blog / file, line_pattern),
        column_of(blog / file, line_pattern, column_text),
    ), finding
    assert code in run.output
    assert f"{file}:{finding['location']['line']}:{finding['location']['column']}" in run.output or (
        failing[0]["outcome"] == "warning"  # warnings print their text only under --fastapi-rules-strict
    )


def test_hardcoded_secret_never_reaches_the_report(blog: Path, run_rules: Any) -> None:
    run = run_rules("variants.fr703_hardcoded_secret:app", "--fastapi-rules-select=FR703")
    secret = re.search(
        r'SHARE_LINK_SECRET = "(\w+)"', (blog / "variants/fr703_hardcoded_secret.py").read_text()
    )
    assert secret is not None
    assert run.outcomes("FR703") == {"app": "failed"}
    assert secret.group(1) not in run.output
    assert secret.group(1) not in str(run.report)


# -- layout, domains, pyproject, Dockerfile: mutated copies of the blog -------------------------------

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


def test_requests_dependency_fails_fr801(blog: Path, run_rules: Any) -> None:
    pyproject = blog / "pyproject.toml"
    pyproject.write_text(
        pyproject.read_text().replace('    "httpx>=0.28",\n', '    "httpx>=0.28",\n    "requests>=2.32",\n')
    )
    # Only the project rules read pyproject.toml: they are the ones that can change.
    run = run_rules("src.main:app", SELECT_OWN + ",FR801")
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR801", "app")], (failing, run.output)
    finding = only([f for f in run.findings("FR801") if not (OLD_FASTAPI and "`fastapi`" in f["message"])])
    assert finding["message"] == "`requests` is a runtime dependency of the project: `requests>=2.32`"
    assert where(finding) == ("pyproject.toml", line_of(pyproject, "requests>=2.32"), 6)


BAD_DOCKERFILE = """
    FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11

    COPY ./src /app/src
    RUN pip install --no-cache-dir -r /app/requirements.txt
    CMD ["/start.sh"]
"""


def test_old_style_dockerfile_fails_fr804(blog: Path, run_rules: Any) -> None:
    write(blog, {"Dockerfile": BAD_DOCKERFILE})
    # Only the project rules read the Dockerfile: they are the ones that can change.
    run = run_rules("src.main:app", SELECT_OWN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR804", "app")], (failing, run.output)
    findings = run.findings("FR804")
    assert [(f["message"], where(f)) for f in findings] == [
        (
            "`Dockerfile` is based on the deprecated image `tiangolo/uvicorn-gunicorn-fastapi:python3.11`: "
            "`FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
        (
            "`Dockerfile` is a single-stage build (no separate builder stage): "
            "`FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
        (
            "`Dockerfile` runs as root (no USER instruction in the final stage): "
            "`FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
        (
            "`Dockerfile` has no HEALTHCHECK: `FROM tiangolo/uvicorn-gunicorn-fastapi:python3.11`",
            ("Dockerfile", 1, 1),
        ),
    ]
    assert "FR804" in run.output


#: A conforming build whose USER and HEALTHCHECK lines sit inside heredoc bodies: file contents or a
#: script, never instructions (BuildKit's reading). ``{body}`` is the heredoc part of each variant.
HEREDOC_DOCKERFILE = """\
# syntax=docker/dockerfile:1
FROM python:3.12-slim AS builder
RUN python -m venv /opt/venv

FROM python:3.12-slim
COPY --from=builder /opt/venv /opt/venv
COPY ./src ./src
{body}
CMD ["fastapi", "run", "src/main.py"]
"""

HEREDOC_BODIES = {
    "copy": 'COPY <<EOF /app/notes.txt\nUSER appuser\nHEALTHCHECK CMD python -c "print(1)"\nEOF',
    "run": 'RUN <<EOF\nuseradd appuser\nUSER appuser\nHEALTHCHECK CMD python -c "print(1)"\nEOF',
    "tabs-stripped": 'RUN <<-EOF\n\tUSER appuser\n\tHEALTHCHECK CMD python -c "print(1)"\n\tEOF',
    "quoted": 'COPY <<"EOF" /app/notes.txt\nUSER appuser\nHEALTHCHECK CMD true\nEOF',
    "single-quoted-continued": "RUN cat <<'EOF' > /app/x \\\n    && echo done\nUSER appuser\n"
    "HEALTHCHECK CMD true\nEOF",
    "two-on-one-line": "COPY <<one <<two /app/\nUSER appuser\none\nHEALTHCHECK CMD true\ntwo",
}


@pytest.mark.parametrize("body", HEREDOC_BODIES.values(), ids=HEREDOC_BODIES.keys())
def test_user_and_healthcheck_inside_a_heredoc_fail_fr804(blog: Path, run_rules: Any, body: str) -> None:
    (blog / "Dockerfile").write_text(HEREDOC_DOCKERFILE.format(body=body))
    run = run_rules("src.main:app", SELECT_OWN)
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [("FR804", "app")], (failing, run.output)
    assert [(f["message"], where(f)) for f in run.findings("FR804")] == [
        (
            "`Dockerfile` runs as root (no USER instruction in the final stage): `FROM python:3.12-slim`",
            ("Dockerfile", 5, 1),
        ),
        ("`Dockerfile` has no HEALTHCHECK: `FROM python:3.12-slim`", ("Dockerfile", 5, 1)),
    ]


def test_user_and_healthcheck_after_a_heredoc_pass_fr804(blog: Path, run_rules: Any) -> None:
    """The body's `FROM`, `USER root` and `CMD` lines are a script's text, not a stage or the command."""
    body = (
        "RUN <<EOF\nFROM ubuntu:24.04\nUSER root\nuseradd appuser\nCMD python -m http.server\nEOF\n"
        'USER appuser\nHEALTHCHECK CMD python -c "print(1)"'
    )
    (blog / "Dockerfile").write_text(HEREDOC_DOCKERFILE.format(body=body))
    run = run_rules("src.main:app", SELECT_OWN)
    assert run.outcomes("FR804") == {"app": "passed"}, (run.findings("FR804"), run.output)


STACK_PROJECT = {
    "pyproject.toml": """
        [project]
        name = "pgapp"
        dependencies = [
            "fastapi>=0.95",
            "psycopg2-binary>=2.9",
        ]
    """,
    "pgapp/__init__.py": "",
    "pgapp/main.py": """
        from fastapi import FastAPI

        app = FastAPI()
    """,
}


def test_stack_versions_are_read_as_minimums(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An old FastAPI, no structlog, and PostgreSQL without asyncpg (what is installed is faked)."""
    from pytest_fastapi_rules.rules import stack

    real = stack.installed_version
    fake = {"fastapi": "0.95.2", "structlog": None, "asyncpg": None}
    monkeypatch.setattr(stack, "installed_version", lambda name: fake[name] if name in fake else real(name))
    write(pytester.path, STACK_PROJECT)
    run = run_rules("pgapp.main:app", "--fastapi-rules-select=FR801")
    pyproject = pytester.path / "pyproject.toml"
    assert [(where(f), f["message"]) for f in run.findings("FR801")] == [
        (
            ("pyproject.toml", line_of(pyproject, "fastapi>=0.95"), 6),
            "installed `fastapi` 0.95.2 is older than the rulebook's 0.121.2: `fastapi>=0.95`",
        ),
        (
            ("pyproject.toml", 1, 1),
            "`structlog` is not installed (the rulebook's stack asks for >= 24.4)",
        ),
        (
            ("pyproject.toml", 1, 1),
            "PostgreSQL is used (the project declares `psycopg2-binary`) but `asyncpg` is not installed",
        ),
    ], run.output
    assert run.outcomes("FR801") == {"app": "warning"}


# -- FR401: what blocks and what does not ------------------------------------------------------------

BLOCKING_PROJECT = {
    # Stand-ins for libraries the test venv does not have; only their names matter to the rule.
    "requests.py": """
        def get(url, **kwargs):
            raise RuntimeError("never called")
    """,
    "aiofiles.py": """
        def open(path, *args, **kwargs):
            raise RuntimeError("never called")
    """,
    "blockapp/__init__.py": "",
    "blockapp/rates.py": """
        import requests


        class RatesService:
            def fetch_rates(self) -> dict:
                return requests.get("https://rates.example.com").json()

            async def fetch_rates_async(self) -> dict:
                return {}
    """,
    "blockapp/main.py": """
        import asyncio
        import time
        from contextlib import asynccontextmanager
        from typing import Annotated

        import aiofiles
        from fastapi import Depends, FastAPI
        from sqlalchemy import create_engine, inspect, text
        from sqlalchemy.ext.asyncio import AsyncSession, create_async_engine
        from sqlalchemy.orm import Session, scoped_session, sessionmaker

        from blockapp.rates import RatesService


        @asynccontextmanager
        async def lifespan(app: FastAPI):
            with open("settings.json") as file:  # startup, not a request: left alone
                file.read()
            yield


        app = FastAPI(lifespan=lifespan)


        def get_rates_service() -> RatesService:
            return RatesService()


        def get_sync_db():
            yield None


        async def get_async_db():
            yield None


        @app.get("/rates")
        async def rates(service: Annotated[RatesService, Depends(get_rates_service)]) -> dict:
            await service.fetch_rates_async()
            return service.fetch_rates()


        @app.get("/sleepy")
        async def sleepy() -> dict:
            time.sleep(0.1)
            await asyncio.sleep(0.1)
            await asyncio.to_thread(time.sleep, 0.1)
            return {}


        @app.get("/files")
        async def files() -> dict:
            async with aiofiles.open("a.txt") as handle:
                await handle.read()
            text_ = await asyncio.to_thread(lambda: open("b.txt").read())

            def read_c() -> str:
                with open("c.txt") as file:
                    return file.read()

            await asyncio.to_thread(read_c)
            with open("d.txt") as file:
                return {"d": file.read(), "b": text_}


        @app.get("/sync-db")
        async def sync_db(db: Annotated[Session, Depends(get_sync_db)]) -> dict:
            return {"n": db.execute(text("SELECT 1")).scalar()}


        @app.get("/async-db")
        async def async_db(session: Annotated[AsyncSession, Depends(get_async_db)]) -> dict:
            return {"n": (await session.execute(text("SELECT 1"))).scalar()}


        @app.get("/threadpool")
        def threadpool() -> dict:
            time.sleep(0.1)  # a sync endpoint runs in FastAPI's thread pool
            return {}


        engine = create_engine("sqlite://")
        SessionLocal = sessionmaker(bind=engine)
        async_engine = create_async_engine("sqlite+aiosqlite://")


        @app.middleware("http")
        async def db_session_middleware(request, call_next):
            # As Netflix/dispatch does: building factories blocks nothing; opening a sync
            # session from one, and inspecting a sync engine, do.
            schemas = inspect(engine).get_schema_names()
            factory = scoped_session(sessionmaker(bind=engine))
            async_factory = sessionmaker(bind=async_engine, class_=AsyncSession)
            request.state.db = factory()
            request.state.adb = async_factory()
            with SessionLocal() as other:
                request.state.other = other
            request.state.schemas = schemas
            return await call_next(request)
    """,
}


def test_blocking_calls_and_their_async_twins(pytester: pytest.Pytester, run_rules: Any) -> None:
    write(pytester.path, BLOCKING_PROJECT)
    run = run_rules("blockapp.main:app", "--fastapi-rules-select=FR401")
    main = pytester.path / "blockapp/main.py"
    rates = pytester.path / "blockapp/rates.py"
    found = sorted((where(f), f["message"]) for f in run.findings("FR401"))
    assert found == sorted(
        [
            (
                (
                    "blockapp/rates.py",
                    line_of(rates, "requests.get"),
                    column_of(rates, "requests.get", "requests"),
                ),
                "sync `RatesService.fetch_rates`, called from async `rates` "
                f"(blockapp/main.py:{line_of(main, 'return service.fetch_rates')}:12) calls blocking "
                'requests.get: `requests.get("https://rates.example.com")`',
            ),
            (
                ("blockapp/main.py", line_of(main, r"^    time.sleep\(0.1\)$"), 5),
                "async `sleepy` calls blocking time.sleep: `time.sleep(0.1)`",
            ),
            (
                ("blockapp/main.py", line_of(main, r'open\("d.txt"\)'), 10),
                'async `files` calls blocking open: `open("d.txt")`',
            ),
            (
                ("blockapp/main.py", line_of(main, r"db.execute"), 18),
                'async `sync_db` calls blocking sync `Session.execute`: `db.execute(text("SELECT 1"))`',
            ),
            (
                ("blockapp/main.py", line_of(main, r"schemas = inspect"), 15),
                "async `db_session_middleware` calls blocking `inspect` on a sync Engine (it connects "
                "to the database): `inspect(engine)`",
            ),
            (
                ("blockapp/main.py", line_of(main, r"= factory\(\)"), 24),
                "async `db_session_middleware` calls blocking sync SQLAlchemy session factory (the "
                "`Session` it opens blocks on every query): `factory()`",
            ),
            (
                ("blockapp/main.py", line_of(main, r"with SessionLocal"), 10),
                "async `db_session_middleware` calls blocking sync SQLAlchemy session factory (the "
                "`Session` it opens blocks on every query): `SessionLocal()`",
            ),
        ]
    ), run.output
    assert run.outcomes("FR401") == {"app": "failed"}
    # Each finding carries the fix for its API.
    assert "fix: Use `httpx.AsyncClient`" in run.output
    assert "fix: Use `await asyncio.sleep(...)`" in run.output
    assert "fix: Use `aiofiles.open`" in run.output


# -- FR403: one session, several awaitables -----------------------------------------------------------

GATHER_PROJECT = {
    "aiohttp.py": """
        class ClientSession:
            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return None

            async def get(self, url):
                return url
    """,
    "gatherapp.py": """
        import asyncio

        import aiohttp
        from fastapi import FastAPI
        from sqlalchemy import func, select, text
        from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

        app = FastAPI()
        session_factory = async_sessionmaker()


        async def dashboard(db: AsyncSession) -> dict:
            users_task = db.execute(text("SELECT count(*) FROM users"))
            posts_task = db.execute(text("SELECT count(*) FROM posts"))
            users, posts = await asyncio.gather(users_task, posts_task)
            return {"users": users, "posts": posts}


        async def many(db: AsyncSession, ids: list[int]) -> list:
            return await asyncio.gather(*(db.get(dict, i) for i in ids))


        async def grouped(session: AsyncSession) -> None:
            async with asyncio.TaskGroup() as group:
                group.create_task(session.execute(text("SELECT 1")))
                group.create_task(session.execute(text("SELECT 2")))


        async def separate_sessions() -> tuple:
            async def count_users() -> int:
                async with session_factory() as session:
                    return (await session.execute(text("SELECT 1"))).scalar_one()

            async def count_posts() -> int:
                async with session_factory() as session:
                    return (await session.execute(text("SELECT 2"))).scalar_one()

            return await asyncio.gather(count_users(), count_posts())


        async def different_resources(db: AsyncSession) -> tuple:
            async def fetch_api() -> str:
                async with aiohttp.ClientSession() as session:
                    return await session.get("https://api.example.com")

            async def fetch_db() -> list:
                return (await db.execute(select(func.count()))).all()

            return await asyncio.gather(fetch_api(), fetch_db())


        async def http_session(urls: list[str]) -> list:
            async with aiohttp.ClientSession() as session:
                return await asyncio.gather(session.get(urls[0]), session.get(urls[1]))


        async def typed(conn: AsyncSession) -> list:
            return await asyncio.gather(conn.scalar(text("SELECT 1")), conn.scalar(text("SELECT 2")))


        async def untyped(db) -> list:
            return await asyncio.gather(count_rows(db, "users"), count_rows(db, "posts"))


        async def count_rows(db, table: str) -> int:
            return 0


        class StatsRepository:
            def __init__(self, session: AsyncSession) -> None:
                self.session = session

            async def both(self) -> list:
                return await asyncio.gather(
                    self.session.scalar(text("SELECT 1")), self.session.scalar(text("SELECT 2"))
                )

            async def one_each(self, other: AsyncSession) -> list:
                return await asyncio.gather(self.session.scalar(text("SELECT 1")), other.scalar(text("SELECT 2")))


        class ApiClient:
            def __init__(self) -> None:
                self.session = aiohttp.ClientSession()

            async def fetch_all(self, urls: list[str]) -> list:
                return await asyncio.gather(self.session.get(urls[0]), self.session.get(urls[1]))
    """,
}


def test_gather_on_one_session(pytester: pytest.Pytester, run_rules: Any) -> None:
    write(pytester.path, GATHER_PROJECT)
    run = run_rules("gatherapp:app", "--fastapi-rules-select=FR403")
    source = pytester.path / "gatherapp.py"
    found = sorted((f["location"]["line"], f["message"]) for f in run.findings("FR403"))
    assert found == [
        (
            line_of(source, r"users, posts = await asyncio.gather"),
            "`dashboard` runs awaitables concurrently on one database session (`db`): "
            "`asyncio.gather(users_task, posts_task)`",
        ),
        (
            line_of(source, r"asyncio.gather\(\*\("),
            "`many` runs awaitables concurrently on one database session (`db`): "
            "`asyncio.gather(*(db.get(dict, i) for i in ids))`",
        ),
        (
            line_of(source, r"async with asyncio.TaskGroup"),
            "`grouped` runs awaitables concurrently on one database session (`session`): "
            "`async with asyncio.TaskGroup() as group`",
        ),
        (
            line_of(source, r"conn.scalar\(text"),
            "`typed` runs awaitables concurrently on one database session (`conn`): "
            '`asyncio.gather(conn.scalar(text("SELECT 1")), conn.scalar(text("SELECT 2")))`',
        ),
        (
            line_of(source, r"count_rows\(db, \"users\"\)"),
            "`untyped` runs awaitables concurrently on one database session (`db`): "
            '`asyncio.gather(count_rows(db, "users"), count_rows(db, "posts"))`',
        ),
        (
            line_of(source, r"return await asyncio.gather\($"),
            "`StatsRepository.both` runs awaitables concurrently on one database session "
            '(`self.session`): `asyncio.gather(self.session.scalar(text("SELECT 1")), self.session.scalar(text(…`',
        ),
    ], run.output


# -- FR302, FR307, FR602: layers and Pydantic, with their look-alikes ---------------------------------

LAYERS_PROJECT = {
    "aiohttp.py": """
        class ClientSession:
            async def __aenter__(self):
                return self

            async def __aexit__(self, *exc):
                return None

            async def get(self, url):
                return url
    """,
    "layered/__init__.py": "",
    "layered/database.py": """
        from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


        class Base(DeclarativeBase):
            pass


        class Item(Base):
            __tablename__ = "items"
            id: Mapped[int] = mapped_column(primary_key=True)


        async def get_db():
            yield None
    """,
    "layered/models.py": """
        import enum

        from sqlalchemy.orm import Mapped, mapped_column

        from layered.database import Base


        class Color(str, enum.Enum):
            RED = "red"


        class Tag(Base):
            __tablename__ = "tags"
            id: Mapped[int] = mapped_column(primary_key=True)
    """,
    "layered/palette.py": """
        from fastapi import APIRouter

        from layered import models

        router = APIRouter()


        @router.get("/api/v1/colors")
        async def colors(color: models.Color = models.Color.RED) -> dict:
            return {"color": color}
    """,
    "layered/tags.py": """
        import layered.models
        from fastapi import APIRouter

        router = APIRouter()


        @router.post("/api/v1/tags")
        async def create_tag() -> dict:
            return {"id": layered.models.Tag(id=1).id}
    """,
    "layered/repository.py": """
        class ItemRepository:
            def __init__(self, session) -> None:
                self.session = session
    """,
    "layered/services.py": """
        from dataclasses import asdict, dataclass

        from fastapi import HTTPException
        from pydantic import BaseModel, validator


        class ItemIn(BaseModel):
            name: str

            @validator("name")
            def strip(cls, value):
                return value.strip()


        @dataclass
        class Point:
            x: int

            def dict(self) -> dict:
                return asdict(self)


        async def get_current_token(token: str = "") -> str:
            if not token:
                raise HTTPException(status_code=401, detail="Not authenticated")
            return token


        class ItemService:
            async def create(self, data: ItemIn, raw: dict, point: Point, response) -> dict:
                if not data.name:
                    raise HTTPException(status_code=400, detail="empty name")
                parsed = ItemIn.parse_obj(raw)
                return {"a": raw.dict(), "b": point.dict(), "c": response.json(), "d": parsed.name}
    """,
    "layered/main.py": """
        from typing import TYPE_CHECKING, Annotated

        import aiohttp
        from fastapi import Depends, FastAPI
        from sqlalchemy import text
        from sqlalchemy.ext.asyncio import AsyncSession

        from layered import palette, tags
        from layered.database import Item, get_db
        from layered.services import ItemIn, ItemService, get_current_token

        if TYPE_CHECKING:
            from layered.repository import ItemRepository

        app = FastAPI()
        app.include_router(palette.router)
        app.include_router(tags.router)


        @app.get("/api/v1/items/{item_id}", response_model=None)
        async def get_item(item_id: int, token: Annotated[str, Depends(get_current_token)]) -> Item:
            async with aiohttp.ClientSession() as session:
                await session.get("https://example.com")
            raise NotImplementedError


        @app.post("/api/v1/items")
        async def create_item(data: ItemIn, db: Annotated[AsyncSession, Depends(get_db)]) -> dict:
            await db.execute(text("SELECT id FROM items"))
            return await ItemService().create(data, {}, None, None)
    """,
}


def test_layers_and_pydantic_look_alikes(pytester: pytest.Pytester, run_rules: Any) -> None:
    write(pytester.path, LAYERS_PROJECT)
    run = run_rules("layered.main:app", "--fastapi-rules-select=FR302,FR307,FR602")
    main = pytester.path / "layered/main.py"
    services = pytester.path / "layered/services.py"
    # FR302: the ORM class imported for the return annotation only is left to FR203; the HTTP
    # session, the TYPE_CHECKING import and a models module used for its enum are no data access;
    # text(), db.execute and an ORM class reached through the models module are.
    assert sorted((where(f), f["message"]) for f in run.findings("FR302")) == sorted(
        [
            (
                ("layered/tags.py", 1, 1),
                "router module `layered.tags` imports the models `layered.models`: `import layered.models`",
            ),
            (
                # One finding per function; the text() inside db.execute() is part of that call.
                ("layered/main.py", line_of(main, r"await db.execute"), 11),
                "router module `layered.main` uses the database session in `create_item`: "
                '`db.execute(text("SELECT id FROM items"))`',
            ),
        ]
    ), run.output
    # FR307: the service method, not the dependency that lives in the same module.
    assert [(f["location"]["line"], f["message"]) for f in run.findings("FR307")] == [
        (
            line_of(services, r"empty name"),
            "service `ItemService.create` raises an HTTP exception: "
            '`raise HTTPException(status_code=400, detail="empty name")`',
        )
    ]
    # FR602: the v1 validator and parse_obj on the model; not .dict() on a dict or a dataclass,
    # not .json() on something unknown.
    assert sorted((f["location"]["line"], f["message"]) for f in run.findings("FR602")) == [
        (line_of(services, r'@validator\("name"\)'), '`strip` uses the v1 decorator `validator("name")`'),
        (
            line_of(services, r"ItemIn.parse_obj"),
            "`.parse_obj()` on the Pydantic model `ItemIn` is the v1 API (v2: `model_validate()`): "
            "`ItemIn.parse_obj(raw)`",
        ),
    ], run.output


# -- FR703: secrets in code, and what is not one -----------------------------------------------------

SECRETS_PROJECT = {
    ".env.example": "SECRET_KEY=changeme\nDATABASE_PASSWORD=changeme\n",
    "secretapp/__init__.py": "",
    "secretapp/config.py": """
        import os
        from enum import Enum

        from pydantic import BaseModel, SecretStr
        from pydantic_settings import BaseSettings

        SECRET_KEY = "hard-coded-key-123"
        API_TOKEN = os.environ["API_TOKEN"]
        SMTP_PASSWORD = os.getenv("SMTP_PASSWORD", "")
        ADMIN_PASSWORD = 'hunter2'
        ACCESS_TOKEN = "access_token"  # a form field name, not a secret


        class ErrorCode(str, Enum):
            INVALID_TOKEN = "invalid_token"
            WRONG_PASSWORD = "wrong_password"


        class Database(BaseModel):  # a nested section of the settings, as minimal's are
            password: SecretStr = SecretStr("passwd-change-me")
            username: SecretStr = SecretStr("")


        class Settings(BaseSettings):
            JWT_SECRET: str = "dev-only-secret"
            DATABASE_PASSWORD: str = ""
            ACCESS_TOKEN_EXPIRE_MINUTES: int = 30
            STRIPE_API_KEY: str | None = None
            database: Database = Database()
    """,
    "secretapp/tests/__init__.py": "",
    "secretapp/tests/test_config.py": """
        SECRET_KEY = "test-secret-key"
    """,
    "secretapp/main.py": """
        import jwt
        from fastapi import FastAPI

        from secretapp.config import Settings

        app = FastAPI()


        @app.get("/api/v1/token")
        async def token() -> dict:
            signed = jwt.encode({"sub": "1"}, "literal-signing-key", algorithm="HS256")
            checked = jwt.decode(signed, key=Settings().JWT_SECRET, algorithms=["HS256"])
            return {"token": signed, "sub": checked["sub"]}


        def verify(token: str) -> dict:
            return jwt.decode(token, key="literal-verify-key", algorithms=["HS256"])
    """,
}


def test_secrets_in_code_and_their_look_alikes(
    pytester: pytest.Pytester, run_rules: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("API_TOKEN", "from-the-environment")
    write(pytester.path, SECRETS_PROJECT)
    run = run_rules("secretapp.main:app", "--fastapi-rules-select=FR703")
    config = pytester.path / "secretapp/config.py"
    main = pytester.path / "secretapp/main.py"
    found = sorted((where(f), f["message"]) for f in run.findings("FR703"))
    assert found == sorted(
        [
            (
                ("secretapp/config.py", line_of(config, r'^SECRET_KEY = "'), 1),
                '`SECRET_KEY` is assigned a literal secret (18 characters): `SECRET_KEY = "har***************"`',
            ),
            (
                # 7 characters: a quarter of it is 1, so one character is shown; the quotes are kept.
                ("secretapp/config.py", line_of(config, r"^ADMIN_PASSWORD = "), 1),
                "`ADMIN_PASSWORD` is assigned a literal secret (7 characters): `ADMIN_PASSWORD = 'h******'`",
            ),
            (
                ("secretapp/config.py", line_of(config, r"password: SecretStr"), 5),
                "`password` is assigned a literal secret (16 characters): "
                '`password: SecretStr = SecretStr("pas*************")`',
            ),
            (
                ("secretapp/config.py", line_of(config, r"JWT_SECRET: str"), 5),
                "settings field `Settings.JWT_SECRET` has a non-empty default secret (15 characters): "
                '`JWT_SECRET: str = "dev************"`',
            ),
            (
                ("secretapp/main.py", line_of(main, r"jwt.encode"), 14),
                "`jwt.encode` is called with a literal key (19 characters): "
                '`jwt.encode({"sub": "1"}, "lit****************", algorithm="HS256")`',
            ),
            (
                ("secretapp/main.py", line_of(main, r"jwt.decode\(token"), 12),
                "`jwt.decode` is called with a literal key (18 characters): "
                '`jwt.decode(token, key="lit***************", algorithms=["HS256"])`',
            ),
        ]
    ), run.output
    for secret in (
        "hard-coded-key-123",
        "passwd-change-me",
        "hunter2",
        "dev-only-secret",
        "literal-signing-key",
        "literal-verify-key",
    ):
        assert secret not in run.output


def test_masked_secret_shows_at_most_three_characters_and_a_quarter() -> None:
    assert mask_secret("abc") == "***"  # under 4 characters: none shown
    assert mask_secret("abcd") == "a***"
    assert mask_secret("abcdefgh") == "ab******"
    assert mask_secret("abcdefghijkl") == "abc*********"
    assert mask_secret("x" * 64) == "xxx" + "*" * 61


SIBLING_CORE_PROJECT = {
    "app/__init__.py": "",
    "app/main.py": """
        from fastapi import FastAPI

        from core.config import settings

        app = FastAPI(title=settings.PROJECT_NAME)


        @app.get("/api/v1/ping", tags=["ping"])
        async def ping() -> dict:
            return {}
    """,
    "core/__init__.py": "",
    "core/config.py": """
        SECRET_KEY = "sibling-package-secret"


        class Settings:
            PROJECT_NAME = "svc"


        settings = Settings()
    """,
    "core/unused.py": """
        API_TOKEN = "never-imported-token"
    """,
}


def test_a_sibling_package_the_app_imports_is_its_code_fr703(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """`core/config.py` beside `app/`, imported as `core.config`: no endpoint lives there, yet it is
    the app's code and its literal secret is reported. A sibling module nothing imports is not."""
    write(pytester.path, SIBLING_CORE_PROJECT)
    run = run_rules("app.main:app", "--fastapi-rules-select=FR703")
    config = pytester.path / "core/config.py"
    finding = only(run.findings("FR703"))
    assert (where(finding), finding["message"]) == (
        ("core/config.py", line_of(config, r"^SECRET_KEY"), 1),
        '`SECRET_KEY` is assigned a literal secret (22 characters): `SECRET_KEY = "sib*******************"`',
    )


# -- the code index: what belongs to the app -----------------------------------------------------------

INDEX_PROJECT = {
    "walkapp/__init__.py": "",
    "walkapp/main.py": """
        from fastapi import FastAPI

        app = FastAPI()


        @app.get("/api/v1/ping")
        async def ping() -> dict:
            return {}
    """,
    # Not imported by anything: still the app's code, found by the walk.
    "walkapp/lazy.py": "from os.path import *\n",
    # Test code, a conftest and a second entry point are not the app.
    "walkapp/tests/helpers.py": "from os import *\n",
    "walkapp/test_walk.py": "from os import *\n",
    "walkapp/conftest.py": "from os import *\n",
    "walkapp/admin_main.py": "from os import *\nfrom fastapi import FastAPI\n\napp = FastAPI()\n",
    # A virtual environment and a migrations folder inside the package.
    "walkapp/.venv/lib/site.py": "from os import *\n",
    "walkapp/venv/pyvenv.cfg": "home = /usr/bin\n",
    "walkapp/venv/lib/thing.py": "from os import *\n",
    "walkapp/migrations/env.py": "from os import *\n",
}


def test_index_walks_the_package_but_not_tests_envs_or_other_apps(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    write(pytester.path, INDEX_PROJECT)
    run = run_rules("walkapp.main:app", "--fastapi-rules-select=FR303,FR304,FR305,FR804")
    assert [(where(f), f["message"]) for f in run.findings("FR303")] == [
        (("walkapp/lazy.py", 1, 1), "module `walkapp.lazy` star-imports `os.path`: `from os.path import *`")
    ], run.output
    results = {r["code"]: r for r in run.report["results"]}
    assert results["FR304"]["outcome"] == "skipped"
    assert "from two domains on" in results["FR304"]["message"]
    assert results["FR305"]["outcome"] == "skipped"
    assert results["FR804"]["outcome"] == "skipped"
    assert "no project root" in results["FR804"]["message"]


# -- pure helpers: domains, dependencies, versions, Dockerfiles ------------------------------------------


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


def test_declared_dependencies(tmp_path: Path) -> None:
    write(
        tmp_path,
        {
            "pyproject.toml": """
                [project]
                name = "x"
                dependencies = ["fastapi>=0.121.2", "requests-oauthlib>=2"]

                [project.optional-dependencies]
                dev = ["requests>=2.32"]

                [tool.poetry.dependencies]
                python = "^3.12"
                Requests = "^2.32"
            """,
            "requirements.txt": "# runtime\nhttpx>=0.28  # client\n-r base.txt\n",
            "requirements-dev.txt": "requests\n",
            "requirements/base.txt": "structlog>=24.4\n",
            "requirements/test.txt": "requests\n",
        },
    )
    found = declared_dependencies(tmp_path)
    dependencies_line = (tmp_path / "pyproject.toml").read_text().splitlines()[2]
    assert [(d.name, d.file.name, d.line, d.column) for d in found.declared] == [
        ("fastapi", "pyproject.toml", 3, dependencies_line.index("fastapi") + 1),
        ("requests-oauthlib", "pyproject.toml", 3, dependencies_line.index("requests-oauthlib") + 1),
        ("Requests", "pyproject.toml", 10, 1),
        ("httpx", "requirements.txt", 2, 1),
        ("structlog", "base.txt", 1, 1),
    ]
    assert found.find("requests") is not None and found.find("requests").file.name == "pyproject.toml"


def test_versions_are_minimums() -> None:
    assert _older("0.100.0", "0.121.2") is True
    assert _older("0.165.0", "0.121.2") is False
    assert _older("1.0.0", "0.121.2") is False  # a newer major passes: no caret ranges
    assert _older("2.9.2", "2.10") is True
    assert _older("not-a-version", "2.10") is None


GOOD_DOCKERFILE = """
# syntax=docker/dockerfile:1
ARG PYTHON_VERSION=3.12
FROM python:${PYTHON_VERSION}-slim AS builder
RUN pip install --no-cache-dir \\
    -r requirements.txt

FROM builder AS runtime-base
ENV PYTHONUNBUFFERED=1

FROM runtime-base
USER root
RUN useradd app
USER app
HEALTHCHECK CMD python -c "print('ok')"
CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]
"""


def test_dockerfile_checks() -> None:
    assert dockerfile_problems(GOOD_DOCKERFILE) == []
    messages = [message for _, message in dockerfile_problems(GOOD_DOCKERFILE.replace("USER app", "USER 0"))]
    assert messages == ["runs as root (`USER 0`)"]
    none = GOOD_DOCKERFILE.replace("HEALTHCHECK CMD python -c \"print('ok')\"", "HEALTHCHECK NONE")
    assert [message for _, message in dockerfile_problems(none)] == ["has no HEALTHCHECK"]
    alpine = GOOD_DOCKERFILE.replace("-slim AS builder", "-alpine AS builder")
    assert [message for _, message in dockerfile_problems(alpine)] == [
        "runs on `python:3.12-alpine`, not an official `python:*-slim` image"
    ]
    shell = GOOD_DOCKERFILE.replace(
        'CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]', "CMD python -m http.server"
    )
    problems = dockerfile_problems(shell)
    assert [message for _, message in problems] == ["does not start the app with `fastapi run` (or uvicorn)"]
    assert problems[0][0] is not None and problems[0][0].line == 16
    no_command = GOOD_DOCKERFILE.replace('CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]', "")
    assert dockerfile_problems(no_command) == []  # compose or Kubernetes passes the command
    script = GOOD_DOCKERFILE.replace(
        'CMD ["uvicorn", "src.main:app", "--host", "0.0.0.0"]', 'CMD ["./start.sh"]'
    )
    assert dockerfile_problems(script) == []  # a script we cannot read is not judged
    assert dockerfile_problems(script, {"start.sh": "exec fastapi run src/main.py\n"}) == []
    assert [m for _, m in dockerfile_problems(script, {"start.sh": "exec python worker.py\n"})] == [
        "does not start the app with `fastapi run` (or uvicorn)"
    ]


def test_dockerfile_reader_follows_buildkit() -> None:
    """Directives, continuations with the escape character, comments, heredocs of every form."""
    text = (
        "# escape=`\n"
        "FROM python:3.12-slim\n"
        "RUN apt-get update `\n"
        "# a comment inside the continuation\n"
        "\n"
        "    && apt-get install -y curl\n"
        "COPY <<-EOF <<'two' /app/\n"
        "\tUSER root\n"
        "\tEOF\n"
        "USER nobody\n"
        "two\n"
        'RUN echo "<<NOT" && cat <<NOT_EITHER\n'
        "FROM ubuntu\n"
        "NOT_EITHER\n"
        "USER app\n"
    )
    assert [(i.line, i.keyword, i.arguments) for i in parse_dockerfile(text)] == [
        (2, "FROM", "python:3.12-slim"),
        (3, "RUN", "apt-get update && apt-get install -y curl"),
        (7, "COPY", "<<-EOF <<'two' /app/"),
        (12, "RUN", 'echo "<<NOT" && cat <<NOT_EITHER'),
        (15, "USER", "app"),
    ]
    assert heredocs_of('<<"EOF" 3<<-x cat<<no "<<no" <<"no') == [
        Heredoc("EOF", strip_tabs=False),
        Heredoc("x", strip_tabs=True),
    ]


def test_development_dockerfiles_are_left_out(tmp_path: Path) -> None:
    for name in ("Dockerfile", "Dockerfile.dev", "Dockerfile.prod", "api.Dockerfile", "test.Dockerfile"):
        (tmp_path / name).write_text("FROM python:3.12-slim\n")
    assert [path.name for path in dockerfiles(tmp_path)] == [
        "Dockerfile",
        "Dockerfile.prod",
        "api.Dockerfile",
    ]


def test_fr703_settings_defaults_read_from_the_environment_are_not_literals(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, run_rules: Any
) -> None:
    monkeypatch.setenv("SECRET_KEY", "from-the-environment")
    monkeypatch.setenv("API_TOKEN", "from-the-environment-too")
    pytester.makepyfile(
        envsettings="""
import os

from fastapi import FastAPI
from pydantic import Field
from pydantic_settings import BaseSettings
from starlette.config import Config

config = Config()


class Settings(BaseSettings):
    SECRET_KEY: str = config("SECRET_KEY")
    API_TOKEN: str = os.getenv("API_TOKEN", "")
    JWT_SECRET: str = Field("literal-jwt-secret")


settings = Settings()
app = FastAPI()
"""
    )
    run = run_rules("envsettings:app", "--fastapi-rules-select=FR703")
    messages = [f["message"] for f in run.findings("FR703")]
    assert len(messages) == 1, messages
    assert "settings field `Settings.JWT_SECRET` has a non-empty default secret" in messages[0]
