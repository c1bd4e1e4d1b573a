"""A JSON response rendered with orjson (FastAPI's own ORJSONResponse is deprecated).

It subclasses Starlette's ``JSONResponse`` so FastAPI recognises it as JSON: routes keep their
``response_model`` in the OpenAPI document instead of being documented as a plain string.
"""

from __future__ import annotations

from typing import Any

import orjson
from starlette.responses import JSONResponse as StarletteJSONResponse


class JSONResponse(StarletteJSONResponse):
    media_type = "application/json"

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content)
