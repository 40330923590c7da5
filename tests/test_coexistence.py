"""The plugin beside the plugins users run (#17): pytest-cov, pytest-timeout, JUnit XML, pytest-html.

Each test skips, naming the plugin, when that plugin is not installed.
"""

from __future__ import annotations

import html
import importlib.util
import json
import re
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

import pytest

from pytest_fastapi_rules.coexistence import without_coverage_env
from pytest_fastapi_rules.production import launcher
from tests.conftest import BLOG, RunRules


def _needs(module: str, package: str) -> None:
    if importlib.util.find_spec(module) is None:
        pytest.skip(f"{package} is not installed: `pip install -e '.[test]'` installs it")


# -- coverage ------------------------------------------------------------------------------------

#: A user's test that runs after the rule items (the conftest orders it last) and reads one post
#: through the plugin's client: its requests run on the plugin's event-loop thread, as the probes'.
USER_TEST = """
def test_missing_post_is_404(fastapi_client):
    assert fastapi_client.get("/api/v1/posts/12345").status_code == 404
"""
USER_TEST_LAST = """
def pytest_collection_modifyitems(items):
    items.sort(key=lambda item: "test_user" in item.nodeid)
"""


#: The API rules and the query-count probes: a probe run without the production children.
PROBED_API = "--fastapi-rules-select=FR2,FR509,FR510"


def _coverage(pytester: pytest.Pytester, *args: str) -> dict[str, Any]:
    """Run pytest with pytest-cov on the app's package in a subprocess; the JSON coverage report."""
    report = pytester.path / "coverage.json"
    if report.exists():
        report.unlink()
    result = pytester.runpytest_subprocess(
        f"--fastapi-app={BLOG}",
        "--cov=src",
        f"--cov-report=json:{report}",
        "-p",
        "no:cacheprovider",
        *args,
    )
    assert report.exists(), result.stdout.str()
    assert result.ret in (0, 5), result.stdout.str()
    data: dict[str, Any] = json.loads(report.read_text())
    return data


def _executed(data: dict[str, Any], path: str) -> set[int]:
    return set(data["files"][path]["executed_lines"])


def _body_line(blog: Path, path: str, function: str) -> int:
    """The first line of ``function``'s body in the app's ``path``."""
    lines = (blog / path).read_text().splitlines()
    start = next(n for n, line in enumerate(lines, 1) if re.match(rf"\s*(async )?def {function}\b", line))
    return next(n for n, line in enumerate(lines, 1) if n > start and not line.rstrip().endswith(":"))


def test_coverage_counts_the_import_and_not_the_plugins_work(pytester: pytest.Pytester, blog: Path) -> None:
    """By default the run's coverage is what importing the app covers, to the line; with
    ``--fastapi-rules-count-coverage`` the probes' requests count too (66 % against 90 % on the
    blog sample when this was written). A user's test run after the rule items still counts."""
    _needs("pytest_cov", "pytest-cov")
    service = "src/posts/service.py"
    list_posts = _body_line(blog, service, "list_posts")  # the probes list posts; no user test does
    get_post = _body_line(blog, service, "get_post")

    imported = _coverage(pytester, "--co")
    default = _coverage(pytester)
    # The API rules' probes are enough to show the opt-in (and keep CI's slowest test shorter).
    counted = _coverage(pytester, "--fastapi-rules-count-coverage", PROBED_API)

    assert default["totals"]["percent_covered"] == imported["totals"]["percent_covered"]
    assert {f: _executed(default, f) for f in default["files"]} == {
        f: _executed(imported, f) for f in imported["files"]
    }
    assert list_posts not in _executed(default, service)
    assert list_posts in _executed(counted, service)
    assert counted["totals"]["percent_covered"] >= default["totals"]["percent_covered"] + 10

    # The user's own test, after the rule items paused and resumed coverage, is measured, requests
    # on the plugin's loop thread included; the probes still are not.
    (pytester.path / "tests").mkdir()
    (pytester.path / "tests" / "test_user.py").write_text(USER_TEST)
    (pytester.path / "conftest.py").write_text(USER_TEST_LAST)
    with_user = _coverage(pytester, "tests", PROBED_API)
    assert get_post in _executed(with_user, service)
    assert list_posts not in _executed(with_user, service)


def test_coverage_ini_key_opts_in(pytester: pytest.Pytester, blog: Path) -> None:
    """``fastapi_rules_count_coverage = true`` in the ini is the same opt-in as the flag."""
    _needs("pytest_cov", "pytest-cov")
    service = "src/posts/service.py"
    ini = (blog / "pyproject.toml").read_text()
    (blog / "pyproject.toml").write_text(
        ini.replace(
            "[tool.pytest.ini_options]\n", "[tool.pytest.ini_options]\nfastapi_rules_count_coverage = true\n"
        )
    )
    counted = _coverage(pytester, "--fastapi-rules-select=FR211")
    # FR211 asks every GET /{id} route for an id that does not exist: get_post runs.
    assert _body_line(blog, service, "get_post") in _executed(counted, service)


