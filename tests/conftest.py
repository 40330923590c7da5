"""Shared helpers: run the plugin in a pytester sandbox against a sample app and read its report
(an item's findings, the line a finding must point at), whichever family's rules a test judges."""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import json
import os
import re
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# Imported once here so pytester's per-run module snapshots do not re-import the heavy libraries.
import fastapi  # noqa: F401
import pydantic  # noqa: F401
import pytest
import sqlalchemy
import sqlalchemy.ext.asyncio  # noqa: F401

import pytest_fastapi_rules.items
import pytest_fastapi_rules.rules  # noqa: F401

# asyncpg's C protocol module, imported for the first time inside a pytester run, is imported again
# after pytester restores sys.modules, and that crashes the interpreter: import it once, here.
with contextlib.suppress(ImportError):
    import asyncpg  # noqa: F401


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(part) for part in text.split(".")[:3] if part.isdigit())


OLD_FASTAPI = _version(importlib.metadata.version("fastapi")) < (0, 121, 2)


def installed(package: str) -> tuple[int, ...]:
    """The installed version of ``package``, for tests whose subject needs a newer one than the
    lowest the plugin supports (CI runs the lowest too)."""
    return _version(importlib.metadata.version(package))


SAMPLE_APPS = Path(__file__).resolve().parent.parent / "sample_apps"
SHAPES = SAMPLE_APPS / "shapes"
BLOG = "src.main:app"


@dataclass
class RulesRun:
    """One plugin run: pytest's result plus the parsed JSON report."""

    result: pytest.RunResult
    report: dict[str, Any]

    @property
    def output(self) -> str:
        return self.result.stdout.str()

    def results_for(self, code: str) -> list[dict[str, Any]]:
        return [r for r in self.report["results"] if r["code"] == code]

    def outcomes(self, code: str) -> dict[str, str]:
        """``{target: outcome}`` of every item of rule ``code``."""
        return {r["target"]: r["outcome"] for r in self.results_for(code)}

    def failing(self) -> list[dict[str, Any]]:
        return [r for r in self.report["results"] if r["outcome"] in ("failed", "warning", "error")]

    def findings(self, code: str) -> list[dict[str, Any]]:
        return [f for r in self.results_for(code) for f in r["findings"]]


RunRules = Callable[..., RulesRun]


# -- reading a run's findings ----------------------------------------------------------------------


def line_of(path: Path, pattern: str) -> int:
    """1-based line of the first line of ``path`` matching ``pattern`` (so tests survive edits)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"{pattern!r} not in {path}")


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    """The one item of ``items`` (results or findings), with a readable error if there are more."""
    assert len(items) == 1, items
    return items[0]


def messages(run: RulesRun, code: str) -> list[str]:
    """The messages of every finding of rule ``code``, sorted."""
    return sorted(f["message"] for f in run.findings(code))


def only_failure(run: RulesRun) -> dict[str, Any]:
    """The single failing (or warning) item of a run, with a readable error if there are more."""
    failing = run.failing()
    summary = [(r["code"], r["target"], r["outcome"], r["message"]) for r in failing]
    assert len(failing) == 1, summary
    return failing[0]


def assert_located(finding: dict[str, Any], file: str, line: int | None = None) -> None:
    """The finding points at ``file`` (and at ``line``, when given)."""
    location = finding["location"]
    assert location is not None, finding
    assert location["file"] == file, location
    if line is not None:
        assert location["line"] == line, location


@pytest.fixture
def pytester(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> pytest.Pytester:
    """pytester, whose nested runs (which have no ini of their own) configure pytest-asyncio's
    default loop scope, so that it does not warn in every run."""
    monkeypatch.setenv("PYTEST_ADDOPTS", "-o asyncio_default_fixture_loop_scope=function")
    # On CI, pytest prints whole failure texts in the short summary; nested runs should print the
    # same locally and on CI, so that tests about the output do not depend on where they run.
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("BUILD_NUMBER", raising=False)
    return pytester


@pytest.fixture
def app_env(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The environment the sample apps need: a secret, and a database nobody else uses."""
    monkeypatch.setenv("SECRET_KEY", "test-secret-key-for-the-sample-apps-0123456789")
    monkeypatch.setenv("DATABASE_URL", f"sqlite+aiosqlite:///{tmp_path / 'app.db'}")
    monkeypatch.delenv("ENVIRONMENT", raising=False)


