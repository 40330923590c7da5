"""FR210's odd but schema-valid requests (``probing/edges.py``): what the app validates itself.

One small app without a database holds a route per case; each case asserts the FR210 verdict on
its route, with the exact message: which request, what was odd, what the app raised.
"""

from __future__ import annotations

from typing import Any

import pytest

from tests.conftest import RulesRun

EDGE_APP = """
from typing import Annotated, Any

from fastapi import Body, FastAPI, Header, HTTPException, Path, Query
from pydantic import BaseModel

app = FastAPI()


def require_key(key: str | None) -> None:
    if key != "secret":
        raise HTTPException(status_code=401, detail="no key")


@app.get("/v1/things/{thing_id}")
async def get_thing(thing_id: str) -> dict[str, str]:
    if not thing_id.isdigit():  # guarded: an odd id is a 404
        raise HTTPException(status_code=404, detail="no such thing")
    return {"id": thing_id}


@app.get("/v1/codes/{code}")
async def get_code(code: Annotated[str, Path(pattern="^[0-9]+$")]) -> dict[str, int]:
    return {"code": int(code)}  # the pattern guards it: no odd string is valid here


@app.get("/v1/short")
async def short(name: Annotated[str | None, Query(max_length=4)] = None) -> dict[str, int]:
    return {"n": int(name) if name is not None else 0}


@app.get("/v1/search")
async def search(q: str = "all") -> dict[str, str]:
    return {"first": q[0]}  # "" -> IndexError


@app.get("/v1/keyed")
async def keyed(x_key: Annotated[str | None, Header()] = None, page: str = "1") -> dict[str, int]:
    require_key(x_key)  # without the valid request's credentials the odd page never gets here
    return {"page": int(page)}


@app.get("/v1/broken/{item}")
async def broken(item: str) -> dict[str, str]:
    raise RuntimeError("broken for every input")


class NoteIn(BaseModel):
    title: str
    meta: dict[str, Any]
    priority: int | None = None


@app.post("/v1/notes", status_code=201)
async def create_note(note: NoteIn) -> dict[str, int]:
    return {"next": note.priority + 1}  # omitted -> TypeError


@app.post("/v1/imports", status_code=201)
async def import_note(data: Annotated[dict[str, Any], Body(examples=[{"title": "x"}])]) -> dict[str, str]:
    return {"title": data["title"]}  # {} -> KeyError
"""


@pytest.fixture
def edge_app(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(edgeapp=EDGE_APP)
    pytester.makeini("[pytest]\nfastapi_rules_auth_headers = X-Key: secret\n")


def at(snippet: str) -> str:
    """``edgeapp.py:N``, N the line of the app that holds ``snippet`` (where the app raises)."""
    lines = EDGE_APP.strip("\n").splitlines()
    return f"edgeapp.py:{next(n for n, line in enumerate(lines, start=1) if snippet in line)}"


def _fr210(run: RulesRun) -> tuple[dict[str, str], dict[str, str]]:
    """``({target: outcome}, {target: the finding's message or the skip's reason})`` of FR210."""
    messages = {}
    for result in run.results_for("FR210"):
        findings = result["findings"]
        messages[result["target"]] = findings[0]["message"] if findings else result["message"]
    return run.outcomes("FR210"), messages


def test_odd_but_valid_values_find_what_the_app_validates_itself(edge_app: None, run_rules: Any) -> None:
    outcomes, messages = _fr210(run_rules("edgeapp:app", "--fastapi-rules-select=FR210"))
    assert outcomes == {
        "GET /v1/things/{thing_id}": "passed",
        "GET /v1/codes/{code}": "skipped",
        "GET /v1/short": "failed",
        "GET /v1/search": "failed",
        "GET /v1/keyed": "failed",
        "GET /v1/broken/{item}": "skipped",
        "POST /v1/notes": "failed",
        "POST /v1/imports": "failed",
    }, messages
    # A pattern no odd string matches: nothing schema-valid to send.
    assert messages["GET /v1/codes/{code}"].endswith(
        "GET /v1/codes/{code} takes no typed parameter, string parameter or body to send bad or odd input to"
    )
    # The odd string is cut to the parameter's max_length, so FastAPI lets it through.
    assert messages["GET /v1/short"] == (
        "GET /v1/short with odd strings (query parameter `name`='zz-n') answered 500 (ValueError: "
        f"invalid literal for int() with base 10: 'zz-n' at {at('int(name)')}), not a 2xx or 4xx"
    )
    assert messages["GET /v1/search"] == (
        "GET /v1/search with empty query parameters (`q`) answered 500 (IndexError: string index out "
        f"of range at {at('q[0]')}), not a 2xx or 4xx"
    )
    # The edge request carries the valid request's credentials (fastapi_rules_auth_headers).
    assert messages["GET /v1/keyed"] == (
        "GET /v1/keyed with odd strings (query parameter `page`='zz-not-an-id') answered 500 "
        f"(ValueError: invalid literal for int() with base 10: 'zz-not-an-id' at {at('int(page)')}), "
        "not a 2xx or 4xx"
    )
    # The valid request fails the same way: not the input's fault.
    assert "the valid request to GET /v1/broken/{item} answered 500" in messages["GET /v1/broken/{item}"]
    assert messages["POST /v1/notes"] == (
        "POST /v1/notes with a NoteIn body with only its required fields (`title`, `meta`), free-form "
        "`meta` as {} answered 500 (TypeError: unsupported operand type(s) for +: 'NoneType' and 'int' "
        f"at {at('note.priority + 1')}), not a 2xx or 4xx"
    )
    # The valid body is the route's declared example: random keys would fail the valid request too.
    assert messages["POST /v1/imports"] == (
        "POST /v1/imports with an empty free-form body `{}` answered 500 (KeyError: 'title' at "
        f"{at('{} -> KeyError')}), not a 2xx or 4xx"
    )


def test_the_edge_requests_per_route_are_bounded_by_the_setting(edge_app: None, run_rules: Any) -> None:
    # One per route: the odd strings come first, so the empty string that breaks /v1/search is not sent.
    outcomes, messages = _fr210(
        run_rules("edgeapp:app", "--fastapi-rules-select=FR210", "--fastapi-rules-edge-requests=1")
    )
    assert outcomes["GET /v1/search"] == "passed", messages
    assert outcomes["GET /v1/short"] == "failed", messages
    # None at all: only FastAPI's own validation is probed, as before the setting existed.
    outcomes, messages = _fr210(
        run_rules("edgeapp:app", "--fastapi-rules-select=FR210", "-o", "fastapi_rules_edge_requests=0")
    )
    assert outcomes["GET /v1/short"] == "skipped", messages
    assert outcomes["POST /v1/imports"] == "passed", messages
    assert outcomes["POST /v1/notes"] == "passed", messages


def test_blog_variants_pass_without_edge_requests(blog: Any, run_rules: Any) -> None:
    """The two FR210 variants of the blog are found by the edge requests alone."""
    for module in ("fr210_str_id_converted", "fr210_dict_body_indexed"):
        run = run_rules(
            f"variants.{module}:app", "--fastapi-rules-select=FR210", "--fastapi-rules-edge-requests=0"
        )
        assert not run.failing(), run.output
