"""FR201 violation: an endpoint written as a plain `def` (it needs no I/O, so it "can be sync")."""

from fastapi import APIRouter
from pydantic import BaseModel

from src.main import create_application

router = APIRouter()


class PostLimits(BaseModel):
    max_title_length: int
    max_content_length: int


@router.get("/post-limits")
def get_post_limits() -> PostLimits:
    return PostLimits(max_title_length=200, max_content_length=100_000)


app = create_application()
app.include_router(router, prefix="/api/v1/meta", tags=["Meta"])
