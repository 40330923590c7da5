"""
Base domain exceptions.

Services raise these (never HTTPException); one handler in main.py turns any
DomainError into the JSON error envelope with its status code.
"""

from typing import Any


class DomainError(Exception):
    message: str = "A domain error occurred"
    error_code: str = "domain_error"  # machine-readable
    status_code: int = 400

    def __init__(self, message: str | None = None, details: dict[str, Any] | None = None) -> None:
        self.message = message or self.message
        self.details = details or {}
        super().__init__(self.message)


class NotFoundError(DomainError):
    message = "Resource not found"
    error_code = "not_found"
    status_code = 404


class AlreadyExistsError(DomainError):
    message = "Resource already exists"
    error_code = "already_exists"
    status_code = 409


class ValidationError(DomainError):
    message = "Validation failed"
    error_code = "validation_error"
    status_code = 422


class AuthenticationError(DomainError):
    message = "Authentication failed"
    error_code = "authentication_error"
    status_code = 401


class AuthorizationError(DomainError):
    message = "Insufficient permissions"
    error_code = "authorization_error"
    status_code = 403


class ServiceUnavailableError(DomainError):
    message = "Service unavailable"
    error_code = "service_unavailable"
    status_code = 503
