"""FR204 violation: a second create route that forgot `status_code=201` (answers FastAPI's 200)."""

from fastapi import APIRouter

from src.auth.dependencies import CurrentUser
from src.main import create_application
from src.posts.dependencies import PostServiceDep
from src.posts.schemas import PostCreate, PostResponse

router = APIRouter()


@router.post("/drafts")
async def create_draft(data: PostCreate, current_user: CurrentUser, service: PostServiceDep) -> PostResponse:
    draft = data.model_copy(update={"is_published": False})
    return PostResponse.model_validate(await service.create_post(draft, author=current_user))


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
