"""FR605 violation: the sign-up schema accepts any text as an email address.

UserCreate was rewritten flat, without UserBase: `email: str` lost EmailStr (and the
normalising validator). It replaces `src.users.schemas.UserCreate` before the services and
routers import it, so POST /api/v1/auth/register really takes it.
"""

import sys

from pydantic import BaseModel, Field, field_validator

import src.users.schemas
from src.auth.security import BCRYPT_MAX_BYTES
from src.users.schemas import Bio, Username

if "src.auth.router" in sys.modules:
    raise RuntimeError("import this variant before src.main: it replaces a schema the routes use")


class UserCreate(BaseModel):
    email: str
    username: Username
    bio: Bio | None = None
    password: str = Field(min_length=8)

    @field_validator("password")
    @classmethod
    def fits_bcrypt(cls, value: str) -> str:
        if len(value.encode()) > BCRYPT_MAX_BYTES:
            raise ValueError(f"must be at most {BCRYPT_MAX_BYTES} bytes")
        return value


src.users.schemas.UserCreate = UserCreate  # type: ignore[misc]

from src.main import create_application  # noqa: E402

app = create_application()
