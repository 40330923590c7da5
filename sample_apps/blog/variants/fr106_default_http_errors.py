"""FR106 violation: HTTP errors go back to FastAPI's default handler.

Domain and validation errors answer the `{"error": ..., "message": ...}` envelope, but a 401 from
the OAuth2 scheme answers `{"detail": "Not authenticated"}`: clients need two parsers.
"""

from fastapi.exception_handlers import http_exception_handler
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.main import create_application

app = create_application()
app.add_exception_handler(StarletteHTTPException, http_exception_handler)
