"""The errors both compatible APIs answer alike, each with its own body: Judge0's
{"error": ...}, Piston's {"message": ...}."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from litestar import Request, Response
from litestar.exceptions import NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from corral_core.access import OverQuota
from corral_core.ports import QueueFull, StorageFull, StorageUnavailable
from corral_http.longpolls import TooManyLongPolls

Body = Callable[[str], dict[str, str]]


def shared_handlers(body: Body, retry_after_s: int) -> ExceptionHandlersMap:
    """Unavailable storage or queue (503), a key over a quota (429), no such route or
    submission (404), a parameter of the wrong type (400)."""

    def answer(status: int, message: str, headers: dict[str, str] | None = None) -> Response[dict[str, str]]:
        return Response(body(message), status_code=status, headers=headers)

    def unavailable(
        _: Request[Any, Any, Any], error: QueueFull | StorageFull | StorageUnavailable | TooManyLongPolls
    ) -> Response[dict[str, str]]:
        return answer(HTTP_503_SERVICE_UNAVAILABLE, str(error), {"Retry-After": str(retry_after_s)})

    def not_found(_: Request[Any, Any, Any], error: NotFoundException) -> Response[dict[str, str]]:
        return answer(HTTP_404_NOT_FOUND, "Not Found")

    def over_quota(_: Request[Any, Any, Any], error: OverQuota) -> Response[dict[str, str]]:
        return answer(HTTP_429_TOO_MANY_REQUESTS, str(error), {"Retry-After": str(error.retry_after_s)})

    def validation(_: Request[Any, Any, Any], error: ValidationException) -> Response[dict[str, str]]:
        return answer(HTTP_400_BAD_REQUEST, str(error.detail))

    return {
        QueueFull: unavailable,
        StorageFull: unavailable,
        StorageUnavailable: unavailable,
        TooManyLongPolls: unavailable,
        OverQuota: over_quota,
        NotFoundException: not_found,
        ValidationException: validation,
    }
