"""The concurrency rules (FR4xx): FR401 and FR403, blocking calls reached from async code and
awaitables run concurrently on one database session, on small projects with their look-alikes.

Their variants share one parametrized test with the other source rules (test_rules_source.py); FR402,
the event loop watched at runtime, is judged with FR509 on one app in test_probes.py and by its
variant in test_probes_variants.py.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import line_of
from tests.source_projects import column_of, where, write

# -- FR401: what blocks and what does not ----------------------------------------------------------

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


# -- FR403: one session, several awaitables --------------------------------------------------------

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
