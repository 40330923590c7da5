"""pytest-fastapi-rules: a FastAPI rulebook as executable conformance tests.

PYTEST_DONT_REWRITE: the plugin has no assertions for pytest to rewrite, and nested pytest runs
(pytester) would otherwise warn that the already-imported package cannot be rewritten.
"""

__version__ = "0.1.0"