@pytest.fixture
def blog(pytester: pytest.Pytester, app_env: None) -> Path:
    """A copy of the conforming sample app (with its violating variants) as pytester's rootdir."""
    shutil.copytree(SAMPLE_APPS / "blog", pytester.path, dirs_exist_ok=True)
    return pytester.path


@pytest.fixture
def run_rules(pytester: pytest.Pytester) -> RunRules:
    """Run pytest with the plugin on ``app`` and return a :class:`RulesRun`."""

    def run(app: str, *args: str) -> RulesRun:
        if OLD_FASTAPI and not any(a.startswith("--fastapi-rules-select") for a in args):
            # FR801 rightly fails on the old FastAPI line CI also runs; the other rules are under test.
            args = (*args, "--fastapi-rules-ignore=FR801")
        report_path = pytester.path / "fastapi-rules-report.json"
        if report_path.exists():
            report_path.unlink()
        result = pytester.runpytest(
            f"--fastapi-app={app}",
            f"--fastapi-rules-json={report_path}",
            "-p",
            "no:cacheprovider",
            "-rA",
            *args,
        )
        report = json.loads(report_path.read_text()) if report_path.exists() else {"results": []}
        return RulesRun(result=result, report=report)

    return run


@pytest.fixture
def shapes(pytester: pytest.Pytester, app_env: None) -> Path:
    """The schema-shape apps (``sample_apps/shapes``) as pytester's rootdir; one module per shape."""
    for module in SHAPES.glob("*.py"):
        shutil.copy(module, pytester.path / module.name)
    return pytester.path


# -- PostgreSQL ------------------------------------------------------------------------------------

POSTGRES_ENV = "FASTAPI_RULES_TEST_POSTGRES_URL"


@pytest.fixture
def postgres_url() -> str:
    """The PostgreSQL server CI provides (``FASTAPI_RULES_TEST_POSTGRES_URL``), or a skip."""
    url = os.environ.get(POSTGRES_ENV)
    if not url:
        pytest.skip(f"{POSTGRES_ENV} is not set: no PostgreSQL server to run the probes against")
    try:
        _pg(url, "SELECT 1")
    except Exception as exc:  # noqa: BLE001 - any failure means: no server to test with
        pytest.skip(f"PostgreSQL at {POSTGRES_ENV} is unreachable: {type(exc).__name__}: {exc}")
    return url


def _pg(url: str, *statements: str) -> list[Any]:
    """Run statements (autocommit) on the server of ``url``; returns the last one's rows."""
    import asyncio

    import asyncpg
    from sqlalchemy.engine import make_url

    plain = make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)

    async def go() -> list[Any]:
        connection = await asyncpg.connect(plain, ssl=False)
        try:
            rows: list[Any] = []
            for statement in statements:
                rows = await connection.fetch(statement)
            return [tuple(row) for row in rows]
        finally:
            await connection.close()

    return asyncio.run(go())


@pytest.fixture
def app_database(postgres_url: str, monkeypatch: pytest.MonkeyPatch) -> Any:
    """A PostgreSQL database this test creates as "the app's own", with rows; dropped afterwards."""
    from sqlalchemy.engine import make_url

    name = f"fastapi_rules_test_app_{os.getpid()}_{hashlib.sha1(os.urandom(8)).hexdigest()[:6]}"
    _pg(postgres_url, f'CREATE DATABASE "{name}"')
    url = make_url(postgres_url).set(database=name)
    monkeypatch.setenv("DATABASE_URL", url.render_as_string(hide_password=False))
    try:
        yield url
    finally:
        _pg(postgres_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
