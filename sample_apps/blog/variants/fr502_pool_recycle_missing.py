"""FR502 violation: a second engine, for reports, that never recycles its connections.

pool_pre_ping is there, but pool_recycle is left at SQLAlchemy's default of -1. The engine is a
PostgreSQL one (a SQLite file has no server to time connections out, so FR502 leaves it alone);
creating it connects to nothing, and nothing in the app uses it.
"""

from sqlalchemy.ext.asyncio import create_async_engine

from src.main import create_application

reports_engine = create_async_engine(
    "postgresql+asyncpg://reports@127.0.0.1:9/reports", pool_pre_ping=True
)

app = create_application()
