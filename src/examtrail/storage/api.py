"""Serves the local object store's signed download links (embedded deployment only)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Annotated

from fastapi import APIRouter, Path, Query, Request
from starlette.responses import FileResponse

from examtrail.core.errors import Forbidden, NotFound
from examtrail.storage.base import StorageError
from examtrail.storage.local import LocalObjectStore

router = APIRouter(tags=["downloads"])

# Called with (key, size, Range header) before a file is served; the application's top installs
# one (``app.state.download_hook``) that writes the audit entry. Storage knows no feature.
DownloadHook = Callable[[str, int, str | None], None]


@router.api_route("/files/{key:path}", methods=["HEAD"], include_in_schema=False)
@router.get(
    "/files/{key:path}",
    summary="Download through a signed link (local object store)",
    description="Links come from export status and export files. Supports HTTP Range. "
    "Expired or tampered links get 403.",
    response_class=FileResponse,
)
def download(
    request: Request,
    key: Annotated[str, Path(description="The stored object's key")],
    expires: Annotated[int, Query(description="When the link expires (Unix seconds)")],
    sig: Annotated[str, Query(max_length=128, description="The link's signature")],
    filename: Annotated[str, Query(max_length=255, description="The name to save the file as")] = "",
    content_type: Annotated[
        str, Query(alias="type", max_length=200, description="The Content-Type to serve the file with")
    ] = "",
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
    if not path.is_file():
        raise NotFound("The file no longer exists.", code="file_gone")
    hook: DownloadHook | None = getattr(request.app.state, "download_hook", None)
    if hook is not None and request.method == "GET":
        hook(key, path.stat().st_size, request.headers.get("range"))
    return FileResponse(
        path,
        filename=filename or None,
        media_type=content_type or None,
        content_disposition_type="attachment",
        headers={"Cache-Control": "private, no-store"},
    )
