"""Errors as Judge0 answers them."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.exceptions import NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_404_NOT_FOUND,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from corral_core.access import OverQuota
from corral_core.policy import InvalidSubmission
from corral_core.ports import QueueFull, StorageFull, StorageUnavailable
from corral_http.compat.judge0.schemas import AttributeErrors, Judge0Error
from corral_http.longpolls import TooManyLongPolls


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Response[dict[str, str]]:
    return Response({"error": message}, status_code=status, headers=headers)


def exception_handlers(retry_after_s: int) -> ExceptionHandlersMap:
    def judge0_error(_: Request[Any, Any, Any], error: Judge0Error) -> Response[dict[str, str]]:
        return _error(error.status_code, error.message)

    def attribute_errors(_: Request[Any, Any, Any], error: AttributeErrors) -> Response[dict[str, list[str]]]:
        return Response(error.errors, status_code=HTTP_422_UNPROCESSABLE_ENTITY)

    def invalid(_: Request[Any, Any, Any], error: InvalidSubmission) -> Response[dict[str, str]]:
        # The server's own bounds on a request (the longest wait, say), not a submission's.
        return _error(HTTP_400_BAD_REQUEST, str(error))

    def queue_full(_: Request[Any, Any, Any], error: QueueFull) -> Response[dict[str, str]]:
        return _error(HTTP_503_SERVICE_UNAVAILABLE, "queue is full", {"Retry-After": str(retry_after_s)})

    def unavailable(
        _: Request[Any, Any, Any], error: StorageFull | StorageUnavailable | TooManyLongPolls
    ) -> Response[dict[str, str]]:
        return _error(HTTP_503_SERVICE_UNAVAILABLE, str(error), {"Retry-After": str(retry_after_s)})

    def not_found(_: Request[Any, Any, Any], error: NotFoundException) -> Response[dict[str, str]]:
        return _error(HTTP_404_NOT_FOUND, "Not Found")

    def over_quota(_: Request[Any, Any, Any], error: OverQuota) -> Response[dict[str, str]]:
        return _error(HTTP_429_TOO_MANY_REQUESTS, str(error), {"Retry-After": str(error.retry_after_s)})

    def validation(_: Request[Any, Any, Any], error: ValidationException) -> Response[dict[str, str]]:
        return _error(HTTP_400_BAD_REQUEST, str(error.detail))

    return {
        Judge0Error: judge0_error,
        AttributeErrors: attribute_errors,
        InvalidSubmission: invalid,
        QueueFull: queue_full,
        StorageFull: unavailable,
        StorageUnavailable: unavailable,
        TooManyLongPolls: unavailable,
        OverQuota: over_quota,
        NotFoundException: not_found,
        ValidationException: validation,
    }


