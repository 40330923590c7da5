"""FR205 violation, reported once: unpublishing a post answers 200 with a hand-built dict.

The DELETE declares no status (200) and no response model. That is one defect, a DELETE that
answers with a body where the rulebook asks for 204 No Content: FR205 reports it, and FR202
(response-model-declared) leaves the route to FR205 instead of reporting the missing model too.
"""

from fastapi import APIRouter

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostUpdate
from src.shared.schemas import ErrorResponse

router = APIRouter()


@router.delete("/{post_id}/publication")
async def unpublish_post(post_id: int, current_user: CurrentUser, service: PostServiceDep):
    post = await service.update_post(post_id, PostUpdate(is_published=False), actor=current_user)
    return {"post_id": post.id, "published": post.is_published}


app = create_application()
app.include_router(
    router, prefix="/api/v1/posts", tags=["Posts"], responses={"default": {"model": ErrorResponse}}
)
