"""FR601, FR603-FR605 (Pydantic schemas) and FR701, FR702, FR706 (security), app halves."""

from __future__ import annotations

import re
import textwrap
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from starlette.middleware.base import BaseHTTPMiddleware
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.gzip import GZipMiddleware

from pytest_fastapi_rules.facts import MiddlewareFacts
from pytest_fastapi_rules.rules.common import is_token_path
from pytest_fastapi_rules.rules.security import (
    _regex_matches_unrelated,
    auth_middleware,
    looks_like_auth,
)

OWN_CODES = ("FR601", "FR603", "FR604", "FR605", "FR701", "FR702", "FR706")
SELECT_OWN = "--fastapi-rules-select=" + ",".join(OWN_CODES)


def line_of(path: Path, pattern: str) -> int:
    """1-based line of the first line of ``path`` matching ``pattern`` (so tests survive edits)."""
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if re.search(pattern, line):
            return number
    raise AssertionError(f"{pattern!r} not in {path}")


def only(items: list[dict[str, Any]]) -> dict[str, Any]:
    assert len(items) == 1, items
    return items[0]


def messages(run: Any, code: str) -> list[str]:
    return sorted(f["message"] for f in run.findings(code))


# -- the conforming app ---------------------------------------------------------------------------


def test_conforming_blog_passes(blog: Path, run_rules: Any) -> None:
    run = run_rules("src.main:app", SELECT_OWN)
    for code in ("FR601", "FR603", "FR701", "FR702"):
        assert run.outcomes(code) == {"app": "passed"}, (code, run.results_for(code), run.output)
    for code in ("FR604", "FR605", "FR706"):
        outcomes = run.outcomes(code)
        assert outcomes and set(outcomes.values()) == {"passed"}, (code, outcomes, run.output)
    # Route rules get items exactly where they apply.
    assert set(run.outcomes("FR604")) == {
        "POST /api/v1/auth/register",
        "PUT /api/v1/users/{user_id}",
        "PATCH /api/v1/users/{user_id}",
        "POST /api/v1/posts",
        "PATCH /api/v1/posts/{post_id}",
    }
    assert "POST /api/v1/auth/register" in run.outcomes("FR605")
    # The token endpoint and register are public; the rest is protected by the OAuth2 chain, the
    # superuser-only ones through `dependencies=[Depends(get_current_superuser)]`.
    assert set(run.outcomes("FR706")) == {
        "POST /api/v1/auth/token",
        "POST /api/v1/auth/register",
        "PUT /api/v1/users/{user_id}",
        "PATCH /api/v1/users/{user_id}",
        "DELETE /api/v1/users/{user_id}",
        "POST /api/v1/users/{user_id}/activate",
        "POST /api/v1/posts",
        "PATCH /api/v1/posts/{post_id}",
        "DELETE /api/v1/posts/{post_id}",
    }


# -- one violating variant per rule ---------------------------------------------------------------

VARIANTS = [
    # (module, code, target, message essence, line pattern in the variant)
    (
        "fr601_v1_config",
        "FR601",
        "app",
        "`Token` defines an inner `class Config` with `orm_mode`",
        r"^class Token",
    ),
    (
        "fr603_summary_without_from_attributes",
        "FR603",
        "app",
        "`PostSummary` (of GET /api/v1/posts/{post_id}/summary) mirrors ORM class `Post` but does "
        "not set `from_attributes=True`",
        r"^class PostSummary",
    ),
    (
        "fr604_same_schema_in_and_out",
        "FR604",
        "PUT /api/v1/posts/{post_id}/content",
        "`PostContent` is both the request body and the response model",
        r"^async def replace_post_content",
    ),
    (
        "fr605_plain_str_email",
        "FR605",
        "POST /api/v1/auth/register",
        "request field `UserCreate.email` is a plain `str`, not `EmailStr`",
        r"^class UserCreate",
    ),
    (
        "fr701_wildcard_origin_with_credentials",
        "FR701",
        "app",
        "allow_origins=['*'] with allow_credentials=True: Starlette echoes any request Origin",
        r"^cors = Middleware\(",
    ),
    (
        "fr702_all_methods",
        "FR702",
        "app",
        "allows every method (allow_methods=['*'])",
        r"^cors = Middleware\(",
    ),
    (
        "fr706_unauthenticated_create",
        "FR706",
        "POST /api/v1/users",
        "endpoint `create_user` changes data without a security dependency",
        r"^async def create_user",
    ),
]


