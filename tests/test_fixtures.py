"""The fixtures for the user's own tests: `fastapi_app` and the SQL statement counters."""

from __future__ import annotations

import os
import textwrap
from typing import Any

import pytest

from tests.conftest import _pg

APP = """
    from fastapi import FastAPI
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine("sqlite+aiosqlite://")
    app = FastAPI()


    @app.get("/api/v1/one", tags=["demo"])
    async def one() -> int:
        async with engine.connect() as conn:
            return (await conn.execute(text("SELECT 1"))).scalar_one()


    @app.get("/api/v1/many", tags=["demo"])
    async def many() -> int:
        total = 0
        async with engine.connect() as conn:
            for number in range(3):  # one query per row: what the counters are for
                total += (await conn.execute(text(f"SELECT {number}"))).scalar_one()
        return total
"""

USER_TESTS = """
    import httpx
    import pytest

    import countapp


    def test_the_same_app(fastapi_app):
        assert fastapi_app is countapp.app


    async def get(app, path):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://test") as client:
            return await client.get(path)


    @pytest.mark.asyncio
    async def test_one_query(fastapi_app, fastapi_assert_num_queries):
        with fastapi_assert_num_queries(1) as captured:
            response = await get(fastapi_app, "/api/v1/one")
        assert response.json() == 1
        assert list(captured) == ["SELECT 1"]


    @pytest.mark.asyncio
    async def test_many_within_budget(fastapi_app, fastapi_assert_max_num_queries):
        with fastapi_assert_max_num_queries(3):
            await get(fastapi_app, "/api/v1/many")


    @pytest.mark.asyncio
    async def test_many_over_budget(fastapi_app, fastapi_assert_max_num_queries):
        with fastapi_assert_max_num_queries(2):
            await get(fastapi_app, "/api/v1/many")


    def test_sync_exact_count_off(fastapi_assert_num_queries):
        from sqlalchemy import create_engine, text

        engine = create_engine("sqlite://")
        with fastapi_assert_num_queries(2):
            with engine.connect() as conn:
                conn.execute(text("SELECT 42"))
"""


def test_fixtures_count_the_statements_and_list_them(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(countapp=textwrap.dedent(APP), test_user=textwrap.dedent(USER_TESTS))
    result = pytester.runpytest(
        "--fastapi-app=countapp:app", "-p", "no:cacheprovider", "-k", "test_", "test_user.py"
    )
    result.assert_outcomes(passed=3, failed=2)
    output = result.stdout.str()
    assert "expected at most 2 SQL statements, the block ran 3:" in output
    assert "  1. SELECT 0\n" in output and "  3. SELECT 2\n" in output
    assert "expected 2 SQL statements, the block ran 1:\n  1. SELECT 42" in output
    # The counting listener is gone after each block: the last failure lists only its own statement.
    assert "SELECT 2\n  4." not in output


def test_fixtures_exist_only_when_the_run_names_an_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_plain="def test_x(fastapi_assert_num_queries):\n    pass\n")
    result = pytester.runpytest("-p", "no:cacheprovider")
    result.assert_outcomes(errors=1)
    result.stdout.fnmatch_lines(["*fixture 'fastapi_assert_num_queries' not found*"])


NOTES_APP = """
    import os
    from collections.abc import AsyncIterator

    from fastapi import Depends, FastAPI
    from pydantic import BaseModel
    from sqlalchemy import String, select
    from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

    # The user's own database: the client's tests must never create or touch it.
    engine = create_async_engine(os.environ.get("DATABASE_URL", "sqlite+aiosqlite:///./real.db"))
    SessionLocal = async_sessionmaker(engine, expire_on_commit=False)


    class Base(DeclarativeBase):
        pass


    class Note(Base):
        __tablename__ = "notes"
        id: Mapped[int] = mapped_column(primary_key=True)
        text: Mapped[str] = mapped_column(String(100))


    class NoteIn(BaseModel):
        text: str


    async def get_db() -> AsyncIterator[AsyncSession]:
        async with SessionLocal() as session:
            yield session


    def get_prefix() -> str:
        return ""


    app = FastAPI()


    @app.post("/api/v1/notes", status_code=201, tags=["notes"])
    async def create_note(body: NoteIn, db: AsyncSession = Depends(get_db)) -> int:
        note = Note(text=body.text)
        db.add(note)
        await db.commit()
        return note.id


    @app.get("/api/v1/notes", tags=["notes"])
    async def list_notes(db: AsyncSession = Depends(get_db), prefix: str = Depends(get_prefix)) -> list[str]:
        return [prefix + text for text in await db.scalars(select(Note.text).order_by(Note.id))]
"""

