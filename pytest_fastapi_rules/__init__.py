"""pytest-fastapi-rules: a FastAPI rulebook as executable conformance tests."""

__version__ = "0.1.0"