def test_children_do_not_inherit_coverage_variables(monkeypatch: pytest.MonkeyPatch) -> None:
    """pytest-cov (COV_CORE_*) and coverage.py (COVERAGE_PROCESS_START/_CONFIG) start measuring in
    a child through its environment: the plugin's children are started without them, unless
    coverage is asked to count the plugin's work."""
    monkeypatch.setenv("COV_CORE_SOURCE", "src")
    monkeypatch.setenv("COV_CORE_DATAFILE", "/tmp/.coverage")
    monkeypatch.setenv("COVERAGE_PROCESS_START", "/tmp/.coveragerc")
    monkeypatch.setenv("COVERAGE_PROCESS_CONFIG", "{}")
    monkeypatch.setenv("FASTAPI_RULES_KEPT", "yes")
    seen: list[dict[str, str]] = []

    class Stopped(Exception):
        pass

    def fake_popen(*args: Any, env: dict[str, str], **kwargs: Any) -> Any:
        seen.append(env)
        raise Stopped

    monkeypatch.setattr(subprocess, "Popen", fake_popen)
    for count in (False, True):
        with pytest.raises(Stopped):
            launcher.ChildProcess("json.tool", [], {"ENVIRONMENT": "production"}, 1.0, count_coverage=count)
    stripped, kept = seen
    coverage_names = {
        "COV_CORE_SOURCE",
        "COV_CORE_DATAFILE",
        "COVERAGE_PROCESS_START",
        "COVERAGE_PROCESS_CONFIG",
    }
    assert not coverage_names & stripped.keys()
    assert stripped["FASTAPI_RULES_KEPT"] == "yes" and stripped["ENVIRONMENT"] == "production"
    assert coverage_names <= kept.keys()
    assert without_coverage_env({"COV_CORE_X": "1", "COVERAGE_FILE": "f"}) == {"COVERAGE_FILE": "f"}


# -- pytest-timeout ------------------------------------------------------------------------------

SLOW_START = '''
"""The blog app, whose lifespan takes 1.5 s to start: more than a whole --timeout=1."""
import asyncio
from contextlib import asynccontextmanager

from src.main import create_application, lifespan


@asynccontextmanager
async def slow_lifespan(app):
    await asyncio.sleep(1.5)
    async with lifespan(app):
        yield


app = create_application()
app.router.lifespan_context = slow_lifespan
'''
SLOW_ITEM = """
import time

import pytest


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_call(item):
    if item.nodeid.endswith("::FR101"):
        time.sleep(3)  # this item's own work, timed like any test's
"""


def test_timeout_times_items_not_the_shared_work(
    pytester: pytest.Pytester, blog: Path, run_rules: RunRules
) -> None:
    """The lifespan start, the probe run and the production children are done before the items'
    timed phases: with ``--timeout=1`` and a lifespan that alone takes 1.5 s, FR102 (the first item
    that needs them) passes; an item that is itself slow still times out."""
    _needs("pytest_timeout", "pytest-timeout")
    (blog / "slow_start.py").write_text(SLOW_START)
    # A plugin rather than a conftest: the rootdir's conftest hooks do not reach the rule items.
    (blog / "slow_item.py").write_text(SLOW_ITEM)
    pytester.syspathinsert()
    run = run_rules("slow_start:app", "-p", "slow_item", "--timeout=1", "--fastapi-rules-select=FR1")
    outcomes = {r["code"]: r["outcome"] for r in run.report["results"]}
    assert outcomes["FR102"] == "passed", run.output
    assert outcomes["FR108"] == "passed", run.output  # waits for a production child
    assert outcomes["FR101"] == "error", run.output
    (fr101,) = run.results_for("FR101")
    # pytest-timeout's own words: "Timeout (>1.0s) from pytest-timeout." (2.2+), "Timeout >1.0s" (2.1)
    assert re.match(r"Failed: Timeout \(?>1\.0s", fr101["message"]), fr101["message"]
    assert [r["code"] for r in run.report["results"] if r["outcome"] in ("failed", "error")] == ["FR101"]


# -- JUnit XML and pytest-html -------------------------------------------------------------------

WARNED = "variants.fr109_unversioned_alias:app"
BASELINED = "variants.fr201_sync_endpoint:app"


