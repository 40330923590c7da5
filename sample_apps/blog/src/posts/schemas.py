from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, ConfigDict, Field, field_validator

from src.users.schemas import UserPublic

Title = Annotated[str, Field(min_length=1, max_length=200)]
Content = Annotated[str, Field(min_length=1, max_length=100_000)]


class PostCreate(BaseModel):
    title: Title
    content: Content
    is_published: bool = False


class PostUpdate(BaseModel):
    """PATCH: every field is optional; only the fields sent change."""

    title: Title | None = None
    content: Content | None = None
    is_published: bool | None = None

    @field_validator("title", "content", "is_published")
    @classmethod
    def not_null(cls, value: str | bool | None) -> str | bool:
        # Omitted fields skip validators; an explicit null for a NOT NULL column fails
        if value is None:
            raise ValueError("may be omitted, but not null")
        return value


class PostResponse(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: int
    title: str
    content: str
    is_published: bool
    created_at: datetime
    author: UserPublic
