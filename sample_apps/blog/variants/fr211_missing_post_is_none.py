"""FR211 violation: a missing post is passed on as None instead of raising PostNotFoundError.

The repository returns None for an unknown id and the service hands it to the router, which fails
to build the response from it: the client gets a 500 instead of a 404.
"""

from typing import Annotated

from fastapi import Depends

from src.main import create_application
from src.posts.dependencies import get_post_repository, get_post_service
from src.posts.models import Post
from src.posts.repository import PostRepository
from src.posts.service import PostService


class NoneForMissingPostService(PostService):
    async def get_post(self, post_id: int) -> Post:
        return await self.repository.get_by_id(post_id)  # type: ignore[return-value]


async def get_none_post_service(
    repository: Annotated[PostRepository, Depends(get_post_repository)],
) -> PostService:
    return NoneForMissingPostService(repository)


app = create_application()
app.dependency_overrides[get_post_service] = get_none_post_service
