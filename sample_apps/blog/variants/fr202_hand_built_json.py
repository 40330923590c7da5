"""FR202 violation: a post card endpoint that builds its own `JSONResponse`.

No return annotation and no `response_model=`: the JSON is assembled by hand, so no response model
filters, validates or documents it (the message says so, rather than that FastAPI serialises
whatever the endpoint returns).
"""

from fastapi import APIRouter
from fastapi.responses import JSONResponse

from src.main import create_application
from src.posts.dependencies import PostServiceDep

router = APIRouter()


@router.get("/{post_id}/card")
async def get_post_card(post_id: int, service: PostServiceDep):
    post = await service.get_post(post_id)
    response = JSONResponse({"id": post.id, "title": post.title})
    response.headers["Cache-Control"] = "max-age=60"
    return response


app = create_application()
app.include_router(router, prefix="/api/v1/posts", tags=["Posts"])
