"""The ``Allow`` header of a 405: every method the resource supports, across all its routes."""

from __future__ import annotations

import re
from typing import Any

from starlette.requests import Request
from starlette.routing import Match

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_PARAM = re.compile(r"\{[^}]+\}")


def _pattern(template: str) -> str:
    return "[^/]+".join(re.escape(part) for part in _PARAM.split(template))


def _documented(request: Request) -> set[str] | None:
    """The methods the OpenAPI document lists for the most specific path template matching the
    request: ``/v1/subscription/events`` is its own resource, not ``/{subscriptionId}``."""
    openapi = getattr(request.app, "openapi", None)
    if openapi is None:
        return None
    paths: dict[str, dict[str, Any]] = openapi().get("paths", {})
    matching = [template for template in paths if re.fullmatch(_pattern(template), request.url.path)]
    if not matching:
        return None
    best = min(matching, key=lambda template: len(_PARAM.findall(template)))
    return {method.upper() for method in paths[best]}


def allowed_methods(request: Request) -> str | None:
    """Starlette answers 405 from the first route that matches the path, so its ``Allow`` lists
    only that route's methods; a path served by several routes (GET and DELETE) needs them all."""
    routes = getattr(request.app, "routes", [])
    served = [
        method
        for method in _METHODS
        if any(route.matches({**request.scope, "method": method})[0] == Match.FULL for route in routes)
    ]
    documented = _documented(request)
    if documented is not None:
        served = [method for method in served if method in documented or method == "HEAD"]
    return ", ".join(served) or None
