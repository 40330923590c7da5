"""A composite primary key that asks for autoincrement, which SQLite cannot compile as declared."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, Integer, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Org(Base):
    __tablename__ = "orgs"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))


class Membership(Base):
    __tablename__ = "memberships"
    id: Mapped[int] = mapped_column(Integer, primary_key=True, autoincrement=True)
    org_id: Mapped[int] = mapped_column(ForeignKey("orgs.id"), primary_key=True)
    role: Mapped[str] = mapped_column(String(20))


class MembershipOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    org_id: int
    role: str


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


@app.get("/api/v1/orgs/{org_id}/memberships", tags=["orgs"])
async def list_memberships(
    org_id: int, db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> list[MembershipOut]:
    rows = await db.scalars(select(Membership).where(Membership.org_id == org_id).limit(limit))
    return [MembershipOut.model_validate(row) for row in rows]


@app.get("/api/v1/memberships", tags=["orgs"])
async def all_memberships(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[MembershipOut]:
    rows = await db.scalars(select(Membership).order_by(Membership.org_id, Membership.id).limit(limit))
    return [MembershipOut.model_validate(row) for row in rows]


@app.get("/api/v1/memberships/{membership_id}", tags=["orgs"])
async def get_membership(membership_id: int, db: Session) -> MembershipOut:
    membership = await db.scalar(select(Membership).where(Membership.id == membership_id))
    if membership is None:
        raise HTTPException(status_code=404, detail="membership not found")
    return MembershipOut.model_validate(membership)
