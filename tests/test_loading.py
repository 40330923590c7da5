"""Bad input gets one clear paragraph naming the problem and the fix, never a plugin traceback."""

from __future__ import annotations

import pytest

GOOD_APP = "from fastapi import FastAPI\napp = FastAPI()\n"


def run(pytester: pytest.Pytester, spec: str, *args: str) -> pytest.RunResult:
    return pytester.runpytest(f"--fastapi-app={spec}", "-p", "no:cacheprovider", *args)


def assert_no_plugin_traceback(result: pytest.RunResult) -> None:
    text = result.stdout.str() + result.stderr.str()
    assert "INTERNALERROR" not in text
    assert "pytest_fastapi_rules/" not in text


def assert_collection_error(result: pytest.RunResult, *patterns: str) -> None:
    assert result.ret == pytest.ExitCode.INTERRUPTED
    result.stdout.fnmatch_lines(["*ERROR collecting fastapi-rules*", *patterns])
    assert_no_plugin_traceback(result)


@pytest.mark.parametrize(
    ("spec", "expected"),
    [
        (
            "main",
            "*'main' is not of the form module:attribute. Did you mean --fastapi-app=main:app?*",
        ),
        ("src/main.py:app", "*Use the dotted module path, not a file path*"),
        ("main:", "*'main:' is not of the form module:attribute*"),
        ("main:app:extra", "*is not of the form module:attribute*"),
    ],
)
def test_malformed_spec(pytester: pytest.Pytester, spec: str, expected: str) -> None:
    pytester.makepyfile(main=GOOD_APP)
    assert_collection_error(run(pytester, spec), expected)


def test_empty_spec_is_a_usage_error(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fastapi-app=")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--fastapi-app is empty. Give the app as module:attribute*"])
    assert_no_plugin_traceback(result)


