from src.shared.exceptions import AlreadyExistsError, AuthorizationError, NotFoundError


class UserNotFoundError(NotFoundError):
    message = "User not found"
    error_code = "user_not_found"


class UserAlreadyExistsError(AlreadyExistsError):
    message = "User with this email already exists"
    error_code = "user_already_exists"


class UserPermissionError(AuthorizationError):
    message = "You can only change your own account"
    error_code = "user_permission_denied"
