"""FR402 violation: registration hashes the password with bcrypt on the event loop.

bcrypt is slow on purpose (about a quarter of a second): called directly in an async function it
freezes every other request of the worker while it runs.
"""

from typing import Annotated

import bcrypt
from fastapi import Depends

from src.auth.dependencies import get_auth_service
from src.auth.service import AuthService
from src.main import create_application
from src.users.dependencies import UserServiceDep
from src.users.models import User
from src.users.schemas import UserCreate


class LoopHashingAuthService(AuthService):
    async def register(self, data: UserCreate) -> User:
        hashed = bcrypt.hashpw(data.password.encode(), bcrypt.gensalt(13)).decode()
        return await self.users.create_user(data, hashed_password=hashed)


async def get_loop_hashing_auth_service(users: UserServiceDep) -> AuthService:
    return LoopHashingAuthService(users)


app = create_application()
app.dependency_overrides[get_auth_service] = get_loop_hashing_auth_service
_ = Annotated, Depends
