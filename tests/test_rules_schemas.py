"""The schema rules (FR6xx): FR603's evidence that a schema mirrors an ORM class.

The conforming blog, the variants and the edge cases of FR601 and FR603-FR605 are judged in one run
with the security rules (test_rules_schemas_security.py); FR602, the v1 API called in code, with the
other source rules (test_rules_source.py).
"""

from __future__ import annotations

import textwrap
from typing import Any

import pytest

from tests.conftest import messages

# -- FR603: which schemas mirror an ORM class ------------------------------------------------------

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
