"""Password hashing (bcrypt) and access tokens (JWT)."""

import asyncio
from datetime import datetime, timedelta, timezone

import bcrypt
import jwt
from fastapi.security import OAuth2PasswordBearer

from src.auth.exceptions import InvalidTokenError
from src.config import get_settings

BCRYPT_MAX_BYTES = 72  # bcrypt refuses longer passwords

oauth2_scheme = OAuth2PasswordBearer(tokenUrl="/api/v1/auth/token")


# bcrypt is slow on purpose (~0.2 s): run it in a thread, off the event loop (Rule #9)


async def hash_password(password: str) -> str:
    hashed = await asyncio.to_thread(bcrypt.hashpw, password.encode(), bcrypt.gensalt())
    return hashed.decode()


async def verify_password(password: str, hashed_password: str) -> bool:
    candidate = password.encode()
    if len(candidate) > BCRYPT_MAX_BYTES:  # never stored, so never valid
        return False
    return await asyncio.to_thread(bcrypt.checkpw, candidate, hashed_password.encode())


def create_access_token(user_id: int) -> str:
    settings = get_settings()
    expire = datetime.now(timezone.utc) + timedelta(minutes=settings.ACCESS_TOKEN_EXPIRE_MINUTES)
    claims = {"sub": str(user_id), "exp": expire, "type": "access"}
    return jwt.encode(claims, settings.SECRET_KEY, algorithm=settings.ALGORITHM)


def decode_access_token(token: str) -> int:
    """The user id carried by a valid access token; InvalidTokenError otherwise."""
    settings = get_settings()
    try:
        claims = jwt.decode(
            token,
            settings.SECRET_KEY,
            algorithms=[settings.ALGORITHM],
            options={"require": ["exp", "sub"]},
        )
        user_id = int(claims["sub"])
    except (jwt.InvalidTokenError, ValueError) as exc:
        raise InvalidTokenError() from exc
    if claims.get("type") != "access":
        raise InvalidTokenError()
    return user_id
