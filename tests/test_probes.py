"""The probes: the conforming app passes every probe rule, its database is untouched, and the
process is left as it was; each violating variant fails exactly its rule."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import BLOG, RulesRun

PROBE_CODES = (
    "FR102",
    "FR103",
    "FR106",
    "FR107",
    "FR205",
    "FR210",
    "FR211",
    "FR509",
    "FR510",
    "FR704",
    "FR705",
    "FR806",
)

#: Rows in the app's own configured database before the plugin runs (it must not change).
SEED_APP_DB = """
import asyncio, sys
from src.database import Base, sessionmanager
from src.config import get_settings
from src.users.models import User
from src.posts.models import Post

async def main():
    sessionmanager.init(get_settings().DATABASE_URL)
    await sessionmanager.create_all()
    async with sessionmanager.session_factory() as session:
        alice = User(email="alice@example.com", username="alice", hashed_password="x" * 60)
        session.add(alice)
        await session.flush()
        session.add_all([Post(title=f"t{i}", content="c", author_id=alice.id) for i in range(3)])
        await session.commit()
    await sessionmanager.close()

asyncio.run(main())
"""

#: A conftest in the sandbox that records, at the end of the session, what the probes must restore.
STATE_CONFTEST = """
import json, os
import pytest

_before = {}

def pytest_sessionstart(session):
    _before["environ"] = dict(os.environ)

def pytest_sessionfinish(session):
    import fastapi.routing
    import sqlalchemy
    import sqlalchemy.ext.asyncio
    from sqlalchemy.engine import Dialect, Engine
    state = {"loaded": "src.main" in __import__("sys").modules}
    if state["loaded"]:
        from src.main import app
        import src.database
        state["overrides"] = [repr(k) for k in app.dependency_overrides]
    def count(listeners):
        return sum(len(fns) for fns in listeners._clslevel.values())

    state["cursor_listeners"] = count(Engine.dispatch.before_cursor_execute)
    state["connect_listeners"] = count(Dialect.dispatch.do_connect)
    state["create_async_engine"] = getattr(sqlalchemy.ext.asyncio.create_async_engine, "__module__", "")
    state["create_engine"] = getattr(sqlalchemy.create_engine, "__module__", "")
    state["serialize_response"] = getattr(fastapi.routing.serialize_response, "__module__", "")
    state["environ_changed"] = sorted(
        k for k in set(_before["environ"]) | set(os.environ)
        if _before["environ"].get(k) != os.environ.get(k) and k != "PYTEST_CURRENT_TEST"
    )
    with open("probe-state.json", "w") as f:
        json.dump(state, f)
"""


def only_codes(run: RulesRun) -> list[tuple[str, str]]:
    return sorted({(r["code"], r["target"]) for r in run.failing()})


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def line_of(path: Path, pattern: str) -> int:
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"{pattern!r} not in {path}")


# -- the conforming app ----------------------------------------------------------------------------


def test_conforming_app_passes_every_probe_rule_and_its_database_is_untouched(
    blog: Path, run_rules: Any, pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    subprocess.run([sys.executable, "-c", SEED_APP_DB], cwd=blog, check=True, env=_env(pytester))
    app_db = Path(os.environ["DATABASE_URL"].split("///", 1)[1])
    before = sha256(app_db)
    pytester.makeconftest(STATE_CONFTEST)
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(scratch))

    run = run_rules(BLOG)

    failing = [r for r in run.failing() if r["code"] in PROBE_CODES]
    assert failing == [], run.output
    for code in ("FR102", "FR106", "FR107", "FR806"):
        assert run.outcomes(code) == {"app": "passed"}, (code, run.output)
    # Every GET route was measured at both sizes, protected ones through the current-user override.
    assert set(run.outcomes("FR509").values()) == {"passed"}
    assert run.outcomes("FR509")["GET /api/v1/users/me"] == "passed"
    assert run.outcomes("FR704")["POST /api/v1/posts"] == "passed"
    assert run.outcomes("FR705") == {"POST /api/v1/auth/register": "passed"}
    assert run.outcomes("FR211")["GET /api/v1/posts/{post_id}"] == "passed"
    assert run.outcomes("FR210")["POST /api/v1/posts"] == "passed"
    assert run.outcomes("FR205")["DELETE /api/v1/posts/{post_id}"] == "passed"
    assert run.outcomes("FR103") == {"app": "passed"}

    # Nothing lost: the app's configured SQLite database is byte-for-byte what it was.
    assert sha256(app_db) == before
    assert not app_db.with_name(app_db.name + "-journal").exists()
    assert not list(scratch.glob("fastapi-rules-*")), "the probes left their temporary database behind"

    state = json.loads((blog / "probe-state.json").read_text())
    assert state["overrides"] == []
    assert state["cursor_listeners"] == 0 and state["connect_listeners"] == 0
    assert state["create_async_engine"] == "sqlalchemy.ext.asyncio.engine"
    assert state["create_engine"] == "sqlalchemy.engine.create"
    assert state["serialize_response"] == "fastapi.routing"
    assert state["environ_changed"] == []


def _env(pytester: pytest.Pytester) -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(pytester.path)}


# -- FR806: an override the user's tests left behind -------------------------------------------------


def test_override_left_by_a_test_is_reported_and_probes_ignore_it(
    blog: Path, run_rules: Any, pytester: pytest.Pytester
) -> None:
    pytester.makepyfile(
        test_leaky="""
        from src.database import get_db
        from src.main import app


        async def fake_db():
            yield None


        def test_uses_fake_db():
            app.dependency_overrides[get_db] = fake_db
        """
    )
    run = run_rules(BLOG, "--fastapi-rules-select=FR806,FR509,FR211")
    (finding,) = run.findings("FR806")
    assert "dependency `src.database.get_db` is now overridden by `test_leaky.fake_db`" in finding["message"]
    assert finding["location"]["file"] == "test_leaky.py"
    # The probes ran against the app as loaded, not against the leftover fake session.
    assert set(run.outcomes("FR509").values()) == {"passed"}
    assert set(run.outcomes("FR211").values()) == {"passed"}
