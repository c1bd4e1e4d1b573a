"""Serves the local object store's signed download links (embedded deployment only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from stat import S_ISREG
from typing import Annotated, Any

from fastapi import APIRouter, Header, Path, Query, Request
from pydantic import Field
from starlette.responses import FileResponse

from examtrail.core.errors import Forbidden, NotFound
from examtrail.core.schemas import ASCII_DIGITS
from examtrail.storage.base import StorageError
from examtrail.storage.local import LocalObjectStore
from examtrail.storage.ranges import Ranges, parse_range

router = APIRouter(tags=["downloads"])

# Called with (key, size, Range header) before a file is served; the application's top installs
# one (``app.state.download_hook``) that writes the audit entry. Storage knows no feature.
DownloadHook = Callable[[str, int, str | None], None]

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_ACCEPT_RANGES = {"description": "`bytes`", "schema": {"type": "string", "enum": ["bytes"]}}
_CONTENT_LENGTH = {"description": "The bytes in this answer", "schema": {"type": "integer"}}
DOWNLOAD_RESPONSES: dict[int | str, dict[str, Any]] = {
    200: {
        "description": "The whole file, typed with the link's `type` (else guessed from its name): "
        "no Range header, a range unit other than `bytes`, an `If-Range` that no longer matches, "
        "more than 100 ranges, or a suffix range of an empty file",
        "content": {"*/*": _BINARY},
        "headers": {
            "Accept-Ranges": _ACCEPT_RANGES,
            "Content-Length": _CONTENT_LENGTH,
            "Content-Disposition": {
                "description": "`attachment`, with the link's file name",
                "schema": {"type": "string"},
            },
            "ETag": {"description": "Strong validator, for `If-Range`", "schema": {"type": "string"}},
            "Last-Modified": {"description": "Also usable in `If-Range`", "schema": {"type": "string"}},
        },
    },
    206: {
        "description": "The ranges asked for that start within the file (RFC 9110 §14), cut at its end: "
        "one range as the bytes themselves (with `Content-Range`), several as "
        "`multipart/byteranges`, in the order asked (overlapping ones merged, in file order)",
        "content": {"*/*": _BINARY, "multipart/byteranges": _BINARY},
        "headers": {
            "Accept-Ranges": _ACCEPT_RANGES,
            "Content-Length": _CONTENT_LENGTH,
            "Content-Range": {
                "description": "With a single range: `bytes <first>-<last>/<size>`",
                "schema": {"type": "string"},
            },
        },
    },
}


class _RangedFileResponse(FileResponse):
    """A ``FileResponse`` that serves the ranges ``parse_range`` chose: Starlette calls
    ``_parse_range_header`` after its own checks (method, ``If-Range``), which the route has
    made too. (If a Starlette upgrade stops calling it, tests/storage/test_api.py fails.)"""

    ranges: Ranges | None = None

    def _parse_range_header(self, http_range: str, file_size: int) -> Ranges:  # type: ignore[override]
        return self.ranges or []


def _if_range_holds(if_range: str | None, response: FileResponse) -> bool:
    """RFC 9110 §13.1.5: a strong ETag or the exact Last-Modified (Starlette's own test)."""
    if if_range is None:
        return True
    if if_range.startswith("W/"):
        return False
    return if_range in (response.headers["etag"], response.headers["last-modified"])


@router.api_route("/files/{key:path}", methods=["HEAD"], include_in_schema=False)
@router.get(
    "/files/{key:path}",
    summary="Download through a signed link (local object store)",
    description="Links come from export status and export files. Supports HTTP Range (RFC 9110): "
    "`bytes=first-last`, `bytes=first-`, `bytes=-suffix`, several at once. A malformed Range is "
    "a 400 `invalid_range`; one whose ranges all start past the end of the file is a 416 "
    "`range_not_satisfiable` with `Content-Range: bytes */<size>`. Expired or tampered links "
    "get 403.",
    response_class=FileResponse,
    responses=DOWNLOAD_RESPONSES,
)
def download(
    request: Request,
    key: Annotated[str, Path(description="The stored object's key")],
    expires: Annotated[
        int, Field(ge=0), ASCII_DIGITS, Query(description="When the link expires (Unix seconds)")
    ],
    sig: Annotated[str, Query(max_length=128, description="The link's signature")],
    filename: Annotated[str, Query(max_length=255, description="The name to save the file as")] = "",
    content_type: Annotated[
        str, Query(alias="type", max_length=200, description="The Content-Type to serve the file with")
    ] = "",
    range_header: Annotated[
        str | None,
        Header(
            alias="Range",
            description="Byte ranges to serve, e.g. `bytes=0-1023`, `bytes=1024-`, `bytes=-500`",
        ),
    ] = None,
    if_range: Annotated[
        str | None,
        Header(
            alias="If-Range", description="Serve the ranges only if the file's ETag or Last-Modified is this"
        ),
    ] = None,
) -> FileResponse:
    store = request.app.state.runtime.store
    if not isinstance(store, LocalObjectStore):
        raise NotFound("Not found.")
    if not store.verify_signature(key, expires, filename, sig, content_type):
        raise Forbidden("The link's signature is not valid.", code="invalid_signature")
    if expires < time.time():
        raise Forbidden("The link has expired.", code="link_expired")
    try:
        path = store.path_for(key)
    except StorageError:
        raise NotFound("Not found.") from None
    try:
        stat = path.stat()
    except OSError:
        stat = None
    if stat is None or not S_ISREG(stat.st_mode):
        raise NotFound("The file no longer exists.", code="file_gone")
    response = _RangedFileResponse(
        path,
        filename=filename or None,
        media_type=content_type or None,
        content_disposition_type="attachment",
        headers={"Cache-Control": "private, no-store"},
        stat_result=stat,
    )
    # Before the audit entry: a refused range downloads nothing.
    if range_header is not None and _if_range_holds(if_range, response):
        response.ranges = parse_range(range_header, stat.st_size)
    hook: DownloadHook | None = getattr(request.app.state, "download_hook", None)
    if hook is not None and request.method == "GET":
        # The Range only when it is served; an ignored one sends the whole file.
        hook(key, stat.st_size, range_header if response.ranges else None)
    return response
