"""FR503 violation: an engine whose SQL logging is on exactly in production.

The condition was meant to be `!=`: in development echo is off, so nobody notices.
"""

from sqlalchemy.ext.asyncio import create_async_engine

from src.config import get_settings
from src.main import create_application

settings = get_settings()

reports_engine = create_async_engine(
    settings.DATABASE_URL,
    pool_pre_ping=True,
    pool_recycle=3600,
    echo=settings.ENVIRONMENT == "production",
)

app = create_application()
