"""FR306 violation: a session dependency without `async with` and without rollback.

It commits after a successful request, but when the request fails the exception ends the generator
at `yield`: no rollback, no close, and the connection stays checked out of the pool.
"""

from collections.abc import AsyncIterator

from sqlalchemy.ext.asyncio import AsyncSession

from src.database import get_db, sessionmanager
from src.main import create_application


async def get_db_without_cleanup() -> AsyncIterator[AsyncSession]:
    session = sessionmanager.session_factory()
    yield session
    await session.commit()


app = create_application()
app.dependency_overrides[get_db] = get_db_without_cleanup
