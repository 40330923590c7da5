"""FR705 violation: registration stores the password as sent, in the hashed_password column."""

from src.auth.dependencies import get_auth_service
from src.auth.service import AuthService
from src.main import create_application
from src.users.dependencies import UserServiceDep
from src.users.models import User
from src.users.schemas import UserCreate


class PlainPasswordAuthService(AuthService):
    async def register(self, data: UserCreate) -> User:
        return await self.users.create_user(data, hashed_password=data.password)  # not hashed


async def get_plain_auth_service(users: UserServiceDep) -> AuthService:
    return PlainPasswordAuthService(users)


app = create_application()
app.dependency_overrides[get_auth_service] = get_plain_auth_service
