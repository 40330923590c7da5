"""FR509 violation: the post list loads each post's author with a query of its own.

The service lists posts without their authors, then asks the session for the author of every post
in a loop: one query per author, so a page of 100 posts by 100 people runs 101 queries.
"""

from collections.abc import Sequence
from typing import Annotated

from fastapi import Depends
from sqlalchemy import select
from sqlalchemy.orm.attributes import set_committed_value

from src.main import create_application
from src.posts.dependencies import get_post_repository, get_post_service
from src.posts.models import Post
from src.posts.repository import PostRepository
from src.posts.service import PostService
from src.users.models import User


class AuthorPerPostService(PostService):
    async def list_posts(self, *, skip: int, limit: int) -> Sequence[Post]:
        session = self.repository.session
        stmt = select(Post).order_by(Post.created_at.desc(), Post.id.desc()).offset(skip).limit(limit)
        posts = (await session.scalars(stmt)).all()
        for post in posts:
            author = await session.get(User, post.author_id)  # one query per post's author
            set_committed_value(post, "author", author)
        return posts


async def get_author_per_post_service(
    repository: Annotated[PostRepository, Depends(get_post_repository)],
) -> PostService:
    return AuthorPerPostService(repository)


app = create_application()
app.dependency_overrides[get_post_service] = get_author_per_post_service
