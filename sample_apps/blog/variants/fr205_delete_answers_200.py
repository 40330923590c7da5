"""FR205 violation: unpublishing a post (DELETE on its publication) answers 200 with a body.

The route confirms the deletion with `{"post_id": ..., "published": false}` and the default status
200, where the rulebook asks for 204 No Content.
"""

from fastapi import APIRouter
from pydantic import BaseModel

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostUpdate
from src.shared.schemas import ErrorResponse


class PublicationResponse(BaseModel):
    post_id: int
    published: bool


router = APIRouter()


@router.delete("/{post_id}/publication")
async def unpublish_post(
    post_id: int, current_user: CurrentUser, service: PostServiceDep
) -> PublicationResponse:
    post = await service.update_post(post_id, PostUpdate(is_published=False), actor=current_user)
    return PublicationResponse(post_id=post.id, published=post.is_published)


app = create_application()
app.include_router(
    router, prefix="/api/v1/posts", tags=["Posts"], responses={"default": {"model": ErrorResponse}}
)
