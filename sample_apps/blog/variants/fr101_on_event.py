"""FR101 violation: a startup hook added with @app.on_event beside the app's lifespan.

The app passes lifespan=, so this handler is never called: the cache is never warmed.
"""

from src.main import create_application

app = create_application()


@app.on_event("startup")
async def warm_up_cache() -> None:
    """Fill the in-memory caches before the first request."""
