"""User business logic. Raises domain exceptions, returns ORM objects."""

from collections.abc import Sequence
from typing import Any

from src.shared.schemas import SortOrder
from src.users.exceptions import UserAlreadyExistsError, UserNotFoundError, UserPermissionError
from src.users.models import User
from src.users.repository import UserRepository
from src.users.schemas import UserCreate, UserReplace, UserSortBy, UserUpdate


class UserService:
    def __init__(self, repository: UserRepository) -> None:
        self.repository = repository

    async def get_user(self, user_id: int) -> User:
        user = await self.repository.get_by_id(user_id)
        if user is None:
            raise UserNotFoundError(f"User {user_id} not found", details={"user_id": user_id})
        return user

    async def get_by_login(self, login: str) -> User | None:
        return await self.repository.get_by_login(login)

    async def list_users(
        self, *, skip: int, limit: int, search: str | None, sort_by: UserSortBy, order: SortOrder
    ) -> Sequence[User]:
        return await self.repository.get_all(
            skip=skip,
            limit=limit,
            search=search,
            sort_by=sort_by.value,
            descending=order is SortOrder.DESC,
        )

    async def create_user(self, data: UserCreate, hashed_password: str) -> User:
        """Create a user; the caller (auth) hashes the password."""
        await self._ensure_available(email=data.email, username=data.username)
        user = User(**data.model_dump(exclude={"password"}), hashed_password=hashed_password)
        return await self.repository.add(user)

    async def replace_user(self, user_id: int, data: UserReplace, actor: User) -> User:
        return await self._change(user_id, data.model_dump(), actor)

    async def update_user(self, user_id: int, data: UserUpdate, actor: User) -> User:
        return await self._change(user_id, data.model_dump(exclude_unset=True), actor)

    async def activate_user(self, user_id: int) -> User:
        user = await self.get_user(user_id)
        user.is_active = True
        await self.repository.save()
        return user

    async def delete_user(self, user_id: int) -> None:
        await self.repository.delete(await self.get_user(user_id))

    async def _change(self, user_id: int, changes: dict[str, Any], actor: User) -> User:
        user = await self.get_user(user_id)
        if actor.id != user.id and not actor.is_superuser:
            raise UserPermissionError()
        await self._ensure_available(
            email=changes.get("email"), username=changes.get("username"), current=user
        )
        for field, value in changes.items():
            setattr(user, field, value)
        await self.repository.save()
        return user

    async def _ensure_available(
        self, *, email: str | None, username: str | None, current: User | None = None
    ) -> None:
        """Email and username are unique: refuse values that another user holds."""
        if (
            email is not None
            and (current is None or email != current.email)
            and await self.repository.get_by_email(email) is not None
        ):
            raise UserAlreadyExistsError(details={"field": "email"})
        if (
            username is not None
            and (current is None or username != current.username)
            and await self.repository.get_by_username(username) is not None
        ):
            raise UserAlreadyExistsError(
                "User with this username already exists", details={"field": "username"}
            )
