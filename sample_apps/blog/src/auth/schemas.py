from pydantic import BaseModel


class Token(BaseModel):
    """OAuth2 token response (RFC 6749, section 5.1)."""

    access_token: str
    token_type: str = "bearer"