@pytest.mark.parametrize(
    ("module", "code", "target", "essence", "line_pattern"), VARIANTS, ids=[v[1] for v in VARIANTS]
)
def test_variant_fails_only_its_rule(
    blog: Path, run_rules: Any, module: str, code: str, target: str, essence: str, line_pattern: str
) -> None:
    run = run_rules(f"variants.{module}:app")
    failing = run.failing()
    assert [(r["code"], r["target"]) for r in failing] == [(code, target)], (failing, run.output)
    findings = run.findings(code)
    if code == "FR701":
        # The runtime half (rules/security.py) may add what a real preflight from an unlisted origin got.
        findings = [f for f in findings if "CORS preflight" not in f["message"]]
    finding = only(findings)
    assert essence in finding["message"], finding
    file = f"variants/{module}.py"
    assert finding["location"]["file"] == file, finding
    assert finding["location"]["line"] == line_of(blog / file, line_pattern), finding
    assert code in run.output


# -- false positives and edge cases, on small apps ------------------------------------------------

EDGE_APP = """
from typing import Annotated, Optional

import pydantic.v1
from fastapi import APIRouter, Depends, FastAPI, Form, Header, HTTPException, Query, Security
from fastapi.middleware.cors import CORSMiddleware
from fastapi.openapi.docs import get_redoc_html
from fastapi.security import OAuth2PasswordBearer
from pydantic import AfterValidator, BaseModel, ConfigDict, EmailStr, Field, field_validator
from pydantic_settings import BaseSettings
from sqlalchemy import String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/login/access-token", scopes={"items": "items"})


class Base(DeclarativeBase):
    pass


class ItemRow(Base):
    __tablename__ = "items"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))
    price: Mapped[int]


class TagRow(Base):  # also covers ItemOut's fields: ItemRow is still the one named alike
    __tablename__ = "tags"

    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(50))


# FR601 ----------------------------------------------------------------------


class AppSettings(BaseSettings):
    debug: bool = False

    class Config:
        env_file = ".env"


class LegacyOut(BaseModel):
    model_config = ConfigDict(orm_mode=True)

    code: str


class LegacyChild(LegacyOut):
    extra: str = ""


class V1Model(pydantic.v1.BaseModel):  # FR602's business, not FR601's
    x: int

    class Config:
        orm_mode = True


# FR603 ----------------------------------------------------------------------


class ItemOut(BaseModel):  # mirrors ItemRow, no from_attributes: the one FR603 finding
    id: int
    name: str


class ItemPublic(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    name: str
    price: int


class IdOnly(BaseModel):  # one field: too little to call it a mirror
    id: int


class ItemRated(BaseModel):  # `rating` is no ItemRow attribute: not ORM-backed
    id: int
    name: str
    rating: float


class ItemPage(BaseModel):
    items: list[ItemOut]
    total: int


# FR604 / FR605 --------------------------------------------------------------


class ItemCreate(BaseModel):
    name: str
    price: int


class ItemWithId(ItemCreate):
    model_config = ConfigDict(from_attributes=True)

    id: int


class Customer(BaseModel):
    contact_email: str  # nested plain str: a finding
    backup_email: Optional[EmailStr] = None
    send_email: bool = True  # not a str at all


class Order(BaseModel):
    email: Annotated[str, AfterValidator(lambda v: v.lower())]
    billing_email: str = Field(pattern=r"^[^@]+@[^@]+$")
    customers: list[Customer]


class Signup(BaseModel):
    email: str
    password: str

    @field_validator("email")
    @classmethod
    def check_email(cls, value: str) -> str:
        if "@" not in value:
            raise ValueError("not an email")
        return value


# FR706 dependencies ----------------------------------------------------------


async def get_current_superuser(x_user: Annotated[str, Header()]) -> str:
    if x_user != "admin":
        raise HTTPException(403, "not a superuser")
    return x_user


async def verify_signature(x_signature: Annotated[str, Header()]) -> None:
    if x_signature != "valid":
        raise HTTPException(401, "bad signature", headers={"WWW-Authenticate": "Signature"})


async def get_author_service() -> object:
    return object()


async def get_auth_service() -> object:
    return object()


router = APIRouter(tags=["items"])


@router.post("/login/access-token")
async def access_token(username: Annotated[str, Form()], password: Annotated[str, Form()]) -> dict:
    return {}


@router.post("/accounts/register", status_code=201)
async def register(data: Signup) -> ItemWithId:
    return ItemWithId(id=1, name="x", price=1)


@router.put("/items/{item_id}", dependencies=[Depends(get_current_superuser)])
async def replace_item(item_id: int, data: ItemCreate) -> ItemWithId:
    return ItemWithId(id=item_id, **data.model_dump())


@router.patch("/items/{item_id}")
async def patch_item(
    item_id: int, data: Optional[ItemPublic], user: Annotated[str, Security(oauth2, scopes=["items"])]
) -> ItemPublic:
    return ItemPublic(id=item_id, name="x", price=1)


@router.post("/items/bulk", status_code=201)
async def bulk_items(data: list[ItemPublic], user: Annotated[str, Depends(oauth2)]) -> list[ItemPublic]:
    return data


@router.post("/webhooks/payment")
async def payment_webhook(data: ItemCreate, _: Annotated[None, Depends(verify_signature)]) -> ItemOut:
    return ItemOut(id=1, name="x")


@router.post("/authors", status_code=201)
async def create_author(data: ItemCreate, service: Annotated[object, Depends(get_author_service)]) -> IdOnly:
    return IdOnly(id=1)


@router.delete("/sessions/{session_id}", status_code=204)
async def end_session(session_id: int, service: Annotated[object, Depends(get_auth_service)]) -> None:
    return None


@router.post("/password-recovery/{email}")
async def recover_password(email: str) -> IdOnly:
    return IdOnly(id=1)


@router.post("/auth/refresh")
async def refresh_access_token() -> IdOnly:
    return IdOnly(id=1)


@router.post("/cache/refresh")
async def refresh_cache() -> IdOnly:
    return IdOnly(id=1)


@router.post("/contact", status_code=201)
async def contact(data: Order) -> IdOnly:
    return IdOnly(id=1)


@router.post("/orders", status_code=201)
async def create_order(
    user: Annotated[str, Depends(get_current_superuser)], reply_email: Annotated[str, Form()]
) -> IdOnly:
    return IdOnly(id=1)


@router.get("/items")
async def list_items(
    email: Annotated[str, Query(max_length=100)], owner_email: Annotated[EmailStr, Query()]
) -> ItemPage:
    return ItemPage(items=[], total=0)


@router.get("/items/{item_id}")
async def get_item(item_id: int) -> ItemRated:
    return ItemRated(id=item_id, name="x", rating=1.0)


@router.get("/items/{item_id}/legacy")
async def get_legacy(item_id: int) -> LegacyChild:
    return LegacyChild(code="x")


app = FastAPI()
app.include_router(router, prefix="/api/v1")
# An endpoint defined by a library (think fastapi-users' /auth/verify): not the app's to protect.
app.add_api_route("/api/v1/ext/verify", get_redoc_html, methods=["POST"], tags=["ext"])
app.add_middleware(CORSMiddleware, allow_origin_regex="https://.*", allow_credentials=True)
app.add_middleware(
    CORSMiddleware, allow_origin_regex=r"https://[a-z]+\\.mycompany\\.com", allow_credentials=True
)
app.add_middleware(CORSMiddleware, allow_origins=["*"], max_age=0)
"""


