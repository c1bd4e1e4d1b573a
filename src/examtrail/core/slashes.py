"""The trailing-slash redirect (``GET /v1/tests/`` → ``/v1/tests``), with a relative ``Location``.

Starlette's router answers it itself (``redirect_slashes``) with an absolute URL built from the
request's ``Host`` header: whatever host a client (or a cache poisoner) sends is reflected in
the redirect. RFC 9110 §10.2.2 allows a relative reference, which the client resolves against
the URL it asked for: this one is the path and query only.

The router's own redirect is turned off and the same redirect is answered from its ``default``
app, which the router calls only when no route matched: requests that match a route (the fast
paths among them) never reach it, so they pay nothing for this.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.datastructures import URL
from starlette.responses import RedirectResponse
from starlette.routing import Match, Router
from starlette.types import ASGIApp, Receive, Scope, Send


def slash_redirect_location(router: Router, scope: Scope) -> str | None:
    """The relative URL of the request with its trailing slash added or removed, when a route
    matches that (Starlette's own test), else None."""
    path: str = scope["path"]
    if scope["type"] != "http" or path == scope.get("root_path", "") + "/":
        return None
    twin = {**scope, "path": path.rstrip("/") if path.endswith("/") else path + "/"}
    if not any(route.matches(twin)[0] is not Match.NONE for route in router.routes):
        return None
    # Without a host Starlette builds a relative reference, escaping ``?``, ``#``, ``\`` and a
    # leading ``//`` (which would name a host: ``//evil.example``).
    return str(URL(scope={**twin, "headers": [], "server": None}))


def install_relative_slash_redirects(app: FastAPI) -> None:
    router = app.router
    router.redirect_slashes = False
    not_found: ASGIApp = router.default

    async def default(scope: Scope, receive: Receive, send: Send) -> None:
        location = slash_redirect_location(router, scope)
        if location is None:
            await not_found(scope, receive, send)
        else:
            await RedirectResponse(location)(scope, receive, send)

    router.default = default
