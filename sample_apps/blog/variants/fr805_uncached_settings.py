"""FR805 violation: a second settings class that is read again on every call (no lru_cache)."""

from pydantic_settings import BaseSettings, SettingsConfigDict

from src.main import create_application


class MailSettings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="MAIL_", env_file=".env", extra="ignore")

    SMTP_HOST: str = "localhost"
    SMTP_PORT: int = 25
    FROM_ADDRESS: str = "blog@example.com"


def get_mail_settings() -> MailSettings:
    """A new MailSettings, re-reading the environment and .env, on every call."""
    return MailSettings()


app = create_application()
