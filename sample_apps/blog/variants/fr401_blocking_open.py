"""FR401 violation: an async endpoint reads the message of the day with the blocking builtin open().

The read happens in a small sync helper, called straight from the async endpoint (on the event
loop), and only when BLOG_MOTD_FILE is set: the probes never take that branch, the source does.
"""

import os

from fastapi import APIRouter
from pydantic import BaseModel

from src.main import create_application

router = APIRouter()


class MessageOfTheDay(BaseModel):
    text: str


def read_message_of_the_day() -> str:
    path = os.environ.get("BLOG_MOTD_FILE")
    if not path:
        return "Welcome to the blog!"
    with open(path, encoding="utf-8") as file:
        return file.read().strip()


@router.get("/motd")
async def get_message_of_the_day() -> MessageOfTheDay:
    return MessageOfTheDay(text=read_message_of_the_day())


app = create_application()
app.include_router(router, prefix="/api/v1/site", tags=["Site"])
