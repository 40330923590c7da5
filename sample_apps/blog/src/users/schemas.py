from datetime import datetime
from enum import Enum
from typing import Annotated

from pydantic import BaseModel, ConfigDict, EmailStr, Field, field_validator

from src.auth.security import BCRYPT_MAX_BYTES

Username = Annotated[str, Field(min_length=3, max_length=50, pattern=r"^[A-Za-z0-9_.-]+$")]
Bio = Annotated[str, Field(max_length=500)]


class UserSortBy(str, Enum):
    CREATED_AT = "created_at"
    USERNAME = "username"


# ─────────────────────────────────────────────────────────────
# Requests
# ─────────────────────────────────────────────────────────────


class UserBase(BaseModel):
    email: EmailStr
    username: Username
    bio: Bio | None = None

    @field_validator("email")
    @classmethod
    def normalize_email(cls, value: str) -> str:
        return value.lower()


class UserCreate(UserBase):
    password: str = Field(min_length=8)

    @field_validator("password")
    @classmethod
    def fits_bcrypt(cls, value: str) -> str:
        if len(value.encode()) > BCRYPT_MAX_BYTES:
            raise ValueError(f"must be at most {BCRYPT_MAX_BYTES} bytes")
        return value


class UserReplace(UserBase):
    """PUT: the full representation; every field is required (bio may be null)."""

    bio: Bio | None


class UserUpdate(BaseModel):
    """PATCH: every field is optional; only the fields sent change."""

    email: EmailStr | None = None
    username: Username | None = None
    bio: Bio | None = None

    @field_validator("email", "username")
    @classmethod
    def not_null(cls, value: str | None) -> str:
        # Omitted fields skip validators; an explicit null for a NOT NULL column fails
        if value is None:
            raise ValueError("may be omitted, but not null")
        return value

    @field_validator("email")
    @classmethod
    def normalize_email(cls, value: str) -> str:
        return value.lower()


# ─────────────────────────────────────────────────────────────
# Responses (never a password or its hash)
# ─────────────────────────────────────────────────────────────


class UserPublic(BaseModel):
    """What anyone may see about a user (no email)."""

    model_config = ConfigDict(from_attributes=True)

    id: int
    username: str
    bio: str | None
    created_at: datetime


class UserResponse(UserPublic):
    """What the user (or a superuser) sees."""

    email: str
    is_active: bool
    is_superuser: bool
