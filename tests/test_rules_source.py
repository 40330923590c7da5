"""The source and project rules together (FR302-FR307, FR401, FR403, FR602, FR703, FR801, FR804):
the tests whose one run judges rules of several families.

The conforming blog passes them all; each violating variant fails exactly its rule at the expected
place (one parametrized test across the families); the layer and Pydantic look-alikes, and the code
index that decides what belongs to the app, are judged for several families at once. Each family's
own tests of these rules are in its file (test_rules_layers.py, test_rules_concurrency.py,
test_rules_security.py, test_rules_stack.py); FR602 has no test of its own beside these.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.conftest import line_of, only
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
