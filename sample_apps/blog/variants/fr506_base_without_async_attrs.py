"""FR506 violation: a second declarative base, for analytics tables, without AsyncAttrs."""

from sqlalchemy import MetaData, String
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

from src.database import convention
from src.main import create_application


class AnalyticsBase(DeclarativeBase):
    metadata = MetaData(naming_convention=convention)


class PageView(AnalyticsBase):
    __tablename__ = "page_views"

    id: Mapped[int] = mapped_column(primary_key=True)
    path: Mapped[str] = mapped_column(String(200))


app = create_application()
