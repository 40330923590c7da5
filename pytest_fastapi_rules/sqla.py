"""What a SQLAlchemy object is: engines, session factories, sessions; one meaning per name.

The discovery, the redirection, the probes and the rules all ask these questions of the app's
objects and annotations. Objects are asked with ``facts.instance_of`` (False for a proxy whose every
attribute access raises), classes and annotations with ``facts.is_subclass`` (False for what is not
a plain class). sqlmodel's sessions subclass SQLAlchemy's, so they count as sessions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.engine import Engine
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_scoped_session, async_sessionmaker
from sqlalchemy.orm import Session, scoped_session, sessionmaker

from pytest_fastapi_rules.facts import instance_of, is_subclass

#: The session classes themselves.
SESSION_CLASSES: tuple[type, ...] = (Session, AsyncSession)
#: A session or a scoped-session registry (used like a session), sync then async.
SYNC_SESSION_LIKE_CLASSES: tuple[type, ...] = (Session, scoped_session)
ASYNC_SESSION_LIKE_CLASSES: tuple[type, ...] = (AsyncSession, async_scoped_session)
SESSION_LIKE_CLASSES: tuple[type, ...] = SYNC_SESSION_LIKE_CLASSES + ASYNC_SESSION_LIKE_CLASSES
#: The session factories, sync and async (``async_sessionmaker`` does not subclass ``sessionmaker``).
SESSION_FACTORY_CLASSES: tuple[type, ...] = (sessionmaker, async_sessionmaker)


# -- engines ----------------------------------------------------------------------------------------


def is_sync_engine(obj: Any) -> bool:
    """A sync ``Engine`` (an ``AsyncEngine``'s ``sync_engine`` is one)."""
    return instance_of(obj, Engine)


def is_async_engine(obj: Any) -> bool:
    return instance_of(obj, AsyncEngine)


def is_any_engine(obj: Any) -> bool:
    """An ``Engine`` or an ``AsyncEngine``."""
    return instance_of(obj, AsyncEngine | Engine)


def engine_key(obj: Any) -> int | None:
    """One key per engine (an ``AsyncEngine`` and its ``sync_engine`` share it); None otherwise."""
    if instance_of(obj, AsyncEngine):
        return id(obj.sync_engine)
    if instance_of(obj, Engine):
        return id(obj)
    return None


# -- session factories ------------------------------------------------------------------------------


def is_session_factory(obj: Any) -> bool:
    """A ``sessionmaker`` or an ``async_sessionmaker``."""
    return instance_of(obj, async_sessionmaker | sessionmaker)


def is_sync_session_factory(obj: Any) -> bool:
    """A ``sessionmaker`` whose sessions are sync ``Session``s (``sessionmaker(class_=AsyncSession)``
    builds ``AsyncSession``s, and calling it does not block)."""
    if not instance_of(obj, sessionmaker):
        return False
    return not is_subclass(getattr(obj, "class_", None), AsyncSession)


def is_async_session_factory(obj: Any) -> bool:
    """An ``async_sessionmaker``, or a ``sessionmaker(class_=AsyncSession)`` (SQLAlchemy 1.4 style)."""
    if instance_of(obj, async_sessionmaker):
        return True
    return is_subclass(getattr(obj, "class_", None), AsyncSession)


# -- sessions ---------------------------------------------------------------------------------------


def is_session(obj: Any) -> bool:
    """A ``Session`` or an ``AsyncSession`` object."""
    return instance_of(obj, AsyncSession | Session)


def is_scoped_session(obj: Any) -> bool:
    """A ``scoped_session`` or an ``async_scoped_session`` registry."""
    return instance_of(obj, async_scoped_session | scoped_session)


def is_session_class(tp: Any) -> bool:
    """``Session``, ``AsyncSession`` or a subclass (a scoped-session registry is not one)."""
    return is_subclass(tp, SESSION_CLASSES)


def is_session_like_class(tp: Any) -> bool:
    """A session class or a scoped-session registry class, sync or async."""
    return is_subclass(tp, SESSION_LIKE_CLASSES)


def is_sync_session_like_class(tp: Any) -> bool:
    """``Session``, ``scoped_session`` or a subclass."""
    return is_subclass(tp, SYNC_SESSION_LIKE_CLASSES)
