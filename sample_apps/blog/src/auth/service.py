"""Registration, login and token resolution. Users are reached through their service."""

from src.auth import security
from src.auth.exceptions import InactiveUserError, InvalidCredentialsError, InvalidTokenError
from src.auth.schemas import Token
from src.users import service as users_service
from src.users.exceptions import UserNotFoundError
from src.users.models import User
from src.users.schemas import UserCreate


class AuthService:
    def __init__(self, users: users_service.UserService) -> None:
        self.users = users

    async def register(self, data: UserCreate) -> User:
        hashed_password = await security.hash_password(data.password)
        return await self.users.create_user(data, hashed_password=hashed_password)

    async def login(self, username: str, password: str) -> Token:
        """Accepts the username or the email as `username` (the OAuth2 form field)."""
        user = await self.users.get_by_login(username)
        if user is None or not await security.verify_password(password, user.hashed_password):
            raise InvalidCredentialsError()
        if not user.is_active:
            raise InactiveUserError()
        return Token(access_token=security.create_access_token(user.id))

    async def get_user_from_token(self, token: str) -> User:
        user_id = security.decode_access_token(token)
        try:
            return await self.users.get_user(user_id)
        except UserNotFoundError as exc:  # the account was deleted after login
            raise InvalidTokenError() from exc