def _properties(case: ET.Element) -> dict[str, str]:
    return {p.get("name", ""): p.get("value", "") for p in case.iter("property")}


def _junit_cases(path: Path, code: str) -> list[ET.Element]:
    root = ET.parse(path).getroot()
    return [case for case in root.iter("testcase") if _properties(case).get("fastapi_rule_code") == code]


def test_junitxml_carries_warned_outcome_and_message(blog: Path, run_rules: RunRules) -> None:
    """A warned item is a pass to JUnit XML: its properties say it warned and why, and its
    system-out (``junit_logging = system-out``) holds the finding."""
    xml = blog / "junit.xml"
    run = run_rules(
        WARNED, "--fastapi-rules-select=FR109", f"--junitxml={xml}", "-o", "junit_logging=system-out"
    )
    warned = [r for r in run.results_for("FR109") if r["outcome"] == "warning"]
    assert warned, run.output
    by_target = {_properties(case)["fastapi_rule_target"]: case for case in _junit_cases(xml, "FR109")}
    for result in warned:
        case = by_target[result["target"]]
        properties = _properties(case)
        assert properties["fastapi_rules_outcome"] == "warning"
        assert properties["fastapi_rules_message"] == result["message"]
        assert properties["fastapi_rules_message"].startswith("FR109 versioned-prefix-and-tags: ")
        out = "".join(node.text or "" for node in case.iter("system-out"))
        assert f"fastapi-rules: warning: {result['message']}" in out
        assert result["findings"][0]["message"] in out
    passed = [r for r in run.results_for("FR109") if r["outcome"] == "passed"]
    for result in passed:
        case = by_target[result["target"]]
        assert _properties(case)["fastapi_rules_outcome"] == "passed"
        assert "fastapi-rules:" not in "".join(node.text or "" for node in case.iter("system-out"))


def test_junitxml_carries_baselined_outcome_and_message(blog: Path, run_rules: RunRules) -> None:
    """A baselined item (a known finding, a pass) says so in its properties and output."""
    baseline = blog / "baseline.json"
    recorded = run_rules(
        BASELINED,
        "--fastapi-rules-select=FR201",
        f"--fastapi-rules-baseline={baseline}",
        "--fastapi-rules-update-baseline",
    )
    assert baseline.exists(), recorded.output
    xml = blog / "junit.xml"
    run = run_rules(
        BASELINED,
        "--fastapi-rules-select=FR201",
        f"--fastapi-rules-baseline={baseline}",
        f"--junitxml={xml}",
        "-o",
        "junit_logging=system-out",
    )
    assert run.result.ret == 0, run.output
    (result,) = [r for r in run.results_for("FR201") if r["outcome"] == "baselined"]
    (case,) = [
        c for c in _junit_cases(xml, "FR201") if _properties(c)["fastapi_rule_target"] == result["target"]
    ]
    properties = _properties(case)
    assert properties["fastapi_rules_outcome"] == "baselined"
    assert properties["fastapi_rules_message"] == result["message"]
    assert "is a sync `def`" in properties["fastapi_rules_message"]
    out = "".join(node.text or "" for node in case.iter("system-out"))
    assert f"fastapi-rules: baselined: {result['message']}" in out
    assert "FR201 [baselined]" in out


def _html_logs(path: Path) -> dict[str, str]:
    """``{node id: log}`` of a pytest-html report (its data, an escaped JSON attribute)."""
    match = re.search(r'data-jsonblob="([^"]*)"', path.read_text())
    assert match, "pytest-html's report has no data blob"
    data = json.loads(html.unescape(match.group(1)))
    # The log is HTML-escaped once more inside the data.
    return {nodeid: html.unescape("".join(e["log"] for e in runs)) for nodeid, runs in data["tests"].items()}


def test_pytest_html_shows_the_warning(blog: Path, run_rules: RunRules) -> None:
    """pytest-html shows an item's output in its log: a warned item's findings are there."""
    _needs("pytest_html", "pytest-html")
    report = blog / "report.html"
    run = run_rules(WARNED, "--fastapi-rules-select=FR109", f"--html={report}", "--self-contained-html")
    warned = [r for r in run.results_for("FR109") if r["outcome"] == "warning"]
    assert warned and report.exists(), run.output
    logs = _html_logs(report)
    for result in warned:
        log = logs[result["nodeid"]]
        assert f"fastapi-rules: warning: {result['message']}" in log
        for finding in result["findings"]:
            assert f"FR109 [warning] {finding['target']}: {finding['message']}" in log
    passed = [r for r in run.results_for("FR109") if r["outcome"] == "passed"]
    assert passed and all("fastapi-rules:" not in logs[r["nodeid"]] for r in passed)
