"""Structured logging with structlog: JSON in production, readable console locally."""

import logging

import structlog

from src.config import get_settings

HANDLER_NAME = "structlog"


def configure_logging() -> None:
    """Route structlog and stdlib logging through one formatter. Called by the lifespan."""
    settings = get_settings()
    shared_processors: list[structlog.typing.Processor] = [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_logger_name,
        structlog.stdlib.add_log_level,
        structlog.processors.TimeStamper(fmt="iso"),
    ]
    renderers: list[structlog.typing.Processor]
    if settings.LOG_FORMAT == "json":
        # Tracebacks as data, without local variables (they may hold secrets)
        tracebacks = structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
        renderers = [
            structlog.processors.ExceptionRenderer(tracebacks),
            structlog.processors.JSONRenderer(),
        ]
    else:
        renderers = [structlog.dev.ConsoleRenderer()]

    structlog.configure(
        processors=[*shared_processors, structlog.stdlib.ProcessorFormatter.wrap_for_formatter],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=True,
    )

    handler = logging.StreamHandler()
    handler.set_name(HANDLER_NAME)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=shared_processors,
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *renderers],
        )
    )
    root_logger = logging.getLogger()
    # Replace our handler when the lifespan runs again (tests), keep everyone else's
    for old in [h for h in root_logger.handlers if h.get_name() == HANDLER_NAME]:
        root_logger.removeHandler(old)
    root_logger.addHandler(handler)
    root_logger.setLevel(settings.LOG_LEVEL)
