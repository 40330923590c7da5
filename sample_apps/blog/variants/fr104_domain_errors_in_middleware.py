"""FR104 violation: domain errors are turned into responses by a middleware, not a handler.

Clients see the same envelope, but no exception handler is registered for DomainError.
"""

from starlette.requests import Request
from starlette.types import ASGIApp, Receive, Scope, Send

from src.main import create_application, domain_error_handler
from src.shared.exceptions import DomainError


class DomainErrorMiddleware:
    """Catch DomainError around the app and answer the error envelope."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await self.app(scope, receive, send)
        except DomainError as exc:
            response = await domain_error_handler(Request(scope), exc)
            await response(scope, receive, send)


app = create_application()
del app.exception_handlers[DomainError]
app.add_middleware(DomainErrorMiddleware)
