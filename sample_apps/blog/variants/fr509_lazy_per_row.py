"""FR509 violation: the post list reads each post's author lazily, one query per row.

`lazyload(Post.author)` switches the relationship back to lazy loading for this query (the model
says lazy="raise"), and `await post.awaitable_attrs.author` then loads the authors one by one.
"""

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends
from sqlalchemy import select
from sqlalchemy.orm import lazyload

from src.main import create_application
from src.posts.dependencies import get_post_repository, get_post_service
from src.posts.models import Post
from src.posts.repository import PostRepository
from src.posts.service import PostService


class LazyAuthorPostService(PostService):
    async def list_posts(self, *, skip: int, limit: int) -> Sequence[Post]:
        stmt = (
            select(Post)
            .options(lazyload(Post.author))
            .order_by(Post.created_at.desc(), Post.id.desc())
            .offset(skip)
            .limit(limit)
        )
        posts = (await self.repository.session.scalars(stmt)).all()
        for post in posts:
            await post.awaitable_attrs.author  # a lazy load per post
        return posts


async def get_lazy_post_service(
    repository: Annotated[PostRepository, Depends(get_post_repository)],
) -> PostService:
    return LazyAuthorPostService(repository)


app = create_application()
app.dependency_overrides[get_post_service] = get_lazy_post_service
