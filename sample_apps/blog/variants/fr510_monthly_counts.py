"""FR510 violation: reading a user also counts their posts month by month, one query per month.

Twelve COUNT queries per request: the number does not grow with the data (no N+1), but it is over
any sensible budget; one GROUP BY query would do.
"""

from datetime import datetime, timedelta, timezone
from typing import Annotated

from fastapi import Depends
from sqlalchemy import func, select

from src.main import create_application
from src.posts.models import Post
from src.users.dependencies import get_user_repository, get_user_service
from src.users.models import User
from src.users.repository import UserRepository
from src.users.service import UserService


class MonthlyStatsUserService(UserService):
    async def get_user(self, user_id: int) -> User:
        user = await super().get_user(user_id)
        session = self.repository.session
        now = datetime.now(timezone.utc)
        for month in range(12):
            start = now - timedelta(days=30 * (month + 1))
            end = now - timedelta(days=30 * month)
            await session.scalar(
                select(func.count(Post.id)).where(
                    Post.author_id == user_id, Post.created_at >= start, Post.created_at < end
                )
            )
        return user


async def get_stats_user_service(
    repository: Annotated[UserRepository, Depends(get_user_repository)],
) -> UserService:
    return MonthlyStatsUserService(repository)


app = create_application()
app.dependency_overrides[get_user_service] = get_stats_user_service
