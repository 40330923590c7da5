"""FR604 violation: one schema is both the request body and the response of a route.

PUT /api/v1/posts/{post_id}/content takes a PostContent and answers with a PostContent: the
day the response needs `updated_at`, clients may send it too.
"""

from typing import Annotated

from fastapi import APIRouter
from pydantic import BaseModel, ConfigDict, Field

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostUpdate
from src.shared.schemas import ErrorResponse


class PostContent(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    title: Annotated[str, Field(min_length=1, max_length=200)]
    content: Annotated[str, Field(min_length=1, max_length=100_000)]
    is_published: bool


router = APIRouter()


@router.put("/{post_id}/content")
async def replace_post_content(
    post_id: int, data: PostContent, current_user: CurrentUser, service: PostServiceDep
) -> PostContent:
    """Replace title, content and visibility at once (author or superuser)."""
    changes = PostUpdate.model_validate(data.model_dump())
    post = await service.update_post(post_id, changes, actor=current_user)
    return PostContent.model_validate(post)


app = create_application()
app.include_router(
    router, prefix="/api/v1/posts", tags=["Posts"], responses={"default": {"model": ErrorResponse}}
)
