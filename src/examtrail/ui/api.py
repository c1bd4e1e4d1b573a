"""Routes of the review pages: page shells, HTML fragments (bearer token) and assets.

A page is a shell with no data: the tab's script (``static/ui.js``) holds the access
token in ``sessionStorage`` and fetches the page's fragment with it. Every response
carries a Content-Security-Policy that allows scripts, styles and requests only from
the app itself (no inline scripts), and images also from the object store's links.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import urlsplit

from fastapi import APIRouter, FastAPI, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import Field
from starlette.staticfiles import StaticFiles

from examtrail.auth.deps import ReaderPrincipal
from examtrail.core.methods import get_with_effects
from examtrail.core.schemas import ASCII_DIGITS, NO_CONTROL_OR_EMPTY, Int64Id
from examtrail.core.settings import Settings
from examtrail.deps import RuntimeDep, SessionDep
from examtrail.ingest.api import TestId, UserId
from examtrail.ingest.review import SORT_KEYS
from examtrail.ui import render as event_render
from examtrail.ui import service

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"

router = APIRouter(prefix="/ui", include_in_schema=False)

templates = Environment(
    loader=FileSystemLoader(HERE / "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
templates.filters["utc"] = service.utc_text
templates.filters["duration"] = service.duration_text
templates.filters["filesize"] = service.size_text
templates.filters["sevclass"] = service.severity_class
templates.filters["event_html"] = event_render.event_html
templates.globals["severity_order"] = service.severity_order
templates.globals["SEVERITIES"] = service.SEVERITIES


def _origin(url: str | None) -> str | None:
    if not url:
        return None
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}" if parts.scheme in ("http", "https") and parts.netloc else None


def content_security_policy(settings: Settings) -> str:
    """Only the app's own scripts and styles; images (evidence) also from the store's links."""
    images = ["'self'"]
    for url in (settings.public_url, settings.s3_public_endpoint_url or settings.s3_endpoint_url):
        origin = _origin(url)
        if origin and origin not in images:
            images.append(origin)
    return "; ".join(
        [
            "default-src 'none'",
            "script-src 'self'",
            "style-src 'self'",
            f"img-src {' '.join(images)}",
            "connect-src 'self'",
            "form-action 'self'",
            "base-uri 'none'",
            "frame-ancestors 'none'",
        ]
    )


def _headers(settings: Settings, *, cache: bool = False) -> dict[str, str]:
    return {
        "Content-Security-Policy": content_security_policy(settings),
        "X-Content-Type-Options": "nosniff",
        # The fragments hold signed links: never leak them through a Referer header.
        "Referrer-Policy": "no-referrer",
        "X-Frame-Options": "DENY",
        "Cache-Control": "no-cache" if cache else "no-store",
    }


def render(settings: Settings, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    html = templates.get_template(template).render(**context)
    return HTMLResponse(html, status_code=status_code, headers=_headers(settings))


# --- pages (shells: no data, no token needed) ---------------------------------------------


@router.get("", response_class=HTMLResponse)
def ui_root() -> RedirectResponse:
    return RedirectResponse("/ui/", status_code=308)


@router.get("/", response_class=HTMLResponse)
def sign_in_page(runtime: RuntimeDep, expired: Annotated[str | None, Query()] = None) -> HTMLResponse:
    return render(runtime.settings, "signin.html", page="signin", expired=expired is not None)


@router.post("/", response_class=HTMLResponse)
def sign_in_without_script(runtime: RuntimeDep) -> HTMLResponse:
    """The form posted without the script (JavaScript off): the key is ignored, never kept."""
    return render(
        runtime.settings, "signin.html", status_code=400, page="signin", expired=False, no_script=True
    )


@router.get("/tests", response_class=HTMLResponse)
def list_page(request: Request, runtime: RuntimeDep) -> HTMLResponse:
    fragment = "/ui/fragments/tests"
    return render(
        runtime.settings, "shell.html", page="tests", title="Tests", fragment=_with_query(fragment, request)
    )


@router.get("/tests/{testId}", response_class=HTMLResponse)
def exam_page(test_id: TestId, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    fragment = f"/ui/fragments/tests/{test_id}"
    return render(
        runtime.settings,
        "shell.html",
        page="test",
        title=f"Test {test_id}",
        fragment=_with_query(fragment, request),
    )


@router.get("/tests/{testId}/candidates/{userId}", response_class=HTMLResponse)
def candidate_page(test_id: TestId, user_id: UserId, request: Request, runtime: RuntimeDep) -> HTMLResponse:
    fragment = f"/ui/fragments/tests/{test_id}/candidates/{user_id}"
    return render(
        runtime.settings,
        "shell.html",
        page="candidate",
        title=f"Candidate {user_id} on test {test_id}",
        fragment=_with_query(fragment, request),
    )


# The "Flagged only" checkbox: checked sends ``1`` (``true`` also reads as checked);
# unchecked sends nothing (``0``, ``false`` or empty also read as unchecked). Anything
# else is a 422 like any other bad parameter, never "flagged only".
FlaggedParam = Annotated[Literal["1", "true", "0", "false", ""] | None, Query()]


def _flagged(value: str | None) -> bool:
    return value in ("1", "true")


def _with_query(path: str, request: Request) -> str:
    query = request.url.query
    return f"{path}?{query}" if query else path


# --- fragments (bearer token, scope ingest or export) ---------------------------------------


@router.get("/fragments/tests", response_class=HTMLResponse)
def list_fragment(
    principal: ReaderPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    q: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_OR_EMPTY)] = None,
    after: Annotated[Int64Id | None, Query()] = None,
) -> HTMLResponse:
    query = (q or "").strip() or None
    page = service.tests_list(session, principal, query, after)
    return render(runtime.settings, "_tests.html", page=page, q=query or "", after=after)


@router.get("/fragments/tests/{testId}", response_class=HTMLResponse)
def exam_fragment(
    test_id: TestId,
    request: Request,
    principal: ReaderPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    sort: Annotated[Literal["userId", "candidateId", "events", "flags"], Query()] = "userId",
    dir: Annotated[Literal["asc", "desc"], Query()] = "asc",
    flagged: FlaggedParam = None,
    severity: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_OR_EMPTY)] = None,
    event: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_OR_EMPTY)] = None,
    candidate: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_OR_EMPTY)] = None,
    offset: Annotated[int, Field(ge=0, le=10_000_000), ASCII_DIGITS, Query()] = 0,
) -> HTMLResponse:
    assert sort in SORT_KEYS
    filters = service.CandidateFilters(
        sort=sort,
        descending=dir == "desc",
        flagged=_flagged(flagged),
        severity=severity or None,
        event=event or None,
        candidate=(candidate or "").strip() or None,
        offset=offset,
    )
    view = service.test_view(session, principal, test_id, filters)
    return render(
        runtime.settings,
        "_test.html",
        view=view,
    )


@router.get("/fragments/tests/{testId}/candidates/{userId}", response_class=HTMLResponse)
@get_with_effects  # records the evidence links it issues
def candidate_fragment(
    test_id: TestId,
    user_id: UserId,
    request: Request,
    principal: ReaderPrincipal,
    session: SessionDep,
    runtime: RuntimeDep,
    event: Annotated[str | None, Query(max_length=200, pattern=NO_CONTROL_OR_EMPTY)] = None,
    flagged: FlaggedParam = None,
) -> HTMLResponse:
    view = service.timeline_view(
        session, runtime.store, principal, test_id, user_id, event=event or None, flagged=_flagged(flagged)
    )
    session.commit()  # the evidence links' audit entry, before the links leave
    return render(
        runtime.settings,
        "_timeline.html",
        view=view,
    )


class _Assets(StaticFiles):
    """The pages' CSS and JS, with the same security headers as the pages."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(directory=STATIC)
        self._extra = _headers(settings, cache=True)

    def file_response(self, *args: Any, **kwargs: Any) -> Any:
        response = super().file_response(*args, **kwargs)
        response.headers.update(self._extra)
        return response


def install(app: FastAPI, settings: Settings) -> None:
    """Mount the pages and their assets on ``app``."""
    app.include_router(router)
    app.mount("/ui/static", _Assets(settings), name="ui-static")
