"""FR210 violation: the validation error handler logs the offending JSON body.

`await request.json()` raises on a malformed body, inside the handler: the client gets a 500
instead of the 422 it caused.
"""

import structlog
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from src.main import create_application, validation_exception_handler

logger = structlog.get_logger(__name__)


async def logging_validation_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    if request.headers.get("content-type", "").startswith("application/json"):
        logger.warning("invalid_request", body=await request.json())  # malformed JSON raises here
    return await validation_exception_handler(request, exc)


app = create_application()
app.add_exception_handler(RequestValidationError, logging_validation_handler)
