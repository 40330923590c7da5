"""Authentication dependencies, composed: user -> active user -> superuser."""

from typing import Annotated

from fastapi import Depends

from src.auth.exceptions import InactiveUserError, SuperuserRequiredError
from src.auth.security import oauth2_scheme
from src.auth.service import AuthService
from src.users.dependencies import UserServiceDep
from src.users.models import User


async def get_auth_service(users: UserServiceDep) -> AuthService:
    return AuthService(users)


AuthServiceDep = Annotated[AuthService, Depends(get_auth_service)]


async def get_current_user(token: Annotated[str, Depends(oauth2_scheme)], service: AuthServiceDep) -> User:
    """The user of the bearer token: 401 (WWW-Authenticate: Bearer) when missing or bad."""
    return await service.get_user_from_token(token)


async def get_current_active_user(
    user: Annotated[User, Depends(get_current_user)],
) -> User:
    if not user.is_active:
        raise InactiveUserError()
    return user


async def get_current_superuser(
    user: Annotated[User, Depends(get_current_active_user)],
) -> User:
    if not user.is_superuser:
        raise SuperuserRequiredError()
    return user


CurrentUser = Annotated[User, Depends(get_current_active_user)]
