"""FR703 violation: share links signed with a key written in the code."""

from datetime import datetime, timedelta, timezone

import jwt
from fastapi import APIRouter
from pydantic import BaseModel

from src.main import create_application
from src.posts.dependencies import PostServiceDep

SHARE_LINK_SECRET = "8f4e2b0c9d1a7e6f5b3c2d1e0f9a8b7c"

router = APIRouter()


class ShareLink(BaseModel):
    url: str


@router.get("/{post_id}/share-link")
async def get_share_link(post_id: int, service: PostServiceDep) -> ShareLink:
    post = await service.get_post(post_id)
    expires = datetime.now(timezone.utc) + timedelta(days=7)
    token = jwt.encode({"post": post.id, "exp": expires}, SHARE_LINK_SECRET, algorithm="HS256")
    return ShareLink(url=f"/shared/{token}")


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
