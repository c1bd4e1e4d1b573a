"""The OpenAPI document and the documentation pages.

The document is FastAPI's, made exact: stable ``operationId``s, the real error model on every
operation for each status it can answer (with the error codes), no ``{"detail": …}`` 422 model
(the API never answers it), ``servers`` from ``EXAMTRAIL_PUBLIC_URL``. Swagger UI (``/docs``)
and ReDoc (``/redoc``) are served with assets shipped in the package: they work offline.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import fastapi_offline
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_redoc_html, get_swagger_ui_html, get_swagger_ui_oauth2_redirect_html
from fastapi.openapi.utils import get_openapi
from fastapi.routing import APIRoute, iter_route_contexts
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel
from starlette.responses import HTMLResponse, RedirectResponse

from examtrail.core.body import body_limit_of
from examtrail.core.schemas import ErrorBody
from examtrail.core.settings import Settings
from examtrail.ingest.schemas import EventIn

DOCS_ASSETS = Path(fastapi_offline.__file__).parent / "static"
ASSETS_URL = "/docs/assets"

# Route function name → operationId. Every route in the document must be listed (a test checks).
OPERATION_IDS = {
    "list_tests": "listTests",
    "inspera_token": "getAccessToken",
    "oauth_token": "getOAuthToken",
    "put_test": "putTest",
    "get_test": "getTest",
    "put_candidates": "putCandidates",
    "post_events": "postEvents",
    "put_file": "putEventFile",
    "order_events": "orderTestEventsExport",
    "get_events": "getTestEvents",
    "get_events_job": "getTestEventsExport",
    "list_jobs": "listTestEventsExports",
    "cancel_events": "cancelTestEventsExportByQuery",
    "cancel_events_job": "cancelTestEventsExport",
    "export_schema": "getExportFileSchema",
    "erase_candidate": "eraseCandidate",
    "erase_test": "eraseTest",
    "get_erasure": "getErasure",
    "get_hold": "getLegalHold",
    "put_hold": "setLegalHold",
    "delete_hold": "releaseLegalHold",
    "list_events": "listSubscriptionEvents",
    "create_subscription": "createSubscription",
    "list_subscriptions": "listSubscriptions",
    "get_subscription": "getSubscription",
    "delete_subscription": "deleteSubscription",
    "list_deliveries": "listDeliveries",
    "redeliver": "redeliverNotification",
    "download": "downloadFile",
    "jwks": "getJwks",
    "list_audit_entries": "listAuditEntries",
    "healthz": "getHealth",
    "readyz": "getReadiness",
}


def operation_id(route: APIRoute) -> str:
    """``generate_unique_id_function`` of the app: the table above, else the camelCased name."""
    known = OPERATION_IDS.get(route.name)
    if known:
        return known
    head, *rest = route.name.split("_")
    return head + "".join(part.title() for part in rest)


# Error codes by status; an operation lists the generic ones and those of its own (below).
GENERIC_CODES: dict[int, list[str]] = {
    400: ["malformed_json"],
    401: ["unauthorized", "invalid_token", "token_expired", "token_revoked"],
    403: ["insufficient_scope"],
    404: ["not_found"],
    409: [],
    413: ["payload_too_large"],
    415: ["unsupported_media_type"],
    422: ["validation_error"],
    503: ["database_unavailable"],
}
STATUS_MEANING = {
    400: "Bad request",
    401: "No access token, or an expired or invalid one",
    403: "The token lacks the scope this call needs",
    404: "Not found (another tenant's resource answers the same)",
    409: "Conflicts with the current state",
    413: "The request body is over `EXAMTRAIL_MAX_REQUEST_BYTES` (32 MiB by default), counted as it "
    "arrives (chunked too); a declared `Content-Length` over it is refused before the body is read",
    415: "Wrong content type",
    416: "No range of the `Range` header starts within the file: `Content-Range` says its size",
    422: "The request is not valid: `details` lists each problem (`index`, `field`, `message`)",
    503: "A backing service is busy or unreachable; retry after `Retry-After` seconds",
}
_TEST_404 = {404: ["test_not_found"]}
_JOB_404 = {404: ["test_not_found", "job_not_found"]}
_SUBSCRIPTION_404 = {404: ["subscription_not_found"]}
OPERATION_CODES: dict[str, dict[int, list[str]]] = {
    "getAccessToken": {400: ["unsupported_grant_type"], 401: ["invalid_client", "invalid_grant"]},
    "getOAuthToken": {400: ["unsupported_grant_type"], 401: ["invalid_client", "invalid_grant"]},
    "putTest": {},
    "getTest": _TEST_404,
    "putCandidates": _TEST_404,
    "postEvents": {
        404: ["test_not_found", "candidate_not_found"],
        409: ["event_conflict"],
        413: ["batch_too_large"],
        503: ["shutting_down"],
    },
    "putEventFile": {
        404: ["test_not_found", "candidate_not_found", "event_not_found"],
        409: ["file_exists"],
        413: ["file_too_large"],
        422: ["invalid_content_type", "empty_file"],
    },
    "orderTestEventsExport": _TEST_404,
    "listTestEventsExports": _TEST_404,
    "getTestEvents": _JOB_404,
    "getTestEventsExport": _JOB_404,
    "cancelTestEventsExport": {**_JOB_404, 409: ["job_not_cancellable"]},
    "cancelTestEventsExportByQuery": {**_JOB_404, 409: ["job_not_cancellable"]},
    "createSubscription": {
        400: [
            "invalid_endpoint",
            "endpoint_unresolvable",
            "endpoint_not_allowed",
            "endpoint_verification_failed",
        ],
        409: ["subscription_exists"],
        503: ["verification_busy"],
    },
    "getSubscription": _SUBSCRIPTION_404,
    "deleteSubscription": _SUBSCRIPTION_404,
    "listDeliveries": _SUBSCRIPTION_404,
    "redeliverNotification": {
        404: ["subscription_not_found", "delivery_not_found"],
        409: ["subscription_disabled", "delivery_in_progress"],
    },
    "eraseCandidate": {404: ["test_not_found", "candidate_not_found"], 409: ["legal_hold"]},
    "eraseTest": {**_TEST_404, 409: ["legal_hold"]},
    "getErasure": {404: ["erasure_not_found"]},
    "getLegalHold": _TEST_404,
    "setLegalHold": _TEST_404,
    "releaseLegalHold": _TEST_404,
    "downloadFile": {
        400: ["invalid_range"],
        403: ["invalid_signature", "link_expired"],
        404: ["file_gone"],
        416: ["range_not_satisfiable"],
    },
    "getJwks": {},
}
# What a status means where the generic meaning is wrong (a signed link carries no token).
OPERATION_MEANING: dict[str, dict[int, str]] = {
    "postEvents": {
        413: "The request body is over `EXAMTRAIL_MAX_REQUEST_BYTES` (32 MiB by default; a declared "
        "`Content-Length` over it is refused before the body is read), or the batch holds more than "
        "`EXAMTRAIL_MAX_BATCH_EVENTS` events",
    },
    "putEventFile": {
        413: "The file is over `EXAMTRAIL_MAX_FILE_BYTES` (100 MiB by default; a declared `Content-Length` "
        "over it is refused before the body is read)",
    },
    "downloadFile": {
        400: "The `Range` header is malformed",
        403: "The link's signature is not valid, or the link has expired",
    },
}
# The token endpoints answer OAuth errors only (their own codes, no 422), and 413 for a body over
# their own cap (``core.body.body_limit`` on the endpoint).
TOKEN_OPERATIONS = {"getAccessToken", "getOAuthToken"}
# Operations that answer no error of their own (beyond 503 for the readiness probe).
NO_ERRORS = {"getHealth", "getExportFileSchema"}
# Operations any one of several scopes opens: OpenAPI lists alternatives (OR) in ``security``.
ANY_SCOPE: dict[str, tuple[str, ...]] = {"listTests": ("ingest", "export")}
# Bodies read by hand (not declared as a parameter) still need their schemas in the document.
EXTRA_SCHEMAS: tuple[type[BaseModel], ...] = (EventIn,)

_ERROR_REF = {"$ref": "#/components/schemas/ErrorBody"}
_JSON = "application/json"


def _statuses(op_id: str, operation: dict[str, Any]) -> set[int]:
    if op_id in NO_ERRORS:
        return set()
    statuses = set(OPERATION_CODES.get(op_id, {}))
    parameters = operation.get("parameters", [])
    content = operation.get("requestBody", {}).get("content", {})
    statuses.add(503)
    if operation.get("security"):
        statuses |= {401, 403}
    if any(p["in"] == "path" for p in parameters) and op_id != "getReadiness":
        statuses.add(404)
    if (parameters or content) and op_id not in TOKEN_OPERATIONS:
        statuses.add(422)
    if _JSON in content:
        statuses |= {400, 413, 415}
    elif content and "application/x-www-form-urlencoded" not in content:
        statuses |= {413, 415}
    elif content:
        statuses.add(413)  # the token forms (core.body.BodyLimit)
    return statuses


def _error_response(
    op_id: str, status: int, operation: dict[str, Any], body_limit: int | None, max_request_bytes: int
) -> dict[str, Any]:
    generic = GENERIC_CODES.get(status, [])
    if op_id in TOKEN_OPERATIONS and status not in (413, 503):
        generic = []
    if status == 413 and body_limit is None:  # the route limits its body itself (its own code)
        generic = []
    # Malformed JSON needs a JSON body; a missing scope, a token.
    if (status == 400 and _JSON not in operation.get("requestBody", {}).get("content", {})) or (
        status == 403 and not operation.get("security")
    ):
        generic = []
    codes = generic + OPERATION_CODES.get(op_id, {}).get(status, [])
    codes = list(dict.fromkeys(codes))
    listed = ", ".join(f"`{code}`" for code in codes)
    meaning = OPERATION_MEANING.get(op_id, {}).get(status, STATUS_MEANING[status])
    if status == 413 and body_limit is not None and body_limit < max_request_bytes:
        meaning = (
            f"The body is over this call's own cap, {body_limit:,} bytes (counted as it arrives; a "
            "declared `Content-Length` over it is refused before the body is read), before anything "
            "in it is checked"
        )
    response: dict[str, Any] = {
        "description": f"{meaning}. `error`: {listed}." if listed else meaning,
        "content": {_JSON: {"schema": _ERROR_REF}},
    }
    if status == 401 and op_id not in ("getAccessToken", "getOAuthToken"):
        response["headers"] = {
            "WWW-Authenticate": {
                "description": 'RFC 6750 challenge, e.g. `Bearer realm="examtrail", error="invalid_token"`',
                "schema": {"type": "string"},
            }
        }
    if status == 403 and "insufficient_scope" in codes:
        response["headers"] = {
            "WWW-Authenticate": {
                "description": "With `insufficient_scope`: RFC 6750 challenge naming the scope, e.g. "
                '`Bearer realm="examtrail", error="insufficient_scope", scope="export"`',
                "schema": {"type": "string"},
            }
        }
    if status == 416:
        response["headers"] = {
            "Content-Range": {"description": "`bytes */<size>` (RFC 9110)", "schema": {"type": "string"}}
        }
    if status == 503:
        response["headers"] = {
            "Retry-After": {"description": "Seconds to wait before retrying", "schema": {"type": "integer"}}
        }
    return response


# OpenAPI links: where an answer's ids lead (the export job to its status, cancel and list; a
# subscription to its calls; an erasure to its status). Generated clients and schemathesis's
# stateful phase follow them. (operationId, status) → link name → (target operationId, parameters).
_TEST_ID = "$request.path.testId"
_EXPORT_JOB = {"testId": _TEST_ID, "jobId": "$response.body#/jobId"}
_EXPORT_LINKS = {
    "exportStatus": ("getTestEventsExport", _EXPORT_JOB),
    "cancelExport": ("cancelTestEventsExport", _EXPORT_JOB),
    "listExports": ("listTestEventsExports", {"testId": _TEST_ID}),
}
_SUBSCRIPTION = {"subscriptionId": "$response.body#/subscriptionId"}
_ERASURE_LINKS = {"erasureStatus": ("getErasure", {"jobId": "$response.body#/jobId"})}
_TEST_LINKS = {
    "getTest": ("getTest", {"testId": _TEST_ID}),
    "orderExport": ("orderTestEventsExport", {"testId": _TEST_ID}),
    "getLegalHold": ("getLegalHold", {"testId": _TEST_ID}),
}
LINKS: dict[tuple[str, int], dict[str, tuple[str, dict[str, str]]]] = {
    ("orderTestEventsExport", 202): _EXPORT_LINKS,
    ("getTestEvents", 200): _EXPORT_LINKS,
    ("putTest", 200): _TEST_LINKS,
    ("putTest", 201): _TEST_LINKS,
    ("postEvents", 201): {
        "attachFile": (
            "putEventFile",
            {"testId": _TEST_ID, "userId": "$request.path.userId", "eventId": "$response.body#/eventIds/0"},
        )
    },
    ("createSubscription", 201): {
        "getSubscription": ("getSubscription", _SUBSCRIPTION),
        "listDeliveries": ("listDeliveries", _SUBSCRIPTION),
        "deleteSubscription": ("deleteSubscription", _SUBSCRIPTION),
    },
    ("eraseTest", 202): _ERASURE_LINKS,
    ("eraseCandidate", 202): _ERASURE_LINKS,
}


def _links(op_id: str, status: int) -> dict[str, Any]:
    return {
        name: {"operationId": target, "parameters": parameters}
        for name, (target, parameters) in LINKS.get((op_id, status), {}).items()
    }


def _add_schema(components: dict[str, Any], model: type[BaseModel]) -> None:
    generated = model.model_json_schema(ref_template="#/components/schemas/{model}")
    components.update(generated.pop("$defs", {}))
    components[model.__name__] = generated


def build_openapi(app: FastAPI, settings: Settings) -> dict[str, Any]:
    schema = get_openapi(
        title=app.title,
        version=app.version,
        description=app.description,
        routes=app.routes,
        servers=[{"url": settings.public_url.rstrip("/"), "description": "This Examtrail server"}],
        tags=app.openapi_tags,
    )
    components: dict[str, Any] = schema.setdefault("components", {}).setdefault("schemas", {})
    models: tuple[type[BaseModel], ...] = (*EXTRA_SCHEMAS, ErrorBody)
    for model in models:
        _add_schema(components, model)
    # FastAPI's default validation error body: the API answers ErrorBody instead.
    components.pop("HTTPValidationError", None)
    components.pop("ValidationError", None)
    # Each route's body cap, as core.body.BodyLimit applies it (``body_limit`` on the endpoint).
    body_limits = {
        operation_id(context.route): body_limit_of(context.endpoint, settings.max_request_bytes)
        for context in iter_route_contexts(app.routes)
        if isinstance(context.route, APIRoute)
    }
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            op_id = operation["operationId"]
            if op_id in ANY_SCOPE:
                operation["security"] = [{"bearerAuth": []}] + [
                    {"oauth2": [scope]} for scope in ANY_SCOPE[op_id]
                ]
            responses: dict[str, Any] = operation.setdefault("responses", {})
            responses.pop("422", None)
            for status in sorted(_statuses(op_id, operation)):
                response = _error_response(
                    op_id,
                    status,
                    operation,
                    body_limits.get(op_id, settings.max_request_bytes),
                    settings.max_request_bytes,
                )
                responses.setdefault(str(status), response)
            for status_text, response in responses.items():
                if links := _links(op_id, int(status_text)):
                    response["links"] = links
    return schema


def install_openapi(app: FastAPI, settings: Settings) -> None:
    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            app.openapi_schema = build_openapi(app, settings)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]


def install_docs(app: FastAPI) -> None:
    """Swagger UI at ``/docs`` (with OAuth2 client credentials), ReDoc at ``/redoc``, ``/`` → ``/docs``."""
    app.mount(ASSETS_URL, StaticFiles(directory=DOCS_ASSETS), name="docs-assets")
    oauth2_redirect = "/docs/oauth2-redirect"

    @app.get("/docs", include_in_schema=False)
    def swagger_ui(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_swagger_ui_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - Swagger UI",
            oauth2_redirect_url=f"{root}{oauth2_redirect}",
            swagger_js_url=f"{root}{ASSETS_URL}/swagger-ui-bundle.js",
            swagger_css_url=f"{root}{ASSETS_URL}/swagger-ui.css",
            swagger_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            swagger_ui_parameters={"persistAuthorization": True, "displayOperationId": True},
        )

    @app.get(oauth2_redirect, include_in_schema=False)
    def swagger_ui_redirect() -> HTMLResponse:
        return get_swagger_ui_oauth2_redirect_html()

    @app.get("/redoc", include_in_schema=False)
    def redoc(request: Request) -> HTMLResponse:
        root = request.scope.get("root_path", "")
        return get_redoc_html(
            openapi_url=f"{root}{app.openapi_url}",
            title=f"{app.title} - ReDoc",
            redoc_js_url=f"{root}{ASSETS_URL}/redoc.standalone.js",
            redoc_favicon_url=f"{root}{ASSETS_URL}/favicon.png",
            with_google_fonts=False,
        )

    @app.get("/", include_in_schema=False)
    def root() -> RedirectResponse:
        return RedirectResponse("/docs")
