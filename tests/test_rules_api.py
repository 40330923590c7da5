"""FR201-FR209 (app halves): endpoints, response models, POST statuses, update schemas, pagination,
query strings and secrets in responses, on the blog, its variants and small apps built to look like
the real ones these rules could misjudge."""

from __future__ import annotations

import inspect
import textwrap
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import installed, line_of, only

OWN_CODES = ("FR201", "FR202", "FR203", "FR204", "FR206", "FR207", "FR208", "FR209")
SELECT_OWN = "--fastapi-rules-select=" + ",".join(OWN_CODES)


def result_of(run: Any, code: str, target: str) -> dict[str, Any]:
    return only([r for r in run.results_for(code) if r["target"] == target])


def findings_of(run: Any, code: str, target: str) -> list[dict[str, Any]]:
    return list(result_of(run, code, target)["findings"])


# -- the conforming app ---------------------------------------------------------------------------


def test_conforming_blog_passes_every_api_rule(blog: Path, run_rules: Any) -> None:
    run = run_rules("src.main:app", SELECT_OWN, "--fastapi-rules-strict")
    assert run.failing() == [], run.output
    for code in OWN_CODES:
        assert run.results_for(code), code
    # Every route gets FR201, FR203 and FR209, and passes the first two
    assert set(run.outcomes("FR201").values()) == {"passed"}
    assert set(run.outcomes("FR203").values()) == {"passed"}
    assert len(run.outcomes("FR201")) == len(run.outcomes("FR203")) == len(run.outcomes("FR209"))

    deletes = ["DELETE /api/v1/users/{user_id}", "DELETE /api/v1/posts/{post_id}"]
    for target in deletes:
        assert "answers 204, a status without a JSON body" in result_of(run, "FR202", target)["message"]
        assert "declares no response type" in result_of(run, "FR209", target)["message"]
    assert {t for t, o in run.outcomes("FR202").items() if o == "skipped"} == set(deletes)
    assert {t for t, o in run.outcomes("FR209").items() if o == "skipped"} == set(deletes)
    # Health routes are infrastructure, not API: no FR202 item
    assert "GET /health" not in run.outcomes("FR202")
    assert run.outcomes("FR209")["GET /health"] == "passed"

    # The token endpoint (200), register (201), a create (201) and an action (200)
    assert run.outcomes("FR204") == {
        "POST /api/v1/auth/token": "passed",
        # no collection of that name is served, and no action word: the route table cannot tell
        "POST /api/v1/auth/register": "skipped",
        "POST /api/v1/posts": "passed",
        "POST /api/v1/users/{user_id}/activate": "passed",
    }
    assert run.outcomes("FR206") == {
        "PATCH /api/v1/posts/{post_id}": "passed",
        "PATCH /api/v1/users/{user_id}": "passed",
        "PUT /api/v1/users/{user_id}": "passed",
    }
    # Both list routes are paginated; single-object routes are not lists
    fr207 = run.outcomes("FR207")
    assert fr207.pop("GET /api/v1/users") == "passed"
    assert fr207.pop("GET /api/v1/posts") == "passed"
    assert set(fr207.values()) == {"skipped"}
    assert "does not answer a list" in result_of(run, "FR207", "GET /api/v1/users/me")["message"]
    fr208 = run.outcomes("FR208")
    assert fr208.pop("GET /api/v1/users") == "passed"  # search has max_length, sort/order are enums
    assert fr208.pop("GET /api/v1/posts") == "passed"
    assert set(fr208.values()) == {"skipped"}
    assert "takes no query parameters" in result_of(run, "FR208", "GET /api/v1/users/me")["message"]


FIXED_LIST_APP = """
from fastapi import APIRouter

from src.main import create_application

router = APIRouter()


@router.get("/kinds")
async def list_post_kinds() -> list[str]:
    return ["article", "note", "link"]


app = create_application()
app.include_router(router, prefix="/api/v1/post-kinds", tags=["Posts"])
"""


def test_a_fixed_list_answered_without_sql_is_not_paged_fr207(blog: Path, run_rules: Any) -> None:
    """fastapi_best_architecture's column types: a list that no table is behind. The static half
    sees an unpaginated list; the probes saw it answered with no SQL run, and skip it with that
    reason. The blog's own lists run SQL and keep their verdicts (the FR207 variant fails)."""
    (blog / "kindsapp.py").write_text(FIXED_LIST_APP)
    run = run_rules("kindsapp:app", "--fastapi-rules-select=FR207")
    result = result_of(run, "FR207", "GET /api/v1/post-kinds/kinds")
    assert result["outcome"] == "skipped", run.output
    assert result["message"].endswith(
        "GET /api/v1/post-kinds/kinds answered its list without running any SQL (2 valid "
        "request(s), 0 statements): a fixed list, with no table rows to page"
    ), result
    assert run.outcomes("FR207")["GET /api/v1/posts"] == "passed"


# -- one violating variant per rule ---------------------------------------------------------------

