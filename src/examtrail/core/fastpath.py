"""Routes with a fast path: the hot, plain form of a call answered without FastAPI's dependency
solving and request validation, which cost more than the rest of such a call.

The route keeps its endpoint and signature (the OpenAPI document is made from them). Its fast
path sees each request first and either answers it (raising the same errors the dependencies
would, in the same order) or returns None, having read nothing of the body, and the route's
regular handler runs. With dependency overrides set (tests) the regular handler always runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

from fastapi import APIRouter, Request, Response
from fastapi.routing import APIRoute

from examtrail.core.schemas import INT64_MAX, is_ascii_digits

_INT64_DIGITS = len(str(INT64_MAX))

FastPath = Callable[[Request], Awaitable[Response | None]]
Endpoint = TypeVar("Endpoint", bound=Callable[..., Any])


def fast_path_route(fast: FastPath) -> type[APIRoute]:
    """An ``APIRoute`` class whose requests try ``fast`` before the regular handler."""

    class FastPathRoute(APIRoute):
        def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
            regular = super().get_route_handler()

            async def handler(request: Request) -> Response:
                if not request.app.dependency_overrides:
                    answer = await fast(request)
                    if answer is not None:
                        return answer
                return await regular(request)

            return handler

    return FastPathRoute


def add_fast_route(
    router: APIRouter, method: str, path: str, fast: FastPath, **kwargs: Any
) -> Callable[[Endpoint], Endpoint]:
    """``@router.<method>(path, **kwargs)`` with ``fast`` as the route's fast path."""

    def register(endpoint: Endpoint) -> Endpoint:
        route_class = fast_path_route(fast)
        router.add_api_route(path, endpoint, methods=[method], route_class_override=route_class, **kwargs)
        return endpoint

    return register


def int64_param(request: Request, name: str) -> int | None:
    """The path parameter ``name`` when it is plainly a valid int64 id (ASCII digits), else None
    (then the regular handler validates it, with its own errors)."""
    raw = request.path_params.get(name)
    # At most int64's 19 digits: int() refuses (ValueError) past 4,300 digits.
    if not isinstance(raw, str) or len(raw) > _INT64_DIGITS or not is_ascii_digits(raw):
        return None
    value = int(raw)
    return value if value <= INT64_MAX else None
