from typing import Annotated

from fastapi import APIRouter, Query, status

from src.auth.dependencies import CurrentUser
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostCreate, PostResponse, PostUpdate

router = APIRouter()


@router.post("", status_code=status.HTTP_201_CREATED)
async def create_post(data: PostCreate, current_user: CurrentUser, service: PostServiceDep) -> PostResponse:
    post = await service.create_post(data, author=current_user)
    return PostResponse.model_validate(post)


@router.get("")
async def list_posts(
    service: PostServiceDep,
    skip: Annotated[int, Query(ge=0, description="Number of posts to skip")] = 0,
    limit: Annotated[int, Query(ge=1, le=100, description="Max posts to return")] = 20,
) -> list[PostResponse]:
    """Newest first, each with its author (loaded in the same query)."""
    posts = await service.list_posts(skip=skip, limit=limit)
    return [PostResponse.model_validate(post) for post in posts]


@router.get("/{post_id}")
async def get_post(post_id: int, service: PostServiceDep) -> PostResponse:
    return PostResponse.model_validate(await service.get_post(post_id))


@router.patch("/{post_id}")
async def update_post(
    post_id: int, data: PostUpdate, current_user: CurrentUser, service: PostServiceDep
) -> PostResponse:
    post = await service.update_post(post_id, data, actor=current_user)
    return PostResponse.model_validate(post)


@router.delete("/{post_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_post(post_id: int, current_user: CurrentUser, service: PostServiceDep) -> None:
    await service.delete_post(post_id, actor=current_user)
