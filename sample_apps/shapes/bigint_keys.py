"""BigInteger primary keys: SQLite fills a key only when it is declared exactly INTEGER."""

import os
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated

from fastapi import Depends, FastAPI, HTTPException, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import BigInteger, ForeignKey, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class Base(DeclarativeBase):
    pass


class Account(Base):
    __tablename__ = "accounts"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    name: Mapped[str] = mapped_column(String(80))


class Token(Base):
    __tablename__ = "tokens"
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True)
    account_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("accounts.id"))
    label: Mapped[str] = mapped_column(String(80))


class AccountIn(BaseModel):
    name: str = Field(max_length=80)


class AccountOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: int
    name: str


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


@app.get("/api/v1/accounts", tags=["accounts"])
async def list_accounts(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[AccountOut]:
    rows = await db.scalars(select(Account).order_by(Account.id).limit(limit))
    return [AccountOut.model_validate(row) for row in rows]


@app.get("/api/v1/accounts/{account_id}", tags=["accounts"])
async def get_account(account_id: int, db: Session) -> AccountOut:
    account = await db.get(Account, account_id)
    if account is None:
        raise HTTPException(status_code=404, detail="account not found")
    return AccountOut.model_validate(account)


@app.post("/api/v1/accounts", status_code=201, tags=["accounts"])
async def create_account(body: AccountIn, db: Session) -> AccountOut:
    account = Account(name=body.name)
    db.add(account)
    await db.flush()
    return AccountOut.model_validate(account)


@app.get("/api/v1/accounts/{account_id}/tokens", tags=["accounts"])
async def list_tokens(account_id: int, db: Session) -> list[str]:
    rows = await db.scalars(select(Token.label).where(Token.account_id == account_id).limit(100))
    return list(rows)
