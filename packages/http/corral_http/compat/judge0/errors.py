"""Errors as Judge0 answers them."""

from __future__ import annotations

from typing import Any

from litestar import Request, Response
from litestar.status_codes import HTTP_400_BAD_REQUEST, HTTP_422_UNPROCESSABLE_ENTITY, HTTP_503_SERVICE_UNAVAILABLE
from litestar.types import ExceptionHandlersMap

from corral_core.policy import InvalidSubmission
from corral_core.ports import QueueFull
from corral_http.compat.errors import shared_handlers
from corral_http.compat.judge0.schemas import AttributeErrors, Judge0Error


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

    return {
        **shared_handlers(lambda message: {"error": message}, retry_after_s),
        Judge0Error: judge0_error,
        AttributeErrors: attribute_errors,
        InvalidSubmission: invalid,
        QueueFull: queue_full,
    }
