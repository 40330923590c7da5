from src.shared.exceptions import AuthenticationError, AuthorizationError


class InvalidCredentialsError(AuthenticationError):
    message = "Incorrect username or password"
    error_code = "invalid_credentials"


class InvalidTokenError(AuthenticationError):
    message = "Could not validate credentials"
    error_code = "invalid_token"


class InactiveUserError(AuthorizationError):
    message = "User account is inactive"
    error_code = "inactive_user"


class SuperuserRequiredError(AuthorizationError):
    message = "Superuser access required"
    error_code = "superuser_required"