def test_edge_cases(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(edgeapp=EDGE_APP)
    pytester.makeini("[pytest]\nfastapi_rules_public_routes =\n    POST /api/v1/contact\n")
    run = run_rules("edgeapp:app", SELECT_OWN)
    assert not [r for r in run.report["results"] if r["outcome"] == "error"], run.output

    # FR601: one finding per defining class; the v1 model and the child of a bad parent are not.
    assert messages(run, "FR601") == [
        "model `AppSettings` defines an inner `class Config`",
        "model `LegacyOut` sets `orm_mode` in `model_config` (v2 name: `from_attributes`)",
    ]

    # FR603: `ItemOut` mirrors `ItemRow`, but every endpoint builds its answer from literals:
    # nothing is filled from ORM objects, so nothing is judged (see test_fr603_needs_orm_evidence).
    fr603 = only(run.results_for("FR603"))
    assert fr603["outcome"] == "skipped", fr603
    assert "shows that it answers with ORM objects" in fr603["message"]

    # FR604: same class through list[...] and Optional; a subclass of the body model is distinct.
    fr604 = run.outcomes("FR604")
    assert fr604["PATCH /api/v1/items/{item_id}"] == "warning"
    assert fr604["POST /api/v1/items/bulk"] == "warning"
    assert fr604["PUT /api/v1/items/{item_id}"] == "passed"
    assert fr604["POST /api/v1/accounts/register"] == "passed"
    assert "GET /api/v1/items" not in fr604  # no body: no item
    assert "`ItemPublic` is both the request body and the response model" in messages(run, "FR604")

    # FR605: nested plain str, a plain form field and a plain query parameter; EmailStr,
    # Optional[EmailStr], validators, patterns and bools pass.
    assert run.outcomes("FR605")["POST /api/v1/accounts/register"] == "passed"
    assert sorted((f["target"], f["message"]) for f in run.findings("FR605")) == [
        ("GET /api/v1/items", "query parameter `email` is a plain `str`, not `EmailStr`"),
        ("POST /api/v1/contact", "request field `Customer.contact_email` is a plain `str`, not `EmailStr`"),
        ("POST /api/v1/orders", "body parameter `reply_email` is a plain `str`, not `EmailStr`"),
    ]

    # FR701: the match-all regex with credentials; not the company regex, not '*' without them.
    finding = only(run.findings("FR701"))
    assert finding["message"] == (
        "CORSMiddleware allow_origin_regex 'https://.*' accepts https://evil.example while "
        "allow_credentials=True"
    )
    assert finding["location"]["file"] == "edgeapp.py"
    assert finding["location"]["line"] == line_of(pytester.path / "edgeapp.py", r"https://\.\*")
    # FR702: an explicit max_age=0; the default allow_methods (GET only) is explicit enough.
    assert messages(run, "FR702") == ["CORSMiddleware sets max_age=0: browsers preflight every request"]

    # FR706: public by tokenUrl, by name (parameters skipped) and by configuration; protected by
    # a scheme, by scopes, by an auth-named header dependency and by a signature check. `author`
    # is not `auth`, a service factory named after auth checks nobody, `refresh` alone is no
    # account flow, and a library's endpoint is the library's business.
    library = only([r for r in run.results_for("FR706") if r["outcome"] == "skipped"])
    assert library["target"] == "POST /api/v1/ext/verify"
    assert "comes from the library module `fastapi.openapi.docs`" in library["message"]
    assert run.outcomes("FR706") == {
        "POST /api/v1/ext/verify": "skipped",
        "POST /api/v1/login/access-token": "passed",
        "POST /api/v1/accounts/register": "passed",
        "POST /api/v1/contact": "passed",
        "PUT /api/v1/items/{item_id}": "passed",
        "PATCH /api/v1/items/{item_id}": "passed",
        "POST /api/v1/items/bulk": "passed",
        "POST /api/v1/webhooks/payment": "passed",
        "POST /api/v1/orders": "passed",
        "POST /api/v1/password-recovery/{email}": "warning",
        "POST /api/v1/auth/refresh": "warning",
        "POST /api/v1/cache/refresh": "warning",
        "POST /api/v1/authors": "warning",
        "DELETE /api/v1/sessions/{session_id}": "warning",
    }
    assert "FR706" in run.output
    # Account flows are judged (RULES.md's defaults are the token endpoint, register, signup and
    # login); the finding says how to make one public on purpose.
    recovery = only(
        [r for r in run.results_for("FR706") if r["target"] == "POST /api/v1/password-recovery/{email}"]
    )
    assert (
        "a password-recovery route: RULES.md makes only the token endpoint, register, signup and login"
        in (recovery["findings"][0]["message"])
    )
    assert "list it in fastapi_rules_public_routes" in recovery["findings"][0]["message"]


MIDDLEWARE_AUTH_APP = """
from fastapi import FastAPI, Request
from pydantic import BaseModel
from starlette.authentication import AuthCredentials, AuthenticationBackend, SimpleUser, requires
from starlette.middleware.authentication import AuthenticationMiddleware


class HeaderBackend(AuthenticationBackend):
    async def authenticate(self, conn):
        if "authorization" not in conn.headers:
            return None
        return AuthCredentials(["authenticated"]), SimpleUser("someone")


class Note(BaseModel):
    text: str


app = FastAPI()
app.add_middleware(AuthenticationMiddleware, backend=HeaderBackend())


@app.post("/api/v1/notes", tags=["notes"], status_code=201)
async def create_note(note: Note) -> Note:
    return note


@app.post("/api/v1/drafts", tags=["notes"], status_code=201)
@requires("authenticated")
async def create_draft(request: Request, note: Note) -> Note:
    return note
"""


def test_no_cors_no_orm_and_auth_in_middleware(pytester: pytest.Pytester, run_rules: Any) -> None:
    pytester.makepyfile(mwapp=textwrap.dedent(MIDDLEWARE_AUTH_APP))
    run = run_rules("mwapp:app", SELECT_OWN)
    results = {(r["code"], r["target"]): r for r in run.report["results"]}
    for code in ("FR701", "FR702"):
        assert results[(code, "app")]["outcome"] == "skipped"
        assert "the app has no CORSMiddleware" in results[(code, "app")]["message"]
    assert results[("FR603", "app")]["outcome"] == "skipped"
    assert "maps no SQLAlchemy ORM classes" in results[("FR603", "app")]["message"]
    # Starlette's AuthenticationMiddleware refuses nothing by itself: a write without a
    # dependency that answered the probes' anonymous request is open to anyone (a middleware
    # "auth" that rejects nothing); one that refuses it (`@requires`) is protected.
    fr706 = results[("FR706", "POST /api/v1/notes")]
    assert fr706["outcome"] == "warning", fr706
    assert fr706["findings"][0]["message"] == (
        "endpoint `create_note` changes data for anyone: the app authenticates in middleware "
        "(`AuthenticationMiddleware`), but the route has no security dependency and the probes' "
        "POST /api/v1/notes without credentials answered 201"
    )
    assert results[("FR706", "POST /api/v1/drafts")]["outcome"] == "passed"
    # The note is both body and response: FR604 still sees it.
    assert results[("FR604", "POST /api/v1/notes")]["outcome"] == "warning"
    assert sorted((r["code"], r["target"]) for r in run.failing()) == [
        ("FR604", "POST /api/v1/drafts"),
        ("FR604", "POST /api/v1/notes"),
        ("FR706", "POST /api/v1/notes"),
    ]

    # Without the middleware the app protects no route at all: auth is elsewhere, or a choice.
    pytester.makepyfile(
        openapp=textwrap.dedent(MIDDLEWARE_AUTH_APP).replace(
            "app.add_middleware(AuthenticationMiddleware, backend=HeaderBackend())", ""
        )
    )
    run = run_rules("openapp:app", "--fastapi-rules-select=FR706")
    for fr706 in run.results_for("FR706"):
        assert fr706["outcome"] == "skipped"
        assert "no route of the app has a security dependency" in fr706["message"]
    assert len(run.results_for("FR706")) == 2


ORM_FLOW_APP = """
    import abc
    from typing import Annotated, Any, Generic, Optional, TypeVar

    from fastapi import Depends, FastAPI
    from pydantic import BaseModel, ConfigDict
    from sqlalchemy import String, select
    from sqlalchemy.ext.asyncio import AsyncSession
    from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


    class Base(DeclarativeBase):
        pass


    class Book(Base):
        __tablename__ = "books"
        id: Mapped[int] = mapped_column(primary_key=True)
        title: Mapped[str] = mapped_column(String(100))


    class Author(Base):
        __tablename__ = "authors"
        id: Mapped[int] = mapped_column(primary_key=True)
        name: Mapped[str] = mapped_column(String(100))


    class Shelf(Base):
        __tablename__ = "shelves"
        id: Mapped[int] = mapped_column(primary_key=True)
        label: Mapped[str] = mapped_column(String(100))


    # Every response model mirrors a mapped class and none sets from_attributes.
    class BookOut(BaseModel):  # filled from what an annotated service call returns
        id: int
        title: str


    class BookSummary(BaseModel):  # filled from an unannotated repository's select(Book)
        id: int
        title: str


    class BookPage(BaseModel):
        items: list[BookSummary]
        total: int


    class AuthorPublic(BaseModel):  # filled from a dependency typed as the ORM class
        id: int
        name: str


    class AuthorOut(BaseModel):  # built from a dict: not ORM-filled
        id: int
        name: str


    class ShelfOut(BaseModel):  # built from selected columns, attribute by attribute
        id: int
        label: str


    class ShelfRead(BaseModel):  # FastCRUD-style: a generic CRUD whose return is a TypeVar
        id: int
        label: str


    async def get_session() -> AsyncSession:
        raise NotImplementedError


    class BookRepository:
        def __init__(self, session: AsyncSession) -> None:
            self.session = session

        async def get(self, book_id: int) -> Optional[Book]:
            return await self.session.get(Book, book_id)

        async def page(self, limit: int):
            rows = await self.session.scalars(select(Book).limit(limit))
            return rows.all()


    class BookService:
        def __init__(self, repository: BookRepository) -> None:
            self.repository = repository

        async def get_book(self, book_id: int):
            book = await self.repository.get(book_id)
            return book

        async def list_books(self, limit: int):
            return await self.repository.page(limit)


    async def get_service(session: Annotated[AsyncSession, Depends(get_session)]) -> BookService:
        return BookService(BookRepository(session))


    async def get_current_author() -> Author:
        raise NotImplementedError


    ModelT = TypeVar("ModelT")


    class GenericCrud(Generic[ModelT]):
        def __init__(self, model: type[ModelT]) -> None:
            self.model = model

        async def get(self, db: Any, **filters: Any) -> Optional[ModelT]:
            raise NotImplementedError


    crud_shelves = GenericCrud(Shelf)
    ServiceDep = Annotated[BookService, Depends(get_service)]
    SessionDep = Annotated[AsyncSession, Depends(get_session)]
    app = FastAPI()


    @app.get("/books/{book_id}")
    async def read_book(book_id: int, service: ServiceDep) -> BookOut:
        book = await service.get_book(book_id)
        return BookOut.model_validate(book)


    @app.get("/books", response_model=BookPage)
    async def read_books(service: ServiceDep, limit: int = 10) -> Any:
        books = await service.list_books(limit)
        return {"items": books, "total": len(books)}


    @app.get("/me")
    async def read_me(me: Annotated[Author, Depends(get_current_author)]) -> AuthorPublic:
        return me


    @app.get("/authors/{author_id}")
    async def read_author(author_id: int) -> AuthorOut:
        row = {"id": author_id, "name": "x"}
        return AuthorOut(**row)


    @app.get("/shelves/{shelf_id}")
    async def read_shelf(shelf_id: int, session: SessionDep) -> ShelfOut:
        row = (await session.execute(select(Shelf.id, Shelf.label).where(Shelf.id == shelf_id))).one()
        return ShelfOut(id=row.id, label=row.label)


    @app.get("/shelves/{shelf_id}/crud", response_model=ShelfRead)
    async def read_shelf_crud(shelf_id: int, session: SessionDep) -> dict:
        shelf = await crud_shelves.get(session, id=shelf_id)
        return shelf


    class ShelfCard(BaseModel):  # filled from ShelfView models, whatever the use case promises
        id: int
        label: str


    class ShelfView(BaseModel):
        model_config = ConfigDict(from_attributes=True)
        id: int
        label: str


    class ShelfUseCase(abc.ABC):  # teamhide/fastapi-boilerplate's ports and adapters
        @abc.abstractmethod
        async def list_shelves(self) -> list[Shelf]:
            \"\"\"A promise the implementation below does not keep.\"\"\"


    class ShelfUseCaseImpl(ShelfUseCase):
        async def list_shelves(self) -> list[ShelfView]:
            return [ShelfView(id=1, label="a")]


    async def get_use_case() -> ShelfUseCase:
        return ShelfUseCaseImpl()


    @app.get("/shelf-cards", response_model=list[ShelfCard])
    async def read_shelf_cards(use_case: Annotated[ShelfUseCase, Depends(get_use_case)]):
        return await use_case.list_shelves()
"""


def test_fr603_needs_orm_evidence(pytester: pytest.Pytester, run_rules: Any) -> None:
    """Only models that a route's code fills from ORM objects are judged: through an annotated
    service call, an unannotated repository's select, a dependency typed as the ORM class. Dicts,
    selected columns, a generic CRUD whose return type is a TypeVar and an abstract method's
    promise (an implementation may return other objects) are no evidence."""
    pytester.makepyfile(ormflowapp=textwrap.dedent(ORM_FLOW_APP))
    run = run_rules("ormflowapp:app", "--fastapi-rules-select=FR603")
    assert messages(run, "FR603") == [
        "response model `AuthorPublic` (of GET /me) mirrors ORM class `Author` but does not set "
        "`from_attributes=True`",
        "response model `BookOut` (of GET /books/{book_id}) mirrors ORM class `Book` but does not "
        "set `from_attributes=True`",
        "response model `BookSummary` (of GET /books) mirrors ORM class `Book` but does not set "
        "`from_attributes=True`",
    ]


# -- the heuristics, directly ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("name", "expected"),
    [
        ("get_current_user", True),
        ("get_current_active_user", True),
        ("current_user", True),
        ("get_current_superuser", True),
        ("require_admin", True),
        ("login_required", True),
        ("verify_token", True),
        ("get_token_header", True),
        ("verify_key", True),
        ("RoleChecker", True),
        ("PermissionChecker", True),
        ("JWTBearer", True),
        ("authenticate", True),
        ("is_authorized", True),
        ("get_author", False),
        ("get_author_service", False),
        ("get_auth_service", False),
        ("get_user_service", False),
        ("get_db", False),
        ("get_user", False),
        ("pagination", False),
    ],
)
def test_auth_names(name: str, expected: bool) -> None:
    assert looks_like_auth(name) is expected


