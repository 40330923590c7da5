"""Schemas shared by every domain."""

from enum import Enum
from typing import Any

from pydantic import BaseModel


class SortOrder(str, Enum):
    ASC = "asc"
    DESC = "desc"


class ErrorResponse(BaseModel):
    """The one envelope of every error response (domain, HTTP, validation, 500)."""

    error: str
    message: str
    details: dict[str, Any] = {}


class HealthResponse(BaseModel):
    status: str
    version: str
    environment: str


class ReadinessResponse(BaseModel):
    status: str
    database: str
