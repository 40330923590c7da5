"""The rule modules, one per rulebook family. Importing this package registers every rule."""

from pytest_fastapi_rules.rules import (  # noqa: F401
    api,
    concurrency,
    database,
    layers,
    schemas,
    security,
    stack,
    wiring,
)
