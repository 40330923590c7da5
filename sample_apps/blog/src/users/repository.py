"""Data access for users: queries only, no business rules."""

from collections.abc import Sequence

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from src.users.models import User


class UserRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_id(self, user_id: int) -> User | None:
        return await self.session.get(User, user_id)

    async def get_by_email(self, email: str) -> User | None:
        return await self.session.scalar(select(User).where(User.email == email))

    async def get_by_username(self, username: str) -> User | None:
        return await self.session.scalar(select(User).where(User.username == username))

    async def get_by_login(self, login: str) -> User | None:
        """A user whose username or email is `login`."""
        stmt = select(User).where(or_(User.username == login, User.email == login.lower()))
        return await self.session.scalar(stmt)

    async def get_all(
        self, *, skip: int, limit: int, search: str | None, sort_by: str, descending: bool
    ) -> Sequence[User]:
        column = getattr(User, sort_by)
        stmt = (
            select(User)
            .order_by(column.desc() if descending else column.asc(), User.id)
            .offset(skip)
            .limit(limit)
        )
        if search:
            stmt = stmt.where(User.username.icontains(search, autoescape=True))
        return (await self.session.scalars(stmt)).all()

    async def add(self, user: User) -> User:
        self.session.add(user)
        await self.session.flush()  # assigns id and server defaults; get_db commits
        return user

    async def save(self) -> None:
        await self.session.flush()

    async def delete(self, user: User) -> None:
        await self.session.delete(user)
        await self.session.flush()
