"""A JSON response rendered with orjson (FastAPI's own ORJSONResponse is deprecated).

It subclasses Starlette's ``JSONResponse`` so FastAPI recognises it as JSON: routes keep their
``response_model`` in the OpenAPI document instead of being documented as a plain string.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import orjson
from pydantic import BaseModel
from starlette.responses import JSONResponse as StarletteJSONResponse
from starlette.responses import Response


class JSONResponse(StarletteJSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)


def model_response(
    model: BaseModel, status_code: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    """``model`` as a JSON answer, serialised by pydantic straight to bytes: what FastAPI writes
    for a route's ``response_model``, without its validation and encoding round trip (the
    route keeps ``response_model`` for the OpenAPI document)."""
    return Response(
        model.__pydantic_serializer__.to_json(model, by_alias=True),
        status_code=status_code,
        headers=headers,
        media_type="application/json",
    )