@pytest.mark.parametrize(
    ("path", "token_url", "expected"),
    [
        ("/api/v1/auth/token", "/api/v1/auth/token", True),
        ("/api/v1/auth/token/", "/api/v1/auth/token", True),
        ("/token", "token", True),
        ("/api/v1/login/access-token", "api/v1/login/access-token", True),
        ("/api/v1/auth/token", "https://idp.example/api/v1/auth/token", True),
        ("/api/v1/auth/token", "/prefix/api/v1/auth/token", True),  # behind a root_path
        ("/api/v1/posts", "/api/v1/auth/token", False),
        ("/api/v1/auth/token-info", "/api/v1/auth/token", False),
        ("/token", "token?scope=read", True),
        ("/api/v1/tokens", "api/v1/token", False),
    ],
)
def test_token_url_comparison(path: str, token_url: str, expected: bool) -> None:
    assert is_token_path(path, token_url) is expected


@pytest.mark.parametrize(
    ("pattern", "expected"),
    [
        (".*", "https://evil.example"),
        ("https?://.*", "https://evil.example"),
        (r"http://.*\.test", "http://attacker.test"),
        (r"https://.*\.mycompany\.com", None),
        (r"https://(www\.)?example\.com", None),
        (r"http://localhost:\d+", None),
        ("(", None),  # not a regex: Starlette would refuse it anyway
    ],
)
def test_origin_regex(pattern: str, expected: str | None) -> None:
    assert _regex_matches_unrelated(pattern) == expected


