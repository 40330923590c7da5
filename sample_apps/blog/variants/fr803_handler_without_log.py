"""FR803 violation: the generic error handler answers 500 but never logs the exception."""

from fastapi import Request
from fastapi.responses import JSONResponse

from src.main import create_application, error_response


async def silent_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    return error_response(500, "internal_server_error", "An unexpected error occurred")


app = create_application()
app.add_exception_handler(Exception, silent_exception_handler)
