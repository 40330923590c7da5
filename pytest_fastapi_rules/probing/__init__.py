"""Probes: the plugin exercises the app for real, in-process, on an isolated database.

``runner.probe_results(facts, options)`` runs every probe once per session and caches what it saw;
the probe rules read it (through ``rules/probe_support.py``). See ``runner`` for the phases,
``database`` for the isolation (and what it cannot catch), ``seeding`` and ``requests`` for the
data, ``counting`` for the per-request SQL counts, ``auth`` for protected routes.
"""
