"""
Database engine, session factory and the session dependency.

The engine is created by the application lifespan (sessionmanager.init), never at
import time, and disposed on shutdown.
"""

from collections.abc import AsyncIterator
from typing import Any

from sqlalchemy import MetaData, event, text
from sqlalchemy.ext.asyncio import (
    AsyncAttrs,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import DeclarativeBase

from src.config import get_settings

# Predictable constraint names, so that migrations can refer to them
convention = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}


class Base(AsyncAttrs, DeclarativeBase):
    """Base class of every model; AsyncAttrs adds `await obj.awaitable_attrs.x`."""

    metadata = MetaData(naming_convention=convention)


def _enable_sqlite_foreign_keys(dbapi_connection: Any, _connection_record: Any) -> None:
    """SQLite ignores foreign keys (and ON DELETE CASCADE) unless asked per connection."""
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


class DatabaseSessionManager:
    """Owns the engine and the session factory for the lifetime of the application."""

    def __init__(self) -> None:
        self._engine: AsyncEngine | None = None
        self._sessionmaker: async_sessionmaker[AsyncSession] | None = None

    def init(self, db_url: str) -> None:
        settings = get_settings()
        self._engine = create_async_engine(
            db_url,
            echo=settings.DB_ECHO,
            pool_size=settings.DB_POOL_SIZE,
            max_overflow=settings.DB_MAX_OVERFLOW,
            pool_timeout=settings.DB_POOL_TIMEOUT,
            pool_recycle=settings.DB_POOL_RECYCLE,
            pool_pre_ping=True,  # drop dead connections before using them
        )
        if self._engine.dialect.name == "sqlite":
            # Events go on the sync engine: an AsyncEngine does not take listeners
            event.listen(self._engine.sync_engine, "connect", _enable_sqlite_foreign_keys)
        self._sessionmaker = async_sessionmaker(
            bind=self._engine,
            expire_on_commit=False,  # objects stay readable after commit (no lazy IO)
            autoflush=False,
        )

    async def close(self) -> None:
        if self._engine is not None:
            await self._engine.dispose()
            self._engine = None
            self._sessionmaker = None

    @property
    def engine(self) -> AsyncEngine:
        if self._engine is None:
            raise RuntimeError("DatabaseSessionManager is not initialized")
        return self._engine

    @property
    def session_factory(self) -> async_sessionmaker[AsyncSession]:
        if self._sessionmaker is None:
            raise RuntimeError("DatabaseSessionManager is not initialized")
        return self._sessionmaker

    async def ping(self) -> None:
        """Run SELECT 1: raises if the database cannot be reached."""
        async with self.session_factory() as session:
            await session.execute(text("SELECT 1"))

    async def create_all(self) -> None:
        """Create missing tables (development only; use migrations elsewhere)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(Base.metadata.create_all)


sessionmanager = DatabaseSessionManager()


async def get_db() -> AsyncIterator[AsyncSession]:
    """
    One session per request: commit on success, roll back on error, always close.

    Repositories flush every write, so constraint errors surface inside the
    endpoint, as errors, and the commit here only makes the work permanent.
    """
    async with sessionmanager.session_factory() as session:
        try:
            yield session
            await session.commit()
        except Exception:
            await session.rollback()
            raise
