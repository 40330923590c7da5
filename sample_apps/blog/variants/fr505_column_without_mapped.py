"""FR505 violation: a model with a 1.x-style Column() attribute, without Mapped[...]."""

from sqlalchemy import Column, String
from sqlalchemy.orm import Mapped, mapped_column

from src.database import Base
from src.main import create_application


class AuditEntry(Base):
    __tablename__ = "audit_entries"

    id: Mapped[int] = mapped_column(primary_key=True)
    action = Column(String(50), nullable=False)


app = create_application()
