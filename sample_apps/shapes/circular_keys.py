"""Two tables that refer to each other: a case has a lead participant, a participant belongs to a
case. The key from cases to participants is added after both tables exist (``use_alter``), as
Netflix/dispatch declares it. Teams and members refer to each other the same way without
``use_alter``: SQLAlchemy warns that it cannot sort them, and both must still get rows. A table
beside them that cannot be created at all makes the plugin create the tables one by one, which
must still give the others."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict
from sqlalchemy import ForeignKey, String, select, text
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Case(Base):
    __tablename__ = "cases"
    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(80))
    lead_id: Mapped[int | None] = mapped_column(
        ForeignKey("participants.id", use_alter=True, name="fk_cases_lead_id")
    )


class Participant(Base):
    __tablename__ = "participants"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    case_id: Mapped[int | None] = mapped_column(ForeignKey("cases.id"))


class Team(Base):
    __tablename__ = "teams"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    captain_id: Mapped[int | None] = mapped_column(ForeignKey("members.id"))


class Member(Base):
    __tablename__ = "members"
    id: Mapped[int] = mapped_column(primary_key=True)
    name: Mapped[str] = mapped_column(String(80))
    team_id: Mapped[int | None] = mapped_column(ForeignKey("teams.id"))


class Audit(Base):
    """A table no database can hold as declared (its default calls a function nobody has): the
    whole schema cannot be created at once, so the tables are created one by one."""

    __tablename__ = "audits"
    id: Mapped[int] = mapped_column(primary_key=True)
    stamp: Mapped[str] = mapped_column(String(40), server_default=text("fastapi_rules_no_such_function()"))


class CaseOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
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
    try:
        yield
    finally:
        await engine.dispose()


app = FastAPI(lifespan=lifespan)
Session = Annotated[AsyncSession, Depends(get_session)]


@app.get("/api/v1/cases", tags=["cases"])
async def list_cases(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[CaseOut]:
    rows = await db.scalars(select(Case).order_by(Case.id).limit(limit))
    return [CaseOut.model_validate(row) for row in rows]


@app.get("/api/v1/participants", tags=["cases"])
async def list_participants(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[str]:
    return list(await db.scalars(select(Participant.name).order_by(Participant.id).limit(limit)))


@app.get("/api/v1/teams/{team_id}", tags=["teams"])
async def get_team(team_id: int, db: Session) -> str:
    team = await db.get(Team, team_id)
    if team is None:
        raise HTTPException(404, "no such team")
    return team.name


@app.get("/api/v1/members", tags=["teams"])
async def list_members(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[str]:
    return list(await db.scalars(select(Member.name).order_by(Member.id).limit(limit)))
