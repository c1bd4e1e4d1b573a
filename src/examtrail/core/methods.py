"""HTTP methods beyond the routes' own: every GET route answers HEAD (``HeadAsGet``), and the
``Allow`` header of a 405 lists every method the resource supports, across all its routes.

HEAD is not written into the OpenAPI document: it is implied by GET (RFC 9110 §9.3.2), as
Starlette's own routes (``/openapi.json``) serve it undocumented.
"""

from __future__ import annotations

import re
from typing import Any

from fastapi.routing import iter_route_contexts
from starlette.requests import Request
from starlette.routing import BaseRoute, Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from examtrail.core.fastpath import Endpoint

_METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")
_WITH_EFFECTS = "_examtrail_get_with_effects"


def get_with_effects(endpoint: Endpoint) -> Endpoint:
    """Marks a GET endpoint that changes state (Inspera's GET that orders an export; a status
    that records the download link it issues): HEAD must be safe (RFC 9110 §9.2.1), so
    ``HeadAsGet`` does not run it for a HEAD, which stays a 405."""
    setattr(endpoint, _WITH_EFFECTS, True)
    return endpoint


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
    if "GET" in served and "HEAD" not in served and _mirrored(routes, request.scope):  # by HeadAsGet
        served.insert(served.index("GET") + 1, "HEAD")
    return ", ".join(served) or None


def _matches(routes: list[BaseRoute], scope: Scope, method: str) -> bool:
    probe = {**scope, "method": method}
    return any(route.matches(probe)[0] == Match.FULL for route in routes)


def _mirrored(routes: list[BaseRoute], scope: Scope) -> bool:
    """Whether ``HeadAsGet`` answers a HEAD on this path: a GET route serves it, and the first
    one that does (in routing order, through included routers) has no effects."""
    if not _matches(routes, scope, "GET"):
        return False
    path = scope["path"]
    for context in iter_route_contexts(routes):
        if "GET" in (getattr(context, "methods", None) or ()) and context.path_regex.match(path):
            return not getattr(context.endpoint, _WITH_EFFECTS, False)
    return True


class HeadAsGet:
    """A HEAD request that no route serves itself but a GET route does is answered by that route
    as a GET: the same status and headers (``Content-Length`` among them), no body (RFC 9110
    §9.3.2). FastAPI's routes serve only the methods they name, so without this, ``HEAD /healthz``
    (a load balancer's health check) was a 405.

    Routes that serve HEAD themselves (Starlette's, the signed downloads with their ranges and
    static files) get the request as it is. The route sees a copy of the scope whose method is
    GET; the server's scope keeps HEAD (uvicorn sends no body for it), and the route's match is
    copied back to it for the access log."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return
        routes: list[BaseRoute] = getattr(scope.get("app"), "routes", [])
        if _matches(routes, scope, "HEAD") or not _mirrored(routes, scope):
            await self.app(scope, receive, send)  # its own HEAD, or a 404/405 as before
            return
        as_get = {**scope, "method": "GET"}
        ended = False

        async def send_headers_only(message: Message) -> None:
            nonlocal ended
            if message["type"] != "http.response.body":
                await send(message)
            elif not ended:
                ended = True
                await send({"type": "http.response.body", "body": b"", "more_body": False})

        try:
            await self.app(as_get, receive, send_headers_only)
        finally:
            scope.update({key: value for key, value in as_get.items() if key != "method"})
