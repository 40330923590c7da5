"""
Application configuration.

Every setting comes from the environment (or a local .env file). Secrets have no
default: SECRET_KEY must be set or the application refuses to start.
"""

from functools import lru_cache
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    # Application
    PROJECT_NAME: str = "Blog API"
    PROJECT_DESCRIPTION: str = "Sample blog built from the FastAPI rulebook templates"
    VERSION: str = "0.1.0"
    ENVIRONMENT: Literal["development", "staging", "production"] = "development"

    # Security
    SECRET_KEY: str = Field(min_length=32)  # required, from the environment only
    ALGORITHM: str = "HS256"
    ACCESS_TOKEN_EXPIRE_MINUTES: int = 30

    # Database: SQLite by default, PostgreSQL with
    # DATABASE_URL=postgresql+asyncpg://user:password@host:5432/db
    DATABASE_URL: str = "sqlite+aiosqlite:///./blog.db"
    DB_POOL_SIZE: int = 5
    DB_MAX_OVERFLOW: int = 10
    DB_POOL_TIMEOUT: int = 30
    DB_POOL_RECYCLE: int = 3600
    DB_ECHO: bool = False

    # HTTP (lists are JSON in the environment: '["https://example.com"]')
    BACKEND_CORS_ORIGINS: list[str] = ["http://localhost:3000"]
    ALLOWED_HOSTS: list[str] = ["localhost", "127.0.0.1"]

    # Logging
    LOG_LEVEL: str = "INFO"
    LOG_FORMAT: Literal["json", "console"] = "json"


@lru_cache
def get_settings() -> Settings:
    """Cached settings; call get_settings.cache_clear() to re-read the environment."""
    return Settings()


# Validates the configuration at import time: a missing SECRET_KEY fails fast.
settings = get_settings()
