"""FR504 violation: a session factory for reports that keeps expire_on_commit=True.

After a commit every report row is expired, and reading it again needs a lazy load that an
AsyncSession cannot do (MissingGreenlet).
"""

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from src.config import get_settings
from src.main import create_application

settings = get_settings()

reports_engine = create_async_engine(settings.DATABASE_URL, pool_pre_ping=True, pool_recycle=3600)
ReportsSession = async_sessionmaker(reports_engine, autoflush=False)

app = create_application()
