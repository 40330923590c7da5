"""Post business logic. Raises domain exceptions, returns ORM objects."""

from collections.abc import Sequence

from src.posts.exceptions import PostNotFoundError, PostPermissionError
from src.posts.models import Post
from src.posts.repository import PostRepository
from src.posts.schemas import PostCreate, PostUpdate
from src.users.models import User


class PostService:
    def __init__(self, repository: PostRepository) -> None:
        self.repository = repository

    async def list_posts(self, *, skip: int, limit: int) -> Sequence[Post]:
        return await self.repository.get_all(skip=skip, limit=limit)

    async def get_post(self, post_id: int) -> Post:
        post = await self.repository.get_by_id(post_id)
        if post is None:
            raise PostNotFoundError(f"Post {post_id} not found", details={"post_id": post_id})
        return post

    async def create_post(self, data: PostCreate, author: User) -> Post:
        return await self.repository.add(Post(**data.model_dump(), author=author))

    async def update_post(self, post_id: int, data: PostUpdate, actor: User) -> Post:
        post = await self._get_editable(post_id, actor)
        for field, value in data.model_dump(exclude_unset=True).items():
            setattr(post, field, value)
        await self.repository.save()
        return post

    async def delete_post(self, post_id: int, actor: User) -> None:
        await self.repository.delete(await self._get_editable(post_id, actor))

    async def _get_editable(self, post_id: int, actor: User) -> Post:
        post = await self.get_post(post_id)
        if post.author_id != actor.id and not actor.is_superuser:
            raise PostPermissionError()
        return post
