"""What the production-mode child and the parent that reads it agree on.

Both halves import this module and neither imports the other: the child (``__main__``) must not
load the parent's side, which the rules import, and the parent never runs the child's code.
"""

from __future__ import annotations

#: What the parent runs with ``python -m`` (the package's ``__main__``).
CHILD_MODULE = "pytest_fastapi_rules.production"
#: Version of the JSON document the child prints (bumped when its shape changes incompatibly).
PROTOCOL = 1
#: The variable that hands ``--fastapi-rules-db-url`` to the child (the child's own probe database
#: then lives where the user said, ``sqlite`` included).
DB_URL_ENV = "PYTEST_FASTAPI_RULES_DB_URL"
#: The rulebook's documentation paths, and what each serves: the child always asks them, FR108
#: judges their status in production mode.
DOCS_KINDS = {"/docs": "docs", "/redoc": "redoc", "/openapi.json": "openapi"}
#: The child's only argument when it is started ahead of need (``launcher.start_spare``): it imports
#: what it uses, then reads one JSON line on its stdin, ``{"args": [...], "env": {...}, "cwd": ...}``,
#: and runs with those arguments, in that environment and directory. An empty stdin (the parent
#: never needed it) ends it.
AWAIT_RUN_FLAG = "--await-run"
#: The rules whose items read the child (their ``Rule.background`` starts it), by code: the plugin
#: decides whether to start a spare child before it imports the rules. Kept equal to the registry by
#: a test; a code missing here only loses the head start.
CHILD_RULE_CODES = frozenset({"FR108", "FR503", "FR802"})
