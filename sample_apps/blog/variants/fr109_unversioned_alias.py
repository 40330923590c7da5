"""FR109 violation: the old unversioned URL of the post list, kept for an old mobile client.

Added straight on the app: no version prefix, and no tags.
"""

from src.main import create_application
from src.posts.router import list_posts

app = create_application()
app.add_api_route("/posts", list_posts, methods=["GET"])
