"""FR507 violation: a second declarative base whose MetaData has no naming convention."""

from sqlalchemy import String
from sqlalchemy.ext.asyncio import AsyncAttrs
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from src.main import create_application


class ArchiveBase(AsyncAttrs, DeclarativeBase):
    pass


class ArchivedPost(ArchiveBase):
    __tablename__ = "archived_posts"

    id: Mapped[int] = mapped_column(primary_key=True)
    title: Mapped[str] = mapped_column(String(200))


app = create_application()