def test_module_that_does_not_exist(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(main=GOOD_APP)
    result = run(pytester, "mian:app")
    assert_collection_error(
        result,
        "*cannot import module 'mian' from *(no module named 'mian'). Check the spelling*fastapi_app_dir*",
    )


def test_missing_attribute_lists_what_the_module_has(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(main=GOOD_APP + "def create_app():\n    return FastAPI()\n")
    result = run(pytester, "main:ap")
    assert_collection_error(
        result,
        "*module 'main' (*main.py) has no attribute 'ap'. It defines: app (FastAPI app), create_app (function)*",
    )


def test_attribute_that_is_not_an_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(main=GOOD_APP + "settings = {'debug': True}\n")
    assert_collection_error(
        run(pytester, "main:settings"), "*main:settings is a dict, not a FastAPI app or a factory*"
    )


def test_factory_that_needs_arguments(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(main="from fastapi import FastAPI\ndef create_app(settings):\n    return FastAPI()\n")
    assert_collection_error(
        run(pytester, "main:create_app"), "*names a factory that needs arguments (settings)*"
    )


def test_factory_that_raises_shows_the_apps_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        main="from fastapi import FastAPI\ndef create_app():\n    raise RuntimeError('no config')\n"
    )
    result = run(pytester, "main:create_app")
    assert_collection_error(
        result,
        "*calling the app factory raised RuntimeError: no config*",
        "The app's own traceback:",
        "*main.py*line 3, in create_app*",
        "RuntimeError: no config",
    )


def test_factory_returning_something_else(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(main="def create_app():\n    return 42\n")
    assert_collection_error(run(pytester, "main:create_app"), "*the factory returned int, not a FastAPI*")


def test_app_that_fails_to_import_shows_its_own_traceback(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        settings="import os\nSECRET_KEY = os.environ['SECRET_KEY_THAT_IS_NOT_SET']\n",
        main="import settings\nfrom fastapi import FastAPI\napp = FastAPI()\n",
    )
    result = run(pytester, "main:app")
    assert_collection_error(
        result,
        "*importing 'main' raised KeyError: 'SECRET_KEY_THAT_IS_NOT_SET'. This is an error in the app's own code*",
        "The app's own traceback:",
        "*main.py*line 1, in <module>*",
        "*settings.py*line 2, in <module>*",
    )


def test_app_importing_a_missing_dependency(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(main="import not_installed_anywhere\nfrom fastapi import FastAPI\napp = FastAPI()\n")
    result = run(pytester, "main:app")
    assert_collection_error(
        result,
        "*the app imports 'not_installed_anywhere', which is not installed in this environment*",
    )


def test_app_dir_option_and_wrapped_asgi_app(pytester: pytest.Pytester) -> None:
    pytester.mkdir("backend")
    pytester.path.joinpath("backend", "service.py").write_text(
        "from fastapi import FastAPI\nfrom starlette.middleware.cors import CORSMiddleware\n"
        "api = FastAPI()\n@api.get('/api/v1/x', tags=['x'])\nasync def x() -> int:\n    return 1\n"
        "app = CORSMiddleware(api, allow_origins=['https://a.example'])\n"
    )
    result = run(pytester, "service:app", "--fastapi-app-dir=backend", "--fastapi-rules-select=FR201")
    result.assert_outcomes(passed=1)


def test_app_dir_that_does_not_exist(pytester: pytest.Pytester) -> None:
    result = run(pytester, "main:app", "--fastapi-app-dir=nowhere")
    assert_collection_error(result, "*--fastapi-app-dir */nowhere is not a folder*")


def test_users_tests_still_report_normally_with_a_broken_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(test_mine="def test_ok():\n    assert True\n")
    result = run(pytester, "nope:app", "--continue-on-collection-errors")
    result.assert_outcomes(passed=1, errors=1)


LIFESPAN_APP = """
from contextlib import asynccontextmanager
from fastapi import FastAPI

client = None


@asynccontextmanager
async def lifespan(app):
    try:
        raise ConnectionRefusedError("database at 10.0.0.1:5432 refused the connection")
    finally:
        client.close()  # the app's own cleanup fails too: the root cause must still be named
    yield


app = FastAPI(lifespan=lifespan)


@app.get("/api/v1/x", tags=["x"])
async def x() -> int:
    return 1
"""


def test_lifespan_crash_errors_the_items_that_need_the_running_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(main=LIFESPAN_APP)
    result = run(pytester, "main:app", "--fastapi-rules-select=FR101,FR201,FR501,FR502", "-rA")
    outcomes = result.parseoutcomes()
    assert outcomes["passed"] == 2  # FR101 and FR201 do not need the running app
    assert outcomes["errors"] == 2
    result.stdout.fnmatch_lines(
        [
            "*FR501 pool-pre-ping: app: cannot check, the app did not start.",
            "*The app's lifespan failed at startup with ConnectionRefusedError: database at 10.0.0.1:5432 refused "
            "the connection (and then AttributeError: 'NoneType' object has no attribute 'close')*",
            "The app's own traceback:",
            "*main.py*in lifespan*",
        ]
    )
    output = result.stdout.str()
    assert output.count("The app's own traceback:") == 1, "the traceback is shown once, then referred to"
    result.stdout.fnmatch_lines(
        [
            "*FR502 pool-configured: app: cannot check, the app did not start: *(the app's traceback is shown under fastapi-rules::FR501)*"
        ]
    )
    assert "asgi_lifespan" not in output and "pytest_fastapi_rules" not in output
    assert "INTERNALERROR" not in output


def test_skipped_items_point_at_the_route_not_the_plugin(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        main="from fastapi import FastAPI\napp = FastAPI()\n\n\n@app.get('/api/v1/x', tags=['x'])\nasync def x() -> int:\n    return 1\n"
    )
    result = run(pytester, "main:app", "--fastapi-rules-select=FR208", "-rs")
    result.stdout.fnmatch_lines(["SKIPPED [[]1[]] main.py:6: FR208 query-strings-bounded: *"])


ISOLATED_APP = """
import os
from contextlib import asynccontextmanager

from fastapi import FastAPI
from sqlalchemy import Integer
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


class Base(DeclarativeBase):
    pass


class Thing(Base):
    __tablename__ = "things"
    id: Mapped[int] = mapped_column(Integer, primary_key=True)


state = {}


@asynccontextmanager
async def lifespan(app):
    engine = create_async_engine(os.environ["APP_DATABASE_URL"], pool_pre_ping=True, pool_recycle=1800)
    state["engine"] = engine
    state["factory"] = async_sessionmaker(engine, expire_on_commit=False, autoflush=False)
    async with engine.begin() as connection:  # startup writes to the configured database
        await connection.run_sync(Base.metadata.create_all)
    yield
    await engine.dispose()


app = FastAPI(lifespan=lifespan)
"""


@pytest.mark.parametrize("configured", ["sqlite", "postgres-that-is-not-running"])
def test_starting_the_app_never_touches_its_configured_database(
    pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, configured: str
) -> None:
    configured_file = pytester.path / "configured.db"
    url = (
        f"sqlite+aiosqlite:///{configured_file}"
        if configured == "sqlite"
        else "postgresql+asyncpg://nobody@127.0.0.1:9/not_running"
    )
    if configured != "sqlite":
        pytest.importorskip("asyncpg")
    monkeypatch.setenv("APP_DATABASE_URL", url)
    pytester.makepyfile(isolated=ISOLATED_APP)
    result = run(pytester, "isolated:app", "--fastapi-rules-select=FR501,FR502,FR504", "-rA")
    if configured == "sqlite":  # FR502's pool table is about database servers, not SQLite files
        result.assert_outcomes(passed=2, skipped=1)
    else:
        result.assert_outcomes(passed=3)
    assert not configured_file.exists(), "the app's startup reached its configured database"
