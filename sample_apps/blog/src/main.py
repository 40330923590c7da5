"""
FastAPI application entry point: lifespan, factory, middleware, error handlers,
health checks and routers.
"""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from http import HTTPStatus
from typing import Any

import structlog
from fastapi import FastAPI, Request, status
from fastapi.exceptions import RequestValidationError
from fastapi.middleware.cors import CORSMiddleware
from fastapi.middleware.trustedhost import TrustedHostMiddleware
from fastapi.responses import JSONResponse
from sqlalchemy.exc import SQLAlchemyError
from starlette.exceptions import HTTPException as StarletteHTTPException

from src.auth.router import router as auth_router
from src.config import get_settings
from src.database import sessionmanager
from src.logging_config import configure_logging
from src.posts.router import router as posts_router
from src.shared.exceptions import DomainError, ServiceUnavailableError
from src.shared.schemas import ErrorResponse, HealthResponse, ReadinessResponse
from src.users.router import router as users_router

logger = structlog.get_logger(__name__)


@asynccontextmanager
async def lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Startup and shutdown (replaces the deprecated @app.on_event)."""
    settings = get_settings()
    configure_logging()
    sessionmanager.init(settings.DATABASE_URL)
    try:
        if settings.ENVIRONMENT == "development":
            await sessionmanager.create_all()  # elsewhere the schema comes from migrations
        logger.info("starting_application", environment=settings.ENVIRONMENT, version=settings.VERSION)
        yield
    finally:
        await sessionmanager.close()
        logger.info("application_shutdown_complete")


# ─────────────────────────────────────────────────────────────
# Error handlers: every error answers the same JSON envelope,
# {"error": <machine code>, "message": <text>, "details": {...}}
# ─────────────────────────────────────────────────────────────


def error_response(
    status_code: int,
    error: str,
    message: str,
    details: dict[str, Any] | None = None,
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body = ErrorResponse(error=error, message=message, details=details or {})
    return JSONResponse(status_code=status_code, content=body.model_dump(), headers=headers)


async def domain_error_handler(request: Request, exc: DomainError) -> JSONResponse:
    headers = {"WWW-Authenticate": "Bearer"} if exc.status_code == 401 else None
    return error_response(exc.status_code, exc.error_code, exc.message, exc.details, headers)


async def http_exception_handler(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """Framework errors (404 route, 405, 401 from OAuth2PasswordBearer), headers kept."""
    error = HTTPStatus(exc.status_code).phrase.lower().replace(" ", "_")
    return error_response(exc.status_code, error, str(exc.detail), headers=exc.headers)


async def validation_exception_handler(request: Request, exc: RequestValidationError) -> JSONResponse:
    # No "input" echo: it could hold a password
    errors = [{"loc": list(e["loc"]), "message": e["msg"], "type": e["type"]} for e in exc.errors()]
    return error_response(422, "validation_error", "Request validation failed", {"errors": errors})


async def unhandled_exception_handler(request: Request, exc: Exception) -> JSONResponse:
    """Log the full traceback; tell the client nothing about it."""
    logger.error("unhandled_exception", path=request.url.path, method=request.method, exc_info=exc)
    return error_response(
        status.HTTP_500_INTERNAL_SERVER_ERROR,
        "internal_server_error",
        "An unexpected error occurred",
    )


def create_application() -> FastAPI:
    """Application factory: reads the settings when called."""
    settings = get_settings()
    production = settings.ENVIRONMENT == "production"
    app = FastAPI(
        title=settings.PROJECT_NAME,
        description=settings.PROJECT_DESCRIPTION,
        version=settings.VERSION,
        lifespan=lifespan,
        docs_url=None if production else "/docs",
        redoc_url=None if production else "/redoc",
        openapi_url=None if production else "/openapi.json",
    )

    # Middleware: the last added runs first
    app.add_middleware(
        CORSMiddleware,
        allow_origins=settings.BACKEND_CORS_ORIGINS,  # an explicit list, never "*"
        allow_credentials=True,
        allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"],
        allow_headers=["Authorization", "Content-Type"],
        max_age=600,  # cache preflight answers for 10 minutes
    )
    app.add_middleware(TrustedHostMiddleware, allowed_hosts=settings.ALLOWED_HOSTS)

    app.add_exception_handler(DomainError, domain_error_handler)
    app.add_exception_handler(StarletteHTTPException, http_exception_handler)
    app.add_exception_handler(RequestValidationError, validation_exception_handler)
    app.add_exception_handler(Exception, unhandled_exception_handler)

    @app.get("/health", tags=["Health"])
    async def health_check() -> HealthResponse:
        """Liveness: the process answers."""
        return HealthResponse(status="healthy", version=settings.VERSION, environment=settings.ENVIRONMENT)

    @app.get("/health/ready", tags=["Health"])
    async def readiness_check() -> ReadinessResponse:
        """Readiness: the database answers SELECT 1 (503 otherwise)."""
        try:
            await sessionmanager.ping()
        except (SQLAlchemyError, OSError) as exc:
            logger.warning("database_unreachable", exc_info=exc)
            raise ServiceUnavailableError("Database is not reachable") from exc
        return ReadinessResponse(status="ready", database="ok")

    # Every API error documents the envelope ("default" also replaces FastAPI's 422 schema)
    errors: dict[int | str, dict[str, Any]] = {"default": {"model": ErrorResponse}}
    app.include_router(auth_router, prefix="/api/v1/auth", tags=["Auth"], responses=errors)
    app.include_router(users_router, prefix="/api/v1/users", tags=["Users"], responses=errors)
    app.include_router(posts_router, prefix="/api/v1/posts", tags=["Posts"], responses=errors)

    return app


app = create_application()
