from src.shared.exceptions import AuthorizationError, NotFoundError


class PostNotFoundError(NotFoundError):
    message = "Post not found"
    error_code = "post_not_found"


class PostPermissionError(AuthorizationError):
    message = "Only the author or a superuser can change this post"
    error_code = "post_permission_denied"
