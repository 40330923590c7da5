"""Inline suppressions (`# noqa: FR201`), unused ones, and --fastapi-rules-add-noqa."""

from __future__ import annotations

import json

import pytest

from tests.conftest import RunRules

APP = """
from fastapi import FastAPI

app = FastAPI()


@app.get("/api/v1/users", tags=["users"])
def list_users() -> list[int]:  # noqa: FR201
    return []


@app.get("/api/v1/posts", tags=["posts"])  # noqa: E501, FR201
def list_posts() -> list[int]:
    return []


@app.get("/api/v1/tags", tags=["tags"])
def list_tags() -> list[int]:  # noqa
    return []


@app.get("/api/v1/ok", tags=["ok"])
async def ok() -> list[int]:  # noqa: FR201, FR999
    return []
"""


def test_noqa_suppresses_its_codes_on_the_def_or_a_decorator_line(
    pytester: pytest.Pytester, run_rules: RunRules
) -> None:
    pytester.makepyfile(noqaapp=APP)
    sarif = pytester.path / "rules.sarif"
    run = run_rules("noqaapp:app", "--fastapi-rules-select=FR201", f"--fastapi-rules-sarif={sarif}")
    assert run.outcomes("FR201") == {
        "GET /api/v1/users": "suppressed",  # on the def line
        "GET /api/v1/posts": "suppressed",  # on the decorator, beside another tool's code
        "GET /api/v1/tags": "failed",  # a bare noqa says nothing about our rules
        "GET /api/v1/ok": "passed",
    }, run.output
    results = json.loads(sarif.read_text())["runs"][0]["results"]
    suppressed = [r for r in results if r.get("suppressions")]
    assert len(results) == 3 and len(suppressed) == 2
    assert suppressed[0]["suppressions"][0]["kind"] == "inSource"
    # The comment on an endpoint FR201 passes suppressed nothing; FR999 is no rule that ran.
    assert "fastapi-rules unused noqa" in run.output
    assert "noqaapp.py:22: # noqa: FR201 suppresses nothing here" in run.output
    assert run.report["unused_noqa"] == ["noqaapp.py:22: # noqa: FR201 suppresses nothing here"]


def test_add_noqa_writes_the_comments_and_changes_nothing_else(
    pytester: pytest.Pytester, run_rules: RunRules
) -> None:
    source = APP.replace("  # noqa: FR201\n", "\n").replace("  # noqa: E501, FR201", "  # noqa: E501")
    source = source.replace("  # noqa\n", "\n")
    path = pytester.makepyfile(noqaapp=source)
    written = run_rules("noqaapp:app", "--fastapi-rules-select=FR201", "--fastapi-rules-add-noqa")
    assert written.result.ret == 0, written.output
    assert "added or extended a # noqa comment on 3 line(s)" in written.output
    expected = (
        source.replace("def list_users() -> list[int]:\n", "def list_users() -> list[int]:  # noqa: FR201\n")
        .replace("def list_posts() -> list[int]:\n", "def list_posts() -> list[int]:  # noqa: FR201\n")
        .replace("def list_tags() -> list[int]:\n", "def list_tags() -> list[int]:  # noqa: FR201\n")
    )
    assert path.read_text().strip() == expected.strip()
    again = run_rules("noqaapp:app", "--fastapi-rules-select=FR201")
    assert set(again.outcomes("FR201").values()) == {"suppressed", "passed"}, again.output
    assert again.result.ret == 0
