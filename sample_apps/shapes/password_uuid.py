"""Users keyed by a UUID column type, created with a password (SQLModel's shape).

The password scan of FR705 looks for the plain password in the columns that hold text; binding it
to the UUID column instead made the column's type raise, and the whole probe run with it.
"""

import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Annotated, Any

import bcrypt
from fastapi import Depends, FastAPI, Query
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import CHAR, String, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

engine = create_async_engine(os.environ["DATABASE_URL"], pool_pre_ping=True)
sessions = async_sessionmaker(engine, expire_on_commit=False)


class GUID(TypeDecorator[uuid.UUID]):
    """SQLModel's old GUID: CHAR(32) holding the hex, UUID objects in Python."""

    impl = CHAR(32)
    cache_ok = True

    def process_bind_param(self, value: Any, dialect: Any) -> str | None:
        if value is None:
            return None
        return f"{(value if isinstance(value, uuid.UUID) else uuid.UUID(value)).int:032x}"

    def process_result_value(self, value: Any, dialect: Any) -> uuid.UUID | None:
        return None if value is None else uuid.UUID(value)


class Base(DeclarativeBase):
    pass


class User(Base):
    __tablename__ = "users"
    id: Mapped[uuid.UUID] = mapped_column(GUID, primary_key=True, default=uuid.uuid4)
    email: Mapped[str] = mapped_column(String(120), unique=True)
    hashed_password: Mapped[str] = mapped_column(String(100))


class UserCreate(BaseModel):
    email: str = Field(max_length=120, pattern=r"^[^@\s]+@[^@\s]+\.[a-z]+$")
    password: str = Field(min_length=8, max_length=64)


class UserOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)
    id: uuid.UUID
    email: str


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


@app.get("/api/v1/users", tags=["users"])
async def list_users(db: Session, limit: Annotated[int, Query(ge=1, le=100)] = 20) -> list[UserOut]:
    rows = await db.scalars(select(User).order_by(User.email).limit(limit))
    return [UserOut.model_validate(row) for row in rows]


@app.post("/api/v1/users", status_code=201, tags=["users"])
async def create_user(body: UserCreate, db: Session) -> UserOut:
    hashed = bcrypt.hashpw(body.password.encode(), bcrypt.gensalt(rounds=4)).decode()
    user = User(email=body.email, hashed_password=hashed)
    db.add(user)
    await db.flush()
    return UserOut.model_validate(user)
