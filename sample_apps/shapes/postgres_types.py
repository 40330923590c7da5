"""PostgreSQL's own column types: JSONB, ARRAY, UUID, INET and TSVECTOR, on a BigInteger key."""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import BigInteger, String, select
from sqlalchemy.dialects.postgresql import ARRAY, INET, JSONB, TSVECTOR, UUID
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Event(Base):
    __tablename__ = "events"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    tags: Mapped[list[str]] = mapped_column(ARRAY(String(30)))
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB)
    reference: Mapped[uuid.UUID] = mapped_column(UUID(as_uuid=True))
    source: Mapped[str] = mapped_column(INET)
    # No Python type at all: the generator falls back to text, which PostgreSQL parses.
    search: Mapped[str] = mapped_column(TSVECTOR)


class EventOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str
    tags: list[str]
    payload: dict[str, Any]
    reference: uuid.UUID


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


@app.get("/api/v1/events", tags=["events"])
async def list_events(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[EventOut]:
    rows = await db.scalars(select(Event).order_by(Event.id).limit(limit))
    return [EventOut.model_validate(row) for row in rows]


@app.get("/api/v1/events/{event_id}", tags=["events"])
async def get_event(event_id: int, db: Session) -> EventOut:
    event = await db.get(Event, event_id)
    if event is None:
        raise HTTPException(status_code=404, detail="event not found")
    return EventOut.model_validate(event)
