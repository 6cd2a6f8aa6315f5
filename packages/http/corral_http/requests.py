"""How a request's JSON body is read: only as `application/json`, and never into a 500.

Litestar reads any body as JSON whatever its Content-Type, so a web page could submit jobs
with a `text/plain` form post that no browser preflights (cross-site request forgery): such a
body is refused with 415. And msgspec raises UnicodeDecodeError for invalid UTF-8 inside a string
and RecursionError for deep nesting, neither of which Litestar expects: both become a 400 that
says what is wrong with the body.
"""

from __future__ import annotations

from typing import Any

from litestar import Request
from litestar.exceptions import ClientException, HTTPException, SerializationException
from litestar.status_codes import HTTP_415_UNSUPPORTED_MEDIA_TYPE

JSON = "application/json"


class JsonOnlyRequest(Request[Any, Any, Any]):
    async def json(self) -> Any:
        media_type, _ = self.content_type
        if media_type != JSON:
            shown = media_type or "none"
            raise HTTPException(
                status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                detail=f"the body must be sent as Content-Type: {JSON}, not {shown[:100]}",
            )
        try:
            return await super().json()
        except UnicodeDecodeError as error:
            raise ClientException(f"the body is not valid UTF-8 (byte {error.start}): {error.reason}") from None
        except RecursionError:
            raise ClientException("the body's JSON nests too deeply") from None
        except SerializationException as error:  # Litestar's wrapping of msgspec's DecodeError
            raise ClientException(f"the body is not valid JSON: {error}") from None
