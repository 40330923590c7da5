"""Rules of this family (see RULES.md)."""

from __future__ import annotations
