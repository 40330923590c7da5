"""Authentication for the probes, and the shape of the app's dependency trees.

Protected routes are probed too, with no configuration on apps built like the rulebook's: the
dependency that turns the bearer token into a user (``get_current_user``: a dependency whose direct
sub-dependency is an OAuth2/HTTP bearer/API key scheme) is overridden, while the probes run, by one
that returns a seeded user of the ORM class it is annotated to return (the first seeded row, which
the seed makes active and a superuser), or the Pydantic model it is annotated to return built from
such a row. The override asks for the app's own session dependency with
the same ``Depends`` (same call, same scope), so the user is attached to the request's session just
like the real one; every other dependency of the route (permissions, services) runs unchanged.

Where that cannot work (the dependency returns something the plugin cannot build, or needs the
token's claims), the ini key ``fastapi_rules_auth_headers`` supplies headers sent with every probe
request instead (``Authorization: Bearer <a token valid for the isolated database>``, usually
created by a seed hook); the automatic override is then not used.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, cast, get_args, get_origin

from fastapi import Depends
from fastapi.security.base import SecurityBase

from pytest_fastapi_rules.facts import is_subclass, plain_annotation, type_hints, unwrap_callable
from pytest_fastapi_rules.sqla import is_session_class

if TYPE_CHECKING:
    from fastapi.dependencies.models import Dependant

    from pytest_fastapi_rules.facts import RouteFacts

_SESSION_DEP_NAMES = frozenset(
    {"get_db", "get_session", "get_async_session", "get_db_session", "get_async_db", "db_session"}
)


def is_session_annotation(tp: Any) -> bool:
    """An annotation of a ``Session`` or an ``AsyncSession`` (behind ``Annotated``/``Optional``)."""
    return is_session_class(plain_annotation(tp))


def yields_session(call: Any) -> bool:
    """Whether ``call`` is a dependency that provides a SQLAlchemy session.

    The return annotation decides when there is one: ``-> AsyncIterator[AsyncSession]`` is a
    session dependency, ``-> AsyncIterator[async_sessionmaker]`` is not, whatever the function is
    called (rhoboro's ``get_session`` yields a factory; its use cases own the transactions). Only an
    unannotated generator falls back to the conventional names (``get_db``, ``get_session``...).
    """
    function = unwrap_callable(call)
    hints = type_hints(function)
    returned = hints.get("return")
    if returned is not None:
        origin = get_origin(returned)
        args = get_args(returned)
        if is_session_annotation(returned):
            return True
        if origin is not None and args:
            # AsyncIterator[X] / Generator[X, None, None]: X decides.
            return is_session_annotation(args[0]) or (isinstance(args[0], str) and _names_a_session(args[0]))
        if isinstance(returned, str):
            return _names_a_session(returned)
        if isinstance(returned, type) and origin is None:
            return False  # a concrete class that is not a session (a factory, a unit of work)
    name = getattr(function, "__name__", "")
    return name in _SESSION_DEP_NAMES and (
        inspect.isasyncgenfunction(function) or inspect.isgeneratorfunction(function)
    )


def _names_a_session(annotation: str) -> bool:
    """An unresolved annotation (a string) that names a session, not a session factory."""
    import re

    return bool(re.search(r"\b(Async)?Session\b", annotation)) and "maker" not in annotation.lower()


def session_dependants(route: RouteFacts) -> list[Dependant]:
    """Dependants of the route that provide the database session (usually one: ``get_db``)."""
    found: list[Dependant] = []
    seen: set[int] = set()
    for dependant in route.iter_dependants():
        call = dependant.call
        if call is None or id(call) in seen:
            continue
        seen.add(id(call))
        if yields_session(call):
            found.append(dependant)
            continue
        # A parameter annotated as a session whose dependency is this sub-dependant.
        hints = type_hints(unwrap_callable(call))
        for sub in dependant.dependencies:
            if (
                sub.call is not None
                and sub.name
                and is_session_annotation(hints.get(sub.name))
                and id(sub.call) not in seen
            ):
                seen.add(id(sub.call))
                found.append(sub)
    return found


def iter_schemes(route: RouteFacts) -> Iterator[tuple[Dependant, SecurityBase]]:
    """``(consumer, scheme)``: each security scheme and the dependency that reads it."""
    for dependant in route.iter_dependants():
        for sub in dependant.dependencies:
            if isinstance(sub.call, SecurityBase) and dependant.call is not None:
                yield dependant, sub.call


def challenge_schemes(route: RouteFacts) -> list[SecurityBase]:
    """Bearer-style schemes (OAuth2, HTTP bearer) that reject a request without credentials."""
    from fastapi.security import HTTPBearer
    from fastapi.security.oauth2 import OAuth2

    found: list[SecurityBase] = []
    for _consumer, scheme in iter_schemes(route):
        if isinstance(scheme, OAuth2 | HTTPBearer) and getattr(scheme, "auto_error", True):
            found.append(scheme)
    for dependant in route.iter_dependants():
        call = dependant.call
        if isinstance(call, OAuth2 | HTTPBearer) and getattr(call, "auto_error", True) and call not in found:
            found.append(call)
    return found


def rejects_anonymous(route: RouteFacts) -> bool:
    """Whether the route needs credentials (a scheme that rejects requests without them)."""
    for dependant in route.iter_dependants():
        if isinstance(dependant.call, SecurityBase) and getattr(dependant.call, "auto_error", True):
            return True
    return False


#: Request headers that carry credentials: the standard ``Authorization`` (RFC 7235) and the usual
#: homes of API keys and tokens (``X-API-Key``, ``X-Auth-Token``).
_CREDENTIAL_HEADER = re.compile(r"^(proxy-)?authorization$|api[-_]?key|token", re.IGNORECASE)
#: Cookies that carry credentials (``access_token``, ``session``, ``jwt``...).
_CREDENTIAL_COOKIE = re.compile(r"token|session|jwt|auth", re.IGNORECASE)


@dataclass(frozen=True)
class CredentialReader:
    """A dependency (or the endpoint) that reads credentials from the request itself.

    Recognised by what it reads, not by what it is called: a ``Header``/``Cookie`` parameter for a
    credential, or code that takes them out of ``request.headers`` / ``request.cookies``. Apps on
    JWT libraries that bring their own dependency (no ``fastapi.security`` scheme, no conventional
    name) are protected all the same.
    """

    name: str
    #: The dependency's callable, for its location.
    call: Any = field(compare=False)
    #: What it reads, for messages: "the `authorization` header", "the `access_token` cookie".
    carrier: str
    #: It reads the ``Authorization`` header: a missing or garbage bearer token must get 401.
    authorization: bool = False


def credential_reader(route: RouteFacts) -> CredentialReader | None:
    """The first dependency of the route (the endpoint included) that reads credentials itself."""
    for dependant in route.iter_dependants():
        call = dependant.call
        if call is None or isinstance(call, SecurityBase):
            continue
        name = str(getattr(unwrap_callable(call), "__qualname__", None) or type(call).__name__)
        for field_ in getattr(dependant, "header_params", None) or []:
            alias = str(getattr(field_, "alias", "") or "")
            if _CREDENTIAL_HEADER.search(alias):
                return CredentialReader(name, call, f"the `{alias}` header", _is_authorization(alias))
        for field_ in getattr(dependant, "cookie_params", None) or []:
            alias = str(getattr(field_, "alias", "") or "")
            if _CREDENTIAL_COOKIE.search(alias):
                return CredentialReader(name, call, f"the `{alias}` cookie")
        read = _credential_read_in_code(unwrap_callable(call))
        if read is not None:
            kind, key = read
            return CredentialReader(
                name, call, f"the `{key}` {kind}", kind == "header" and _is_authorization(key)
            )
    return None


def _is_authorization(header: str) -> bool:
    return header.lower() == "authorization"


@functools.lru_cache(maxsize=4096)
def _credential_read_in_code(function: Any) -> tuple[str, str] | None:
    """``("header", "Authorization")`` when the function's own code reads a credential header or
    cookie of a request (``request.headers.get("Authorization")``, ``request.cookies["token"]``)."""
    if not (inspect.isfunction(function) or inspect.ismethod(function)):
        return None
    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(function)))
    except (OSError, TypeError, SyntaxError, ValueError):
        return None
    for node in ast.walk(tree):
        container: ast.expr | None = None
        key: ast.expr | None = None
        if isinstance(node, ast.Subscript):
            container, key = node.value, node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr == "get"
            and node.args
        ):
            container, key = node.func.value, node.args[0]
        if not (isinstance(container, ast.Attribute) and isinstance(key, ast.Constant)):
            continue
        if not isinstance(key.value, str):
            continue
        if container.attr == "headers" and _CREDENTIAL_HEADER.search(key.value):
            return "header", key.value
        if container.attr == "cookies" and _CREDENTIAL_COOKIE.search(key.value):
            return "cookie", key.value
    return None


@dataclass
class UserOverride:
    """The override of one current-user dependency."""

    call: Any
    #: The ORM class the probe user is a row of.
    model: type
    replacement: Callable[..., Any]
    #: The Pydantic class the dependency returns, built from that row (``PrivateUser`` from a
    #: ``User`` row), or None when the dependency returns the ORM object itself.
    view: type | None = None
    #: The dependency's name, for messages.
    name: str = ""


@dataclass
class AuthPlan:
    """How the probes authenticate: overrides of current-user dependencies, or configured headers."""

    overrides: list[UserOverride] = field(default_factory=list)
    #: Consumers that could not be overridden, with why.
    unsupported: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)
    #: The primary key of the probe user, per ORM class (set after each seeding).
    user_keys: dict[type, Any] = field(default_factory=dict)


def _mapped(tp: Any) -> type | None:
    from sqlalchemy import inspect as sa_inspect
    from sqlalchemy.orm import Mapper

    tp = plain_annotation(tp)
    if not isinstance(tp, type):
        return None
    try:
        return tp if isinstance(sa_inspect(tp, raiseerr=False), Mapper) else None
    except Exception:  # noqa: BLE001
        return None


def _depends_like(dependant: Dependant) -> Any:
    """A ``Depends`` equal (for FastAPI's per-request cache) to the one that declared ``dependant``."""
    kwargs: dict[str, Any] = {"use_cache": getattr(dependant, "use_cache", True)}
    scope = getattr(dependant, "scope", None)
    if scope is not None and "scope" in inspect.signature(Depends).parameters:
        kwargs["scope"] = scope
    return Depends(dependant.call, **kwargs)


def _subtree_session(consumer: Dependant) -> Dependant | None:
    stack = list(consumer.dependencies)
    seen = 0
    while stack and seen < 500:
        seen += 1
        current = stack.pop()
        if current.call is not None and yields_session(current.call):
            return current
        stack.extend(current.dependencies)
    return None


def _pydantic_model(tp: Any) -> type | None:
    from pydantic import BaseModel

    tp = plain_annotation(tp)
    return tp if is_subclass(tp, BaseModel) else None


def _source_class(view: type, mapped: list[type]) -> type | None:
    """The ORM class a Pydantic user model is read from (``PrivateUser`` from ``User``).

    The class must have an attribute (column, relationship or property) for every required field
    of the model, under the field's name or its alias; among those, a class whose name is part of
    the model's name wins, then the one that covers the most fields.
    """
    fields: dict[str, Any] = dict(getattr(view, "model_fields", {}) or {})
    if not fields:
        return None

    def has(cls: type, name: str, info: Any) -> bool:
        # Looked up without running descriptors: a hybrid property evaluated on the class
        # (`User.group.slug`) raises, though every row has the value (mealie's `group_slug`).
        names = {name, getattr(info, "alias", None), getattr(info, "validation_alias", None)}
        return any(isinstance(n, str) and any(n in vars(k) for k in cls.__mro__) for n in names)

    best: tuple[bool, int, str] | None = None
    chosen: type | None = None
    for cls in mapped:
        try:
            if not all(has(cls, name, info) for name, info in fields.items() if info.is_required()):
                continue
            covered = sum(1 for name, info in fields.items() if has(cls, name, info))
        except Exception:  # noqa: BLE001 - an exotic class: not the user's source
            continue
        rank = (cls.__name__.lower() in view.__name__.lower(), covered, cls.__name__)
        if covered and (best is None or rank[:2] > best[:2]):
            best, chosen = rank, cls
    return chosen


def read_user(session: Any, model: type, key: Any, view: type | None) -> Any:
    """The probe user: row ``key`` of ``model`` in a sync ``session``, as ``view`` when given."""
    row = session.get(model, key)
    if row is None or view is None:
        return row
    return cast(Any, view).model_validate(row, from_attributes=True)


async def load_user(session: Any, model: type, key: Any, view: type | None) -> Any:
    """:func:`read_user` with the app's session, sync or async (an ``AsyncSession`` reads the row,
    and lazy relationships the Pydantic model asks for, inside ``run_sync``)."""
    from sqlalchemy.ext.asyncio import AsyncSession

    if isinstance(session, AsyncSession):
        return await session.run_sync(read_user, model, key, view)
    return read_user(session, model, key, view)


def build_user_override(
    consumer: Dependant,
    model: type,
    plan: AuthPlan,
    own_session: Callable[[], Any],
    not_recording: Callable[[], Any],
    view: type | None = None,
) -> Callable[..., Any]:
    """A dependency returning the probe user: loaded with the app's session when it has one."""
    session_dependant = _subtree_session(consumer)

    async def _load(session: Any) -> Any:
        key = plan.user_keys.get(model)
        if key is None:
            return None
        return await load_user(session, model, key, view)

    if session_dependant is not None:

        async def probe_current_user(**kwargs: Any) -> Any:
            return await _load(kwargs["fastapi_rules_session"])

        probe_current_user.__signature__ = inspect.Signature(  # type: ignore[attr-defined]
            [
                inspect.Parameter(
                    "fastapi_rules_session",
                    inspect.Parameter.KEYWORD_ONLY,
                    default=_depends_like(session_dependant),
                    annotation=Any,
                )
            ]
        )
        return probe_current_user

    async def probe_detached_user() -> Any:
        with not_recording():
            async with own_session() as session:
                user = await _load(session)
                if user is not None and view is None:
                    session.expunge(user)
                return user

    return probe_detached_user


def plan_auth(
    routes: list[RouteFacts],
    headers: dict[str, str],
    own_session: Callable[[], Any],
    not_recording: Callable[[], Any],
    mapped: list[type] | None = None,
) -> AuthPlan:
    """Decide how protected routes are authenticated during the probes.

    A current-user dependency annotated to return an ORM class is replaced by one returning a
    seeded row; one annotated to return a Pydantic model (mealie's ``PrivateUser``) by one
    returning that model built from a seeded row of the ORM class that has its fields
    (``mapped``). The runner checks the latter once the database is seeded
    (:func:`load_user`) and drops an override that cannot build its user.
    """
    plan = AuthPlan(headers=dict(headers))
    if headers:
        return plan
    done: set[int] = set()
    for route in routes:
        for consumer, scheme in iter_schemes(route):
            call = consumer.call
            if unwrap_callable(call) is unwrap_callable(route.endpoint):
                # `dependencies=[Depends(HTTPBearer())]` (fastapi_best_architecture): the endpoint
                # reads the scheme itself; it is no current-user dependency to stand in for.
                name = getattr(unwrap_callable(call), "__qualname__", repr(call))
                plan.unsupported.setdefault(
                    name,
                    f"the route depends on the scheme `{type(scheme).__name__}` itself, not on a "
                    "current-user dependency the plugin could stand in for (whatever checks the "
                    "token, a middleware, is out of its reach)",
                )
                continue
            if id(call) in done:
                continue
            done.add(id(call))
            returned = type_hints(unwrap_callable(call)).get("return")
            model = _mapped(returned)
            view = None if model is not None else _pydantic_model(returned)
            name = getattr(unwrap_callable(call), "__qualname__", repr(call))
            if view is not None:
                model = _source_class(view, list(mapped or ()))
                if model is None:
                    plan.unsupported[name] = (
                        f"it returns `{view.__name__}`, and no ORM class has an attribute for each "
                        "of its required fields, so the plugin cannot build its user"
                    )
                    continue
            if model is None:
                plan.unsupported[name] = (
                    "it is not annotated to return an ORM class or a Pydantic model, so the plugin "
                    "cannot build its user"
                )
                continue
            replacement = build_user_override(consumer, model, plan, own_session, not_recording, view)
            plan.overrides.append(
                UserOverride(call=call, model=model, replacement=replacement, view=view, name=name)
            )
    return plan
