"""One value for each query parameter that takes one.

FastAPI reads a scalar query parameter given several times as its last value and ignores the
others, whatever they hold (``?pseudonymize=<anything>&pseudonymize=true`` orders a
pseudonymised export). The document declares such a parameter as one value, so several are a
422 naming it, like any other value it refuses; list parameters (``userId``, ``event``…: the
document says "repeatable") take as many as are given.
"""

from __future__ import annotations

import types
from typing import Annotated, Any, Union, get_args, get_origin

from fastapi import Request
from fastapi.dependencies.models import Dependant
from fastapi.exceptions import RequestValidationError
from fastapi.routing import APIRoute

_MANY = (list, set, frozenset, tuple)


def _takes_many(annotation: Any) -> bool:
    origin = get_origin(annotation)
    if origin is Annotated:
        return _takes_many(get_args(annotation)[0])
    if origin is Union or origin is types.UnionType:
        return any(_takes_many(arg) for arg in get_args(annotation))
    return origin in _MANY or annotation in _MANY


_CACHED = "_examtrail_single_valued"


def _single_valued(route: APIRoute) -> tuple[str, ...]:
    """The query names of ``route`` (its dependencies' included) that take one value; kept on
    the route (APIRoute is not hashable, and ids are reused once an app is collected)."""
    cached: tuple[str, ...] | None = getattr(route, _CACHED, None)
    if cached is not None:
        return cached
    names: list[str] = []
    pending: list[Dependant] = [route.dependant]
    while pending:
        dependant = pending.pop()
        names += [f.alias for f in dependant.query_params if not _takes_many(f.field_info.annotation)]
        pending += dependant.dependencies
    cached = tuple(dict.fromkeys(names))
    setattr(route, _CACHED, cached)
    return cached


async def single_query_values(request: Request) -> None:
    """An app-wide dependency: 422 for a one-value query parameter given more than once."""
    route, query = request.scope.get("route"), request.query_params
    if not isinstance(route, APIRoute) or len(query) == len(query.multi_items()):
        return  # no name given twice: the common case, answered without looking at the route
    repeated = [name for name in _single_valued(route) if len(query.getlist(name)) > 1]
    if repeated:
        raise RequestValidationError(
            [
                {"type": "repeated_parameter", "loc": ("query", name), "msg": f"'{name}' takes one value"}
                for name in repeated
            ]
        )
