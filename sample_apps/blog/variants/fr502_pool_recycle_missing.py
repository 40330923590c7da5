"""FR502 violation: a second engine, for reports, that never recycles its connections.

pool_pre_ping is there, but pool_recycle is left at SQLAlchemy's default of -1.
"""

from sqlalchemy.ext.asyncio import create_async_engine

from src.config import get_settings
from src.main import create_application

settings = get_settings()

reports_engine = create_async_engine(settings.DATABASE_URL, pool_pre_ping=True)

app = create_application()