VARIANTS = [
    # (module, code, target, message essence, location file, line pattern or None)
    (
        "fr201_sync_endpoint",
        "FR201",
        "GET /api/v1/meta/post-limits",
        "endpoint `get_post_limits` is a sync `def`",
        "variants/fr201_sync_endpoint.py",
        r"^def get_post_limits",
    ),
    (
        "fr202_dict_response",
        "FR202",
        "GET /api/v1/posts/{post_id}/summary",
        "declares the untyped response model `dict[str, Any]`",
        "variants/fr202_dict_response.py",
        r"^async def get_post_summary",
    ),
    (
        "fr202_hand_built_json",
        "FR202",
        "GET /api/v1/posts/{post_id}/card",
        "endpoint `get_post_card` answers 200 with a `JSONResponse` it builds by hand: no response model "
        "filters, validates or documents what goes into it",
        "variants/fr202_hand_built_json.py",
        r"^async def get_post_card",
    ),
    (
        "fr203_orm_response",
        "FR203",
        "GET /api/v1/posts/{post_id}/raw",
        "the return annotation `Post` of endpoint `get_raw_post` is the SQLAlchemy-mapped class `Post`",
        "variants/fr203_orm_response.py",
        r"^async def get_raw_post",
    ),
    (
        "fr204_create_returns_200",
        "FR204",
        "POST /api/v1/posts/drafts",
        "POST to `/api/v1/posts/drafts` creates in a collection the app serves (GET /api/v1/posts/drafts), yet declares 200 (FastAPI's default)",
        "variants/fr204_create_returns_200.py",
        r"^async def create_draft",
    ),
    (
        "fr206_put_with_patch_schema",
        "FR206",
        "PUT /api/v1/posts/{post_id}",
        "PUT body `PostUpdate` has no required field",
        "src/posts/schemas.py",
        r"^class PostUpdate",
    ),
    (
        "fr207_unbounded_limit",
        "FR207",
        "GET /api/v1/feed",
        "page size `limit` has no upper bound; add `le=100`",
        "variants/fr207_unbounded_limit.py",
        r"^async def get_feed",
    ),
    (
        "fr208_unbounded_search",
        "FR208",
        "GET /api/v1/search/users",
        "free-text query parameter `q` has no `max_length`",
        "variants/fr208_unbounded_search.py",
        r"^async def search_users",
    ),
    (
        "fr209_password_hash_in_response",
        "FR209",
        "GET /api/v1/users/me/account",
        "exposes the secret field `UserInDB.hashed_password`",
        "variants/fr209_password_hash_in_response.py",
        r"^async def read_account",
    ),
]


@pytest.mark.parametrize(
    ("module", "code", "target", "essence", "file", "line_pattern"), VARIANTS, ids=[v[1] for v in VARIANTS]
)
def test_variant_fails_only_its_rule(
    blog: Path,
    run_rules: Any,
    module: str,
    code: str,
    target: str,
    essence: str,
    file: str,
    line_pattern: str,
) -> None:
    run = run_rules(f"variants.{module}:app")
    failing = run.failing()
    # One deviation, one finding: FR209's runtime half leaves the routes FR203 reports to FR203.
    assert [(r["code"], r["target"]) for r in failing] == [(code, target)], (failing, run.output)
    finding = only(run.findings(code))
    assert essence in finding["message"], finding
    assert finding["location"]["file"] == file, finding
    assert finding["location"]["line"] == line_of(blog / file, line_pattern), finding
    assert code in run.output


# -- FR201, FR202, FR203: endpoints and what they answer ------------------------------------------

ENDPOINTS_APP = """
    import functools
    from typing import Any

    from fastapi import APIRouter, FastAPI, status
    from fastapi.responses import FileResponse, HTMLResponse, JSONResponse, RedirectResponse, StreamingResponse
    from pydantic import BaseModel
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class Item(Base):
        __tablename__ = "items"
        id: Mapped[int] = mapped_column(primary_key=True)


    class ItemOut(BaseModel):
        id: int


    def logged(func):
        @functools.wraps(func)
        async def wrapper(*args, **kwargs):
            return await func(*args, **kwargs)
        return wrapper


    class ItemCounter:
        async def __call__(self) -> ItemOut:
            return ItemOut(id=1)


    async def item_by_offset(offset: int) -> ItemOut:
        return ItemOut(id=offset)


    def export_rows():
        yield "id\\n"


    router = APIRouter(tags=["items"])


    @router.get("/decorated/{item_id}")
    @logged
    async def decorated(item_id: int) -> ItemOut:
        return ItemOut(id=item_id)


    router.add_api_route("/callable", ItemCounter(), methods=["GET"])
    router.add_api_route("/partial", functools.partial(item_by_offset, offset=1), methods=["GET"])


    @router.get("/sync")
    def sync_item() -> ItemOut:
        return ItemOut(id=1)


    @router.get("/export")
    async def export() -> StreamingResponse:
        return StreamingResponse(export_rows(), media_type="text/csv")


    @router.get("/page", response_class=HTMLResponse)
    async def page():
        return "<p>hi</p>"


    @router.get("/download")
    async def download() -> FileResponse:
        return FileResponse(__file__)


    @router.delete("/items/{item_id}", status_code=status.HTTP_204_NO_CONTENT)
    async def delete_item(item_id: int) -> None:
        return None


    @router.get("/typed-dict")
    async def typed_dict() -> dict[str, int]:
        return {"a": 1}


    @router.get("/bare-dict")
    async def bare_dict() -> dict:
        return {}


    @router.get("/any-list")
    async def any_list() -> list[Any]:
        return []


    @router.get("/unannotated")
    async def unannotated():
        return {}


    @router.post("/ping-none")
    async def ping_none() -> None:
        return None


    @router.get("/hand-built-html")
    async def hand_built_html():
        return HTMLResponse("<p>hi</p>")


    async def authorize_redirect(url: str):  # an OAuth client's method, untyped as libraries are
        return RedirectResponse(url)


    @router.get("/oauth")
    async def oauth_login():
        response: RedirectResponse = await authorize_redirect("https://idp.example.com")
        return response


    @router.get("/hand-built-or-dict")
    async def hand_built_or_dict(fresh: bool = False):
        if fresh:
            return JSONResponse({"fresh": True}, headers={"Cache-Control": "no-store"})
        return {"fresh": False}


    @router.get("/disabled", response_model=None)
    async def disabled() -> ItemOut:
        return ItemOut(id=1)


    @router.get("/orm-list", response_model=None)
    async def orm_list() -> list[Item]:
        return []


    async def library_login():
        return {}


    # Stands for a router that a library ships (fastapi-users' login builds its own Response)
    library_login.__module__ = "fastapi_users.router.auth"
    router.add_api_route("/auth/jwt/login", library_login, methods=["POST"], status_code=201)


    app = FastAPI()
    app.include_router(router, prefix="/api/v1")
"""


