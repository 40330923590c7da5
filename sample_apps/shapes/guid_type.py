"""An app's own column types: a GUID stored as CHAR(32), and a type no generator can fill.

``GUID`` is the recipe many apps copy (mealie's among them): ``process_bind_param`` accepts a UUID
or its text and raises on anything else, so a value generated for its ``impl`` (text) is refused.
The mapped attribute says ``Mapped[uuid.UUID]`` for documents and names the decorator itself for
notes (``Mapped[GUID]``, as mealie does). ``Sealed`` accepts only ``Sealed.Box`` objects: nothing
the generator makes fits, so the ``vault`` table needs a row factory
(``fastapi_rules_row_factories = vault = guid_type:vault_row``); without one it cannot be seeded,
and only the route that reads it is skipped.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CHAR, ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class GUID(TypeDecorator[uuid.UUID]):
    impl = CHAR(32)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, uuid.UUID):
            value = uuid.UUID(value)  # "badly formed hexadecimal UUID string" for other text
        return f"{value.int:032x}"

    def process_result_value(self, value: Any, dialect: Any) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(value)


class Sealed(TypeDecorator[str]):
    impl = String(64)
    cache_ok = True

    class Box:
        def __init__(self, secret: str) -> None:
            self.secret = secret

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        if not isinstance(value, Sealed.Box):
            raise TypeError(f"Sealed takes a Sealed.Box, not {type(value).__name__}")
        return value.secret[::-1]

    def process_result_value(self, value: Any, dialect: Any) -> str | None:
        return None if value is None else value[::-1]


class Base(DeclarativeBase):
    pass


class Document(Base):
    __tablename__ = "documents"
    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=uuid.uuid4)
    title: Mapped[str] = mapped_column(String(80))


class Note(Base):
    __tablename__ = "notes"
    id: Mapped[GUID] = mapped_column(GUID, primary_key=True, default=uuid.uuid4)
    document_id: Mapped[GUID] = mapped_column(GUID, ForeignKey("documents.id"))
    text: Mapped[str] = mapped_column(String(200))


class Vault(Base):
    __tablename__ = "vault"
    id: Mapped[int] = mapped_column(primary_key=True)
    secret: Mapped[str] = mapped_column(Sealed)


def vault_row(index: int) -> dict[str, Any]:
    """The row factory the tests name for ``vault``: the value only the app knows how to make."""
    return {"secret": Sealed.Box(f"sealed-{index}")}


class DocumentIn(BaseModel):
    title: str = Field(max_length=80)


class DocumentOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    title: str


async def get_session() -> AsyncIterator[AsyncSession]:
    async with sessions() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    async with engine.begin() as connection:
        await connection.run_sync(Base.metadata.create_all)
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)
Session = Annotated[AsyncSession, Depends(get_session)]


@app.get("/api/v1/documents", tags=["documents"])
async def list_documents(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[DocumentOut]:
    rows = await db.scalars(select(Document).order_by(Document.title).limit(limit))
    return [DocumentOut.model_validate(row) for row in rows]


@app.get("/api/v1/documents/{document_id}", tags=["documents"])
async def get_document(document_id: uuid.UUID, db: Session) -> DocumentOut:
    document = await db.get(Document, document_id)
    if document is None:
        raise HTTPException(status_code=404, detail="document not found")
    return DocumentOut.model_validate(document)


@app.post("/api/v1/documents", status_code=201, tags=["documents"])
async def create_document(body: DocumentIn, db: Session) -> DocumentOut:
    document = Document(title=body.title)
    db.add(document)
    await db.flush()
    return DocumentOut.model_validate(document)


@app.get("/api/v1/documents/{document_id}/notes", tags=["documents"])
async def list_notes(document_id: uuid.UUID, db: Session) -> list[str]:
    rows = await db.scalars(select(Note.text).where(Note.document_id == document_id).limit(100))
    return list(rows)


@app.get("/api/v1/vault", tags=["vault"])
async def list_vault(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[str]:
    rows = await db.scalars(select(Vault.secret).order_by(Vault.id).limit(limit))
    return list(rows)
