"""FR511 violation: the session manager's engine is created without pool_pre_ping.

After a database restart or failover, the pool hands out connections the server already closed:
the first request on each one fails with a 500.
"""

from sqlalchemy.ext.asyncio import async_sessionmaker, create_async_engine

from src.database import sessionmanager
from src.main import create_application


def init_without_pre_ping(db_url: str) -> None:
    sessionmanager._engine = create_async_engine(db_url, pool_size=5, max_overflow=10, pool_recycle=3600)
    sessionmanager._sessionmaker = async_sessionmaker(
        bind=sessionmanager._engine, expire_on_commit=False, autoflush=False
    )


sessionmanager.init = init_without_pre_ping  # type: ignore[method-assign]

app = create_application()