class JWTAuthMiddleware:
    """A pure ASGI middleware that authenticates (by its name)."""


class AuthorTrackingMiddleware:
    """Tracks post authors: `author` is not `auth`."""


async def auth_dispatch(request: Any, call_next: Any) -> Any:
    return await call_next(request)


async def timing_dispatch(request: Any, call_next: Any) -> Any:
    return await call_next(request)


@pytest.mark.parametrize(
    ("cls", "options", "expected"),
    [
        (JWTAuthMiddleware, {}, "JWTAuthMiddleware"),
        (BaseHTTPMiddleware, {"dispatch": auth_dispatch}, "auth_dispatch"),
        (BaseHTTPMiddleware, {"dispatch": timing_dispatch}, None),
        (AuthorTrackingMiddleware, {}, None),
        (CORSMiddleware, {"allow_origins": ["*"]}, None),
        (GZipMiddleware, {}, None),
    ],
)
def test_auth_middleware_names(cls: type, options: dict[str, Any], expected: str | None) -> None:
    facts = SimpleNamespace(middleware=[MiddlewareFacts(cls, options)])
    assert auth_middleware(facts) == expected  # type: ignore[arg-type]


SIGN_IN_APP = """
from typing import Annotated

from fastapi import APIRouter, Depends, FastAPI
from fastapi.security import OAuth2PasswordBearer
from pydantic import BaseModel

oauth2 = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


class Credentials(BaseModel):
    username: str


class Done(BaseModel):
    ok: bool


router = APIRouter(tags=["auth"])


@router.post("/auth/signup")
async def signup(data: Credentials) -> Done:
    return Done(ok=True)


@router.post("/auth/sign-in")
async def sign_in(data: Credentials) -> Done:
    return Done(ok=True)


@router.delete("/items/{item_id}", status_code=204)
async def delete_item(item_id: int, token: Annotated[str, Depends(oauth2)]) -> None:
    return None


app = FastAPI()
app.include_router(router, prefix="/api/v1")
"""


