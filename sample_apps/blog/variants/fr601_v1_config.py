"""FR601 violation: the token schema still configures itself the Pydantic v1 way.

Copied from an older service: an inner `class Config` with `orm_mode = True`. Pydantic 2 only
warns about it, and ignores `orm_mode`. The class replaces `src.auth.schemas.Token` before the
auth service and router import it, so the token endpoint really answers with it.
"""

import sys

from pydantic import BaseModel

import src.auth.schemas

if "src.auth.router" in sys.modules:
    raise RuntimeError("import this variant before src.main: it replaces a schema the routes use")


class Token(BaseModel):
    """OAuth2 token response (RFC 6749, section 5.1)."""

    access_token: str
    token_type: str = "bearer"

    class Config:
        orm_mode = True


src.auth.schemas.Token = Token  # type: ignore[misc]

from src.main import create_application  # noqa: E402

app = create_application()
