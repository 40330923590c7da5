"""The app's own source, parsed once, and what the source rules read from it.

- ``parsing``: one module, parsed (``SourceModule``, ``FunctionInfo``, name resolution);
- ``index``: which modules are the app's, found through the running app, and their index
  (``source_index``, cached on the session's facts);
- ``inference``: what an expression holds and which of the app's functions a call runs;
- ``sessions``: which names hold a database session (FR302, FR305, FR403).

The source rules (FR302-FR307, FR401, FR403, FR602, FR703, in ``rules/``) read the code the app is
made of. Each is one item for the app, with one finding per offending place, located
``file:line:column`` (1-based column) and ending with a short excerpt of the offending source
(``parsing._quote``); a rule skips when none of the app's source was found (``index._index``).
"""
