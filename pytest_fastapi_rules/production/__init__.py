"""Production mode: the app imported and started afresh in a child process (FR108, FR503, FR802).

- ``facts``: the parent's side, what the rules call: which variables mean production for this app,
  the child started once per session, its document read into :class:`ProductionFacts`;
- ``__main__``: the child itself (``python -m pytest_fastapi_rules.production``), which imports and
  starts the app with those variables set and prints one JSON document;
- ``protocol``: what the two sides agree on (the document's version, the variables, the paths);
- ``launcher``: starting a child process in the background and waiting for it;
- ``app_logging``: FR802's part, both halves (looked at in the child, read by the parent).

This file imports nothing: running the child imports the package first, and the child's import path
must stay what the child uses (issue #20).
"""