CLIENT_TESTS = """
    import os

    import pytest

    import notesapp


    def test_1_sync_client_writes_to_its_own_database(fastapi_client, fastapi_app):
        assert fastapi_client.post("/api/v1/notes", json={"text": "hello"}).status_code == 201
        fastapi_app.dependency_overrides[notesapp.get_prefix] = lambda: "> "
        assert fastapi_client.get("/api/v1/notes").json() == ["> hello"]


    def test_2_each_test_starts_empty_and_overrides_are_put_back(fastapi_client, fastapi_app):
        assert fastapi_app.dependency_overrides == {}
        assert fastapi_client.get("/api/v1/notes").json() == []


    @pytest.mark.asyncio
    async def test_3_async_client(fastapi_async_client, fastapi_assert_num_queries):
        response = await fastapi_async_client.post("/api/v1/notes", json={"text": "async"})
        assert response.status_code == 201
        with fastapi_assert_num_queries(1):
            assert (await fastapi_async_client.get("/api/v1/notes")).json() == ["async"]


    def test_4_the_users_database_was_never_created():
        assert not os.path.exists("real.db")
"""


def test_clients_run_the_app_on_a_fresh_throwaway_database_per_test(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(notesapp=textwrap.dedent(NOTES_APP), test_notes=textwrap.dedent(CLIENT_TESTS))
    result = pytester.runpytest(
        "--fastapi-app=notesapp:app", "-p", "no:cacheprovider", "-k", "test_", "test_notes.py"
    )
    result.assert_outcomes(passed=4)
    assert not (pytester.path / "real.db").exists()
    # Beside the rules' own items (the probe run starts and stops the same app): still isolated.
    beside = pytester.runpytest("--fastapi-app=notesapp:app", "-p", "no:cacheprovider", "-rA")
    for name in ("test_1_sync", "test_2_each", "test_3_async", "test_4_the_users"):
        assert any(line.startswith(f"PASSED test_notes.py::{name}") for line in beside.outlines), (
            beside.stdout.str()
        )
    assert not (pytester.path / "real.db").exists()


def test_clients_on_a_postgres_app_use_a_throwaway_database_beside_it(
    pytester: pytest.Pytester, app_database: Any, postgres_url: str
) -> None:
    pytester.makepyfile(notesapp=textwrap.dedent(NOTES_APP), test_notes=textwrap.dedent(CLIENT_TESTS))
    result = pytester.runpytest(
        "--fastapi-app=notesapp:app", "-p", "no:cacheprovider", "-k", "test_", "test_notes.py"
    )
    result.assert_outcomes(passed=4)
    app_url = app_database.render_as_string(hide_password=False)
    assert _pg(app_url, "SELECT tablename FROM pg_tables WHERE schemaname = 'public'") == []
    leftovers = _pg(
        postgres_url, f"SELECT datname FROM pg_database WHERE datname LIKE 'fastapi_rules_{os.getpid()}_%'"
    )
    assert leftovers == []


ASYNC_MODES_TESTS = """
    import pytest


    async def test_auto_mode(fastapi_async_client, fastapi_assert_num_queries):
        assert (await fastapi_async_client.post("/api/v1/notes", json={"text": "a"})).status_code == 201
        with fastapi_assert_num_queries(1):
            assert (await fastapi_async_client.get("/api/v1/notes")).json() == ["a"]
"""

ANYIO_TESTS = """
    import pytest


    @pytest.fixture
    def anyio_backend():
        return "asyncio"


    @pytest.mark.anyio
    async def test_under_anyio(fastapi_async_client, fastapi_app):
        assert (await fastapi_async_client.post("/api/v1/notes", json={"text": "b"})).status_code == 201
        assert (await fastapi_async_client.get("/api/v1/notes")).json() == ["b"]
        assert fastapi_app.title == "FastAPI"
"""


@pytest.mark.parametrize(
    ("tests", "extra"),
    [(ASYNC_MODES_TESTS, ("-o", "asyncio_mode=auto")), (ANYIO_TESTS, ("-p", "no:asyncio"))],
    ids=["pytest-asyncio-auto", "anyio"],
)
def test_async_client_under_pytest_asyncio_auto_mode_and_anyio(
    pytester: pytest.Pytester, tests: str, extra: tuple[str, ...]
) -> None:
    pytester.makepyfile(notesapp=textwrap.dedent(NOTES_APP), test_modes=textwrap.dedent(tests))
    result = pytester.runpytest(
        "--fastapi-app=notesapp:app", "-p", "no:cacheprovider", "-k", "test_", "test_modes.py", *extra
    )
    result.assert_outcomes(passed=1)
