"""FR105 violation: the app has no handler for Exception (the catch-all was left out)."""

from src.main import create_application

app = create_application()
del app.exception_handlers[Exception]