def test_sign_in_spelling_is_public_only_when_listed(pytester: pytest.Pytester, run_rules: Any) -> None:
    """RULES.md makes register, signup and login public: `sign-in` is another spelling a team may
    choose, judged by default with the setting named, and public once listed."""
    pytester.makepyfile(signinapp=SIGN_IN_APP)
    run = run_rules("signinapp:app", "--fastapi-rules-select=FR706")
    assert run.outcomes("FR706") == {
        "POST /api/v1/auth/signup": "passed",
        "POST /api/v1/auth/sign-in": "warning",
        "DELETE /api/v1/items/{item_id}": "passed",
    }, run.output
    message = only(run.findings("FR706"))["message"]
    assert message.startswith("endpoint `sign_in` changes data without a security dependency"), message
    assert message.endswith(
        "(a sign-in route, not spelled register, signup or login: RULES.md makes only the token "
        "endpoint, register, signup and login public by default; if `POST /api/v1/auth/sign-in` is "
        "public on purpose, list it in fastapi_rules_public_routes)"
    ), message
    pytester.makeini("[pytest]\nfastapi_rules_public_routes =\n    POST /api/v1/auth/sign-in\n")
    listed = run_rules("signinapp:app", "--fastapi-rules-select=FR706")
    assert listed.outcomes("FR706")["POST /api/v1/auth/sign-in"] == "passed", listed.output
