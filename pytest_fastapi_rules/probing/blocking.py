"""FR402: blocking calls on the event loop thread, and loop stalls."""

from __future__ import annotations

from typing import Any


def blocking_pass(run: Any) -> None:
    return None
