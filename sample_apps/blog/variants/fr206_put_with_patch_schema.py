"""FR206 violation: a PUT that reuses the PATCH schema, so every field is optional."""

from fastapi import APIRouter

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostResponse, PostUpdate

router = APIRouter()


@router.put("/{post_id}")
async def replace_post(
    post_id: int, data: PostUpdate, current_user: CurrentUser, service: PostServiceDep
) -> PostResponse:
    post = await service.update_post(post_id, data, actor=current_user)
    return PostResponse.model_validate(post)


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