def test_endpoints_and_response_models(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(endpointsapp=textwrap.dedent(ENDPOINTS_APP))
    source = pytester.path / "endpointsapp.py"
    run = run_rules("endpointsapp:app", "--fastapi-rules-select=FR201,FR202,FR203,FR204")

    # FR201: decorated (functools.wraps, async wrapper), callable-class and partial endpoints are async
    fr201 = run.outcomes("FR201")
    for target in ("GET /api/v1/decorated/{item_id}", "GET /api/v1/callable", "GET /api/v1/partial"):
        assert fr201[target] == "passed", target
    assert [t for t, o in fr201.items() if o == "failed"] == ["GET /api/v1/sync"]
    sync = only(findings_of(run, "FR201", "GET /api/v1/sync"))
    assert sync["message"] == "endpoint `sync_item` is a sync `def`; FastAPI runs it in a worker thread"
    assert (sync["location"]["file"], sync["location"]["line"]) == (
        "endpointsapp.py",
        line_of(source, r"^def sync_item"),
    )
    assert "GET /api/v1/sync" in run.output and "FR201" in run.output

    # FR202: exempt routes are skipped with the reason, untyped ones fail naming what was found
    skipped = {
        "GET /api/v1/export": "returns a `StreamingResponse` that it builds itself",
        "GET /api/v1/download": "returns a `FileResponse` that it builds itself",
        "GET /api/v1/page": "answers with `HTMLResponse`, not JSON",
        # RULES.md: a route returning a `Response` subclass is exempt, whether its annotation or
        # its code says so
        "GET /api/v1/hand-built-html": "returns a `HTMLResponse` that it builds itself",
        # mealie's OAuth login: the annotated local says what the library call returned
        "GET /api/v1/oauth": "returns a `RedirectResponse` that it builds itself",
        "DELETE /api/v1/items/{item_id}": "answers 204, a status without a JSON body",
        "GET /api/v1/orm-list": "reported by FR203 no-orm-in-response",
    }
    for target, reason in skipped.items():
        result = result_of(run, "FR202", target)
        assert result["outcome"] == "skipped" and reason in result["message"], result
    for target in ("GET /api/v1/typed-dict", "GET /api/v1/decorated/{item_id}", "GET /api/v1/callable"):
        assert result_of(run, "FR202", target)["outcome"] == "passed", target
    failed = {
        "GET /api/v1/bare-dict": "declares the untyped response model `dict`",
        "GET /api/v1/any-list": "declares the untyped response model `list[Any]`",
        "GET /api/v1/unannotated": "answers 200 with no response model: FastAPI serialises whatever it returns",
        "GET /api/v1/hand-built-or-dict": "endpoint `hand_built_or_dict` answers 200 with a `JSONResponse` it "
        "builds by hand: no response model filters, validates or documents what goes into it; its other "
        "returns are serialised as they are",
        "POST /api/v1/ping-none": "is annotated `-> None` but answers 200 with a `null` body",
        "GET /api/v1/disabled": "sets `response_model=None`, so its return annotation `ItemOut`",
    }
    for target, essence in failed.items():
        assert essence in only(findings_of(run, "FR202", target))["message"], target
    assert {t for t, o in run.outcomes("FR202").items() if o == "failed"} == set(failed)

    # FR202, FR204: what a library's endpoint declares is the library's, not the app's
    for code in ("FR202", "FR204"):
        library = result_of(run, code, "POST /api/v1/auth/jwt/login")
        assert library["outcome"] == "skipped", library
        assert "from the library `fastapi_users`: its declarations are the library's" in library["message"]

    # FR203: the ORM class behind response_model=None is found inside the list
    orm = only(run.findings("FR203"))
    assert orm["target"] == "GET /api/v1/orm-list"
    assert orm["message"] == (
        "the return annotation `list[Item]` of endpoint `orm_list` contains the SQLAlchemy-mapped class `Item`"
    )
    assert {t for t, o in run.outcomes("FR203").items() if o == "failed"} == {"GET /api/v1/orm-list"}


def test_no_orm_rule_skips_apps_without_orm(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(
        noorm=textwrap.dedent(
            """
            from fastapi import FastAPI
            from pydantic import BaseModel

            class Out(BaseModel):
                id: int

            app = FastAPI()

            @app.get("/api/v1/things/{thing_id}", tags=["things"])
            async def get_thing(thing_id: int) -> Out:
                return Out(id=thing_id)
            """
        )
    )
    run = run_rules("noorm:app", "--fastapi-rules-select=FR203")
    result = result_of(run, "FR203", "GET /api/v1/things/{thing_id}")
    assert result["outcome"] == "skipped"
    assert "the app has no SQLAlchemy-mapped classes" in result["message"]


# -- FR204: POST statuses --------------------------------------------------------------------------

POSTS_APP = """
    from typing import Annotated

    from fastapi import APIRouter, Depends, FastAPI, status
    from fastapi.security import OAuth2PasswordBearer, OAuth2PasswordRequestForm
    from pydantic import BaseModel


    class Out(BaseModel):
        id: int


    class Token(BaseModel):
        access_token: str
        token_type: str = "bearer"


    oauth2_scheme = OAuth2PasswordBearer(tokenUrl="auth/token")  # relative, as in FastAPI's tutorial


    async def current_user(token: Annotated[str, Depends(oauth2_scheme)]) -> int:
        return 1


    router = APIRouter(tags=["x"], dependencies=[Depends(current_user)])
    auth = APIRouter(tags=["auth"])


    @auth.post("/auth/token")
    async def token() -> Token:
        return Token(access_token="t")


    @auth.post("/auth/jwt/access", status_code=status.HTTP_201_CREATED)
    async def form_login(form: Annotated[OAuth2PasswordRequestForm, Depends()]) -> Token:
        return Token(access_token="t")


    @auth.post("/auth/register", status_code=status.HTTP_201_CREATED)
    async def register() -> Out:
        return Out(id=1)


    @router.post("/users/{user_id}/activate")
    async def activate(user_id: int) -> Out:
        return Out(id=user_id)


    @router.post("/users/{user_id}/deactivate", status_code=status.HTTP_201_CREATED)
    async def deactivate(user_id: int) -> Out:
        return Out(id=user_id)


    @router.post("/users/{user_id}/send-verification-email", status_code=status.HTTP_202_ACCEPTED)
    async def send_verification_email(user_id: int) -> Out:
        return Out(id=user_id)


    @router.post("/search")
    async def search() -> list[Out]:
        return []


    @router.post("/posts")
    async def create_post() -> Out:
        return Out(id=1)


    @router.post("/imports", status_code=status.HTTP_202_ACCEPTED)
    async def queue_import() -> Out:
        return Out(id=1)


    @router.post("/posts/bulk", status_code=status.HTTP_201_CREATED)
    async def bulk_create() -> list[Out]:
        return []


    @router.post("/posts/{post_id}/clone")
    async def clone_post(post_id: int) -> Out:
        return Out(id=post_id)


    @router.post("/auth/password-reset")
    async def password_reset() -> Out:
        return Out(id=1)


    @router.post("/posts/{post_id}")
    async def post_to_item(post_id: int) -> Out:
        return Out(id=post_id)


    @router.post("/index/reindex")
    async def reindex() -> Out:
        return Out(id=1)


    @router.post("/users/{user_id}/archive", status_code=204)
    async def archive_user(user_id: int) -> None:
        return None


    @router.get("/reports")
    async def list_reports() -> list[Out]:
        return []


    @router.get("/posts/export")
    async def list_exports() -> list[Out]:
        return []


    @router.post("/posts/export", status_code=202)
    async def start_export() -> Out:
        return Out(id=1)


    @router.post("/reports", status_code=202)
    async def queue_report() -> Out:
        return Out(id=1)


    app = FastAPI()
    app.include_router(auth, prefix="/api/v1")
    app.include_router(router, prefix="/api/v1")
"""


def test_post_statuses(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(postsapp=textwrap.dedent(POSTS_APP))
    run = run_rules(
        "postsapp:app", "--fastapi-rules-select=FR204", "-o", "fastapi_rules_action_verbs=reindex"
    )
    outcomes = run.outcomes("FR204")
    assert outcomes == {
        # the tokenUrl (relative) of the scheme that other routes use: a login, 200
        "POST /api/v1/auth/token": "passed",
        # a route taking OAuth2PasswordRequestForm is the token endpoint too: 201 is wrong
        "POST /api/v1/auth/jwt/access": "failed",
        # no collection of that name is served, and no action word: the route table cannot tell
        "POST /api/v1/auth/register": "skipped",
        "POST /api/v1/users/{user_id}/activate": "passed",
        "POST /api/v1/users/{user_id}/deactivate": "failed",
        "POST /api/v1/users/{user_id}/send-verification-email": "passed",
        "POST /api/v1/search": "passed",
        "POST /api/v1/posts": "failed",
        "POST /api/v1/imports": "skipped",  # no GET /imports, no /imports/{id}: cannot tell
        "POST /api/v1/posts/bulk": "passed",  # an action that creates: 201 is fine
        "POST /api/v1/posts/{post_id}/clone": "passed",
        "POST /api/v1/auth/password-reset": "passed",
        "POST /api/v1/posts/{post_id}": "skipped",
        "POST /api/v1/index/reindex": "passed",  # an action verb from the ini
        # The rulebook's letter: 200 or 202 for actions, 201 for creates (settings relax it)
        "POST /api/v1/users/{user_id}/archive": "failed",
        "POST /api/v1/reports": "failed",
        # an action verb is no collection, even with a GET on the same path (mealie's export)
        "POST /api/v1/posts/export": "passed",
    }
    assert (
        "the OAuth2 token endpoint declares 201"
        in only(findings_of(run, "FR204", "POST /api/v1/auth/jwt/access"))["message"]
    )
    assert only(findings_of(run, "FR204", "POST /api/v1/users/{user_id}/deactivate"))["message"] == (
        "`deactivate` is an action, not a create (no collection of that name is served), yet "
        "declares 201; an action answers 200 or 202"
    )
    assert only(findings_of(run, "FR204", "POST /api/v1/users/{user_id}/archive"))["message"] == (
        "`archive` is an action, not a create (no collection of that name is served), yet "
        "declares 204; an action answers 200 or 202 (204 is not the rulebook's status for it; to "
        "accept it on purpose, add it to the ini key fastapi_rules_action_statuses)"
    )
    assert only(findings_of(run, "FR204", "POST /api/v1/reports"))["message"].endswith(
        "yet declares 202; a create answers 201 (202 is not the rulebook's status for it; to "
        "accept it on purpose, add it to the ini key fastapi_rules_create_statuses)"
    )
    relaxed_statuses = run_rules(
        "postsapp:app",
        "--fastapi-rules-select=FR204",
        "-o",
        "fastapi_rules_action_statuses=200 202 204",
        "-o",
        "fastapi_rules_create_statuses=201 202",
    )
    assert relaxed_statuses.outcomes("FR204")["POST /api/v1/users/{user_id}/archive"] == "passed"
    assert relaxed_statuses.outcomes("FR204")["POST /api/v1/reports"] == "passed"
    create = only(findings_of(run, "FR204", "POST /api/v1/posts"))
    assert create["message"] == (
        "POST to `/api/v1/posts` creates in a collection the app serves (POST /api/v1/posts/{post_id}), "
        "yet declares 200 (FastAPI's default); a create answers 201"
    )
    # The fix names a setting that applies to this route (an action word cannot: the path names
    # the collection), and it does relax it.
    assert "fastapi_rules_action_verbs" not in create["fix"]
    assert "`POST /api/v1/posts = FR204` in `fastapi_rules_per_route_ignores`" in create["fix"]
    relaxed = run_rules(
        "postsapp:app",
        "--fastapi-rules-select=FR204",
        "-o",
        "fastapi_rules_per_route_ignores=POST /api/v1/posts = FR204",
    )
    assert "POST /api/v1/posts" not in relaxed.outcomes("FR204")
    assert (
        "the route table does not say whether POST /api/v1/imports creates"
        in (result_of(run, "FR204", "POST /api/v1/imports")["message"])
    )
    assert "ends in a path parameter" in result_of(run, "FR204", "POST /api/v1/posts/{post_id}")["message"]
    # Without the ini verb, the route table cannot tell what reindex is: no verdict either way
    plain = run_rules("postsapp:app", "--fastapi-rules-select=FR204")
    assert plain.outcomes("FR204")["POST /api/v1/index/reindex"] == "skipped"


TOKEN_URLS_APP = """
    from typing import Annotated

    from fastapi import Depends, FastAPI
    from fastapi.security import OAuth2PasswordBearer
    from pydantic import BaseModel


    class Token(BaseModel):
        access_token: str


    class RefreshRequest(BaseModel):
        refresh_token: str


    class Me(BaseModel):
        id: int


    # The scheme the routes use names a token and a refresh endpoint.
    oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token", refreshUrl="/api/v1/auth/refresh")
    # No route declares this one (the app reads the token by hand): it still names a token endpoint.
    admin_oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/admin/login")

    app = FastAPI()


    @app.get("/api/v1/me", tags=["me"])
    async def me(token: Annotated[str, Depends(oauth2)]) -> Me:
        return Me(id=1)


    @app.post("/api/v1/auth/token", tags=["auth"])
    async def issue_token() -> Token:
        return Token(access_token="a")


    @app.post("/api/v1/auth/refresh", tags=["auth"], status_code=201)
    async def refresh(body: RefreshRequest) -> Token:
        return Token(access_token="a")


    @app.post("/api/v1/admin/login", tags=["admin"], status_code=201)
    async def admin_login() -> Token:
        return Token(access_token="a")
"""


def test_token_endpoints_are_the_urls_of_every_oauth2_scheme(
    pytester: pytest.Pytester, run_rules: Any
) -> None:
    """FR204 and FR706 read one list of token endpoints: tokenUrl and refreshUrl of the schemes
    the routes use and of those the app's modules define."""
    from fastapi.security import OAuth2PasswordBearer

    if "refreshUrl" not in inspect.signature(OAuth2PasswordBearer).parameters:
        pytest.skip("this FastAPI's OAuth2PasswordBearer takes no refreshUrl (the app cannot declare one)")
    pytester.makepyfile(tokenapp=textwrap.dedent(TOKEN_URLS_APP))
    run = run_rules("tokenapp:app", "--fastapi-rules-select=FR204,FR706")

    assert run.outcomes("FR204") == {
        "POST /api/v1/auth/token": "passed",
        "POST /api/v1/auth/refresh": "failed",
        "POST /api/v1/admin/login": "failed",
    }
    for target in ("POST /api/v1/auth/refresh", "POST /api/v1/admin/login"):
        assert only(findings_of(run, "FR204", target))["message"].startswith(
            "the OAuth2 token endpoint declares 201; a token request is a login"
        )
    # A refresh request carries its credential, the refresh token, in the body: public, as the
    # token endpoint is.
    assert run.outcomes("FR706") == {
        "POST /api/v1/auth/token": "passed",
        "POST /api/v1/auth/refresh": "passed",
        "POST /api/v1/admin/login": "passed",
    }


# -- FR206, FR207, FR208, FR209: bodies, query parameters, secrets -------------------------------

EXTLIB = """
    async def text_filter(name: str | None = None, pattern: str | None = None) -> dict:
        return {"name": name}


    class Callback:  # an OAuth library's callback dependency: an instance, not a function
        async def __call__(self, code: str | None = None) -> dict:
            return {"code": code}


    callback = Callback()
"""

PARAMS_APP = """
    from datetime import datetime
    from enum import Enum
    from typing import Annotated, Literal

    from fastapi import APIRouter, Body, Depends, FastAPI, Query
    from fastapi.security import OAuth2PasswordBearer
    from pydantic import BaseModel, ConfigDict, Field, SecretStr

    from extlib import callback, text_filter


    class Out(BaseModel):
        id: int


    class Page(BaseModel):
        items: list[Out]
        next_cursor: str | None = None


    class Notebooks(BaseModel):  # an envelope whose one list has its own name
        notebooks: list[Out]


    class Counted(BaseModel):  # one list beside page metadata
        users: list[Out]
        total: int
        next_cursor: str | None = None


    class Post(BaseModel):  # a resource that holds a list: not a list answer
        id: int
        title: str
        comments: list[Out]


    class Filters(BaseModel):
        limit: int = Field(20, ge=1, le=50)
        offset: int = Field(0, ge=0)
        q: str | None = Field(None, max_length=50)


    class Order(str, Enum):
        ASC = "asc"
        DESC = "desc"


    class Patch(BaseModel):
        title: str
        body: str | None = None


    class Article(BaseModel):
        id: int
        title: str


    class PasswordChange(BaseModel):  # a command: nothing in common with what it answers
        current_password: str
        new_password: str


    class Message(BaseModel):
        message: str


    class PartialPatch(BaseModel):
        title: str | None = None


    class FullPut(BaseModel):
        title: str
        body: str | None


    class PutAllOptional(BaseModel):
        title: str | None = None


    class Profile(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        api_key: str = Field(alias="apiKey")
        has_password: bool
        password_changed_at: datetime | None = None
        webhook_secret: SecretStr  # serialised as **********
        masked_api_key: str  # "sk-...f3a9"


    class UserOut(BaseModel):
        id: int
        profile: Profile
        hashed_password: str = Field(exclude=True)
        clientSecret: str | None = None


    class Token(BaseModel):
        access_token: str
        refresh_token: str
        token_type: str = "bearer"


    async def paging(
        limit: Annotated[int, Query(ge=1, le=100)] = 20, skip: Annotated[int, Query(ge=0)] = 0
    ) -> tuple[int, int]:
        return limit, skip


    async def loose_paging(limit: int = 50, skip: Annotated[int, Query(ge=0)] = 0) -> tuple[int, int]:
        return limit, skip


    router = APIRouter(tags=["x"])


    @router.patch("/a/{a_id}")
    async def patch_required(a_id: int, data: Patch) -> Article:
        return Article(id=a_id, title=data.title)


    @router.patch("/users/me/password")
    async def change_password(data: PasswordChange) -> Message:
        return Message(message="ok")


    @router.patch("/b/{b_id}")
    async def patch_partial(b_id: int, data: PartialPatch) -> Out:
        return Out(id=b_id)


    @router.patch("/c/{c_id}")
    async def patch_dict(c_id: int, data: Annotated[dict, Body()]) -> Out:
        return Out(id=c_id)


    @router.put("/b/{b_id}")
    async def put_full(b_id: int, data: FullPut) -> Out:
        return Out(id=b_id)


    @router.put("/a/{a_id}")
    async def put_all_optional(a_id: int, data: PutAllOptional) -> Out:
        return Out(id=a_id)


    @router.get("/cursor")
    async def cursor_page(
        cursor: str | None = Query(None, max_length=200), limit: int = Query(20, ge=1, le=100)
    ) -> Page:
        return Page(items=[])


    @router.get("/paged")
    async def paged(pages: Annotated[tuple[int, int], Depends(paging)]) -> list[Out]:
        return []


    @router.get("/query-model")
    async def query_model(filters: Annotated[Filters, Query()]) -> list[Out]:
        return []


    @router.get("/loosely-paged")
    async def loosely_paged(pages: Annotated[tuple[int, int], Depends(loose_paging)]) -> list[Out]:
        return []


    @router.get("/unpaginated")
    async def unpaginated() -> list[Out]:
        return []


    @router.get("/too-large")
    async def too_large(page_size: int = Query(20, le=500), page: int = Query(1)) -> list[Out]:
        return []


    @router.get("/notebooks")
    async def notebooks() -> Notebooks:
        return Notebooks(notebooks=[])


    @router.get("/counted")
    async def counted(page: int = 1, items_per_page: int = 10) -> Counted:
        return Counted(users=[], total=0)


    @router.get("/zero-based")
    async def zero_based(page: int = 0, pageSize: int = Query(10, ge=1, le=100)) -> list[Out]:
        return []


    @router.get("/posts/{post_id}")
    async def get_post(post_id: int) -> Post:
        raise NotImplementedError


    @router.get("/sorting")
    async def sorting(
        sort_by: str = Query("id", max_length=20),
        order: Order = Order.ASC,
        direction: Literal["asc", "desc"] = "asc",
        tags: list[str] = Query([]),
        search: str | None = Query(None, max_length=100),
        note: str | None = None,
    ) -> Out:
        return Out(id=1)


    @router.get("/library-filter")
    async def library_filter(f: Annotated[dict, Depends(text_filter)]) -> Out:
        return Out(id=1)


    @router.get("/library-callback")
    async def library_callback(f: Annotated[dict, Depends(callback)]) -> Out:
        return Out(id=1)


    @router.get("/users/{user_id}")
    async def get_user(user_id: int) -> UserOut:
        raise NotImplementedError


    @router.get("/users/{user_id}/status")
    async def user_status(user_id: int) -> Profile:
        raise NotImplementedError


    @router.get(
        "/users/{user_id}/public",
        response_model=UserOut,
        response_model_exclude={"clientSecret", "profile"},
    )
    async def public_user(user_id: int) -> UserOut:
        raise NotImplementedError


    @router.post("/token")
    async def login() -> Token:
        return Token(access_token="a", refresh_token="r")


    # Behind a proxy that strips /svc: clients, and so tokenUrl, carry the prefix
    oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/svc/api/v1/sessions")


    @router.post("/sessions")
    async def open_session() -> Token:
        return Token(access_token="a", refresh_token="r")


    @router.get("/me")
    async def me(token: Annotated[str, Depends(oauth2_scheme)]) -> Out:
        return Out(id=1)


    app = FastAPI(root_path="/svc")
    app.include_router(router, prefix="/api/v1")
"""


@pytest.mark.skipif(
    installed("fastapi") < (0, 115), reason="the test app's query-parameter models need FastAPI 0.115"
)
def test_bodies_query_parameters_and_secrets(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(extlib=textwrap.dedent(EXTLIB), paramsapp=textwrap.dedent(PARAMS_APP))
    source = pytester.path / "paramsapp.py"
    run = run_rules("paramsapp:app", "--fastapi-rules-select=FR204,FR206,FR207,FR208,FR209")

    # FR204: the token endpoint is found through tokenUrl even when it carries the app's root_path
    # (/token is not the tokenUrl, serves no collection and names no action: not judged)
    assert run.outcomes("FR204") == {"POST /api/v1/token": "skipped", "POST /api/v1/sessions": "passed"}

    # FR206 (warning): PATCH with a required field, PUT with nothing required; dict bodies skipped
    assert run.outcomes("FR206") == {
        "PATCH /api/v1/a/{a_id}": "warning",
        "PATCH /api/v1/users/me/password": "skipped",
        "PATCH /api/v1/b/{b_id}": "passed",
        "PATCH /api/v1/c/{c_id}": "skipped",
        "PUT /api/v1/b/{b_id}": "passed",
        "PUT /api/v1/a/{a_id}": "warning",
    }
    # A PATCH whose body shares no field with its response is a command, not a partial update.
    command = result_of(run, "FR206", "PATCH /api/v1/users/me/password")["message"]
    assert (
        "looks like a command, not a partial update: its body `PasswordChange` shares no field "
        "with its response model `Message`"
    ) in command
    patch = only(findings_of(run, "FR206", "PATCH /api/v1/a/{a_id}"))
    assert (
        patch["message"] == "PATCH body `Patch` requires `title`; a partial update makes every field optional"
    )
    assert (patch["location"]["file"], patch["location"]["line"]) == (
        "paramsapp.py",
        line_of(source, r"^class Patch\b"),
    )
    assert (
        "PUT body `PutAllOptional` has no required field"
        in only(findings_of(run, "FR206", "PUT /api/v1/a/{a_id}"))["message"]
    )

    # FR207: cursor pages, page sizes in dependencies and in query models pass
    fr207 = run.outcomes("FR207")
    for target in ("GET /api/v1/cursor", "GET /api/v1/paged", "GET /api/v1/query-model"):
        assert fr207[target] == "passed", target
    assert (
        "takes no page-size query parameter"
        in only(findings_of(run, "FR207", "GET /api/v1/unpaginated"))["message"]
    )
    too_large = [f["message"] for f in findings_of(run, "FR207", "GET /api/v1/too-large")]
    assert too_large == [
        "page size `page_size` allows up to 500, above the maximum page size 100",
        "page number `page` has no lower bound; add `ge=1` (pages count from 1)",
    ]
    # Any page-size spelling (items_per_page, pageSize); the bound advice matches the parameter.
    assert [f["message"] for f in findings_of(run, "FR207", "GET /api/v1/counted")] == [
        "page size `items_per_page` has no upper bound; add `le=100`",
        "page number `page` has no lower bound; add `ge=1` (pages count from 1)",
    ]
    assert [f["message"] for f in findings_of(run, "FR207", "GET /api/v1/zero-based")] == [
        "page number `page` has no lower bound; add `ge=0`"
    ]
    # An envelope with one list of models under any name is a list answer; a resource holding a
    # list beside its own fields is not.
    assert only(findings_of(run, "FR207", "GET /api/v1/notebooks"))["message"].startswith(
        "endpoint `notebooks` answers a list (`Notebooks.notebooks` (`list[Out]`)) but takes no "
        "page-size query parameter"
    )
    assert fr207["GET /api/v1/posts/{post_id}"] == "skipped"
    loose = only(findings_of(run, "FR207", "GET /api/v1/loosely-paged"))
    assert (
        loose["message"]
        == "page size `limit` (from dependency `loose_paging`) has no upper bound; add `le=100`"
    )
    assert loose["location"]["line"] == line_of(source, r"^async def loose_paging")  # where to fix it
    assert fr207["GET /api/v1/sorting"] == "skipped"
    # The maximum is configurable
    relaxed = run_rules(
        "paramsapp:app", "--fastapi-rules-select=FR207", "-o", "fastapi_rules_max_page_size=500"
    )
    assert [f["message"] for f in relaxed.findings("FR207") if f["target"] == "GET /api/v1/too-large"] == [
        "page number `page` has no lower bound; add `ge=1` (pages count from 1)"
    ]

    # FR208 (warning): sort typed str even with max_length; unbounded free text, also from a library
    fr208 = run.outcomes("FR208")
    assert fr208["GET /api/v1/cursor"] == "passed"
    assert fr208["GET /api/v1/query-model"] == "passed"
    assert fr208["GET /api/v1/users/{user_id}"] == "skipped"
    assert [f["message"] for f in findings_of(run, "FR208", "GET /api/v1/sorting")] == [
        "sort parameter `sort_by` is a plain `str`; make it an `Enum` or a `Literal` of the allowed values",
        "free-text query parameter `note` has no `max_length`",
    ]
    library = findings_of(run, "FR208", "GET /api/v1/library-filter")
    assert [f["message"] for f in library] == [
        "free-text query parameter `name` (from dependency `extlib.text_filter`, a library dependency) "
        "has no `max_length`",
        "free-text query parameter `pattern` (from dependency `extlib.text_filter`, a library dependency) "
        "has no `max_length`",
    ]
    assert library[0]["location"]["file"] == "paramsapp.py"  # the app's route, not the library
    # A callable instance is named by its class: a memory address would change every run
    assert [f["message"] for f in findings_of(run, "FR208", "GET /api/v1/library-callback")] == [
        "free-text query parameter `code` (from dependency `extlib.Callback(...) instance`, a library "
        "dependency) has no `max_length`",
    ]

    # FR209: nested and aliased secrets are named by path; flags, timestamps, exclusions, tokens pass
    assert [f["message"] for f in findings_of(run, "FR209", "GET /api/v1/users/{user_id}")] == [
        "the response model of endpoint `get_user` exposes the secret field `UserOut.profile.api_key`",
        "the response model of endpoint `get_user` exposes the secret field `UserOut.clientSecret`",
    ]
    assert [f["message"] for f in findings_of(run, "FR209", "GET /api/v1/users/{user_id}/status")] == [
        "the response model of endpoint `user_status` exposes the secret field `Profile.api_key`"
    ]
    assert run.outcomes("FR209")["GET /api/v1/users/{user_id}/public"] == "passed"
    assert run.outcomes("FR209")["POST /api/v1/token"] == "passed"
    assert run.outcomes("FR209")["GET /api/v1/cursor"] == "passed"


# -- FR203 and FR209's runtime half: one mistake, one finding --------------------------------------

ORM_RESPONSE_APP = """
import os

from fastapi import Depends, FastAPI
from sqlalchemy import String
from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"])
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(primary_key=True)
    email: Mapped[str] = mapped_column(String(100))
    hashed_password: Mapped[str] = mapped_column(String(100))


async def get_db():
    async with sessions() as session:
        yield session


app = FastAPI()


@app.get("/api/v1/accounts/{account_id}/raw", tags=["accounts"], response_model=None)
async def raw_account(account_id: int, db=Depends(get_db)) -> Account:
    return await db.get(Account, account_id)


@app.get("/api/v1/accounts/{account_id}/untyped", tags=["accounts"])
async def untyped_account(account_id: int, db=Depends(get_db)):
    return await db.get(Account, account_id)
"""


def test_an_orm_object_in_the_body_is_fr203s_finding_not_also_fr209s(
    pytester: pytest.Pytester, run_rules: Any, app_env: None
) -> None:
    pytester.makepyfile(ormresponse=ORM_RESPONSE_APP)
    run = run_rules("ormresponse:app", "--fastapi-rules-select=FR203,FR209")
    # Both bodies carry `hashed_password` because the ORM object itself is serialised: FR203
    # reports that (statically for the annotated route, at runtime for the other); FR209 does not
    # report the same mistake again.
    assert run.outcomes("FR203") == {
        "GET /api/v1/accounts/{account_id}/raw": "failed",
        "GET /api/v1/accounts/{account_id}/untyped": "failed",
    }, run.output
    assert "failed" not in run.outcomes("FR209").values(), run.output
    assert "hashed_password" not in " ".join(f["message"] for f in run.findings("FR209"))
