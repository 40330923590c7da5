"""The fixtures for the user's own tests: `fastapi_app` and the SQL statement counters."""

from __future__ import annotations

import textwrap

import pytest

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
