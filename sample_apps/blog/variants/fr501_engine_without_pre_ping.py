"""FR501 violation: a second engine, for reports, created without pool_pre_ping.

The app's own engine (sessionmanager.init in the lifespan) is conforming; this one hands a
connection the database already closed to the next report query.
"""

from sqlalchemy.ext.asyncio import create_async_engine

from src.config import get_settings
from src.main import create_application

settings = get_settings()

reports_engine = create_async_engine(settings.DATABASE_URL, pool_recycle=3600)

app = create_application()
