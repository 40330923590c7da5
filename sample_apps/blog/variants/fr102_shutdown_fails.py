"""FR102 violation: shutdown flushes a metrics client that startup never connected.

The lifespan wraps the conforming one and, after it, flushes a client that is still None: every
shutdown ends with an AttributeError.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI

from src.main import create_application, lifespan

metrics_client: Any = None  # meant to be connected at startup; never is


@asynccontextmanager
async def lifespan_with_metrics(app: FastAPI) -> AsyncIterator[None]:
    async with lifespan(app):
        yield
    await metrics_client.flush()


app = create_application()
app.router.lifespan_context = lifespan_with_metrics
