from typing import Annotated

from fastapi import APIRouter, Depends, status
from fastapi.security import OAuth2PasswordRequestForm

from src.auth.dependencies import AuthServiceDep
from src.auth.schemas import Token
from src.users.schemas import UserCreate, UserResponse

router = APIRouter()


@router.post("/token", status_code=status.HTTP_200_OK)
async def login(form_data: Annotated[OAuth2PasswordRequestForm, Depends()], service: AuthServiceDep) -> Token:
    """OAuth2 password flow: exchange username (or email) and password for a token."""
    return await service.login(form_data.username, form_data.password)


@router.post("/register", status_code=status.HTTP_201_CREATED)
async def register(data: UserCreate, service: AuthServiceDep) -> UserResponse:
    user = await service.register(data)
    return UserResponse.model_validate(user)
