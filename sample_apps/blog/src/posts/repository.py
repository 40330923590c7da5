"""Data access for posts: queries only, no business rules."""

from collections.abc import Sequence

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import joinedload

from src.posts.models import Post


class PostRepository:
    def __init__(self, session: AsyncSession) -> None:
        self.session = session

    async def get_by_id(self, post_id: int) -> Post | None:
        stmt = select(Post).options(joinedload(Post.author)).where(Post.id == post_id)
        return await self.session.scalar(stmt)

    async def get_all(self, *, skip: int, limit: int) -> Sequence[Post]:
        # many-to-one: one JOIN loads the authors, however many posts there are
        stmt = (
            select(Post)
            .options(joinedload(Post.author))
            .order_by(Post.created_at.desc(), Post.id.desc())
            .offset(skip)
            .limit(limit)
        )
        return (await self.session.scalars(stmt)).all()

    async def add(self, post: Post) -> Post:
        self.session.add(post)
        await self.session.flush()  # assigns id and server defaults; get_db commits
        return post

    async def save(self) -> None:
        await self.session.flush()

    async def delete(self, post: Post) -> None:
        await self.session.delete(post)
        await self.session.flush()
