"""FR706 violation: a second way to create users, for the admin UI, without any authentication.

POST /api/v1/users creates an account like /auth/register does, but it was meant for
administrators (it is not a sign-up route): nobody checks who calls it.
"""

from fastapi import APIRouter, status

from src.auth.dependencies import AuthServiceDep
from src.main import create_application
from src.shared.schemas import ErrorResponse
from src.users.schemas import UserCreate, UserResponse

router = APIRouter()


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_user(data: UserCreate, service: AuthServiceDep) -> UserResponse:
    user = await service.register(data)
    return UserResponse.model_validate(user)


app = create_application()
app.include_router(
    router, prefix="/api/v1/users", tags=["Users"], responses={"default": {"model": ErrorResponse}}
)
