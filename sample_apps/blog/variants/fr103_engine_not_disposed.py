"""FR103 violation: the lifespan creates the engine at startup and never disposes it.

The schema comes from migrations here (no create_all), and shutdown forgets
`await sessionmanager.close()`: the pool's connections stay open after the app stops.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI

from src.config import get_settings
from src.database import sessionmanager
from src.logging_config import configure_logging
from src.main import create_application


@asynccontextmanager
async def lifespan_without_close(app: FastAPI) -> AsyncIterator[None]:
    configure_logging()
    sessionmanager.init(get_settings().DATABASE_URL)
    yield


app = create_application()
app.router.lifespan_context = lifespan_without_close
