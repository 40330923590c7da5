"""FR209 violation: an account endpoint whose schema carries the password hash (`UserInDB`)."""

from fastapi import APIRouter

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.users.schemas import UserResponse

router = APIRouter()


class UserInDB(UserResponse):
    hashed_password: str


@router.get("/me/account")
async def read_account(current_user: CurrentUser) -> UserInDB:
    return UserInDB.model_validate(current_user)


app = create_application()
app.include_router(router, prefix="/api/v1/users", tags=["Users"])
