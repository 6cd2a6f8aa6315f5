"""The one map from errors to HTTP answers: every error answer is a `Problem`.

The use cases raise domain errors (InvalidSubmission, JobNotFound, QueueFull, ...); this module
only says which status code and body each becomes.
"""

from __future__ import annotations

import logging
from typing import Any

from litestar import Request, Response
from litestar.exceptions import HTTPException, NotFoundException, ValidationException
from litestar.status_codes import (
    HTTP_401_UNAUTHORIZED,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
)
from litestar.types import ExceptionHandlersMap

from corral_core.access import KeyRevoked, OverQuota
from corral_core.policy import InvalidSubmission, SubmissionTooLarge
from corral_core.ports import QueueFull, StorageFull, StorageUnavailable
from corral_core.submission import IdempotencyConflict, IdempotencyKeyReused
from corral_core.usecases import JobAlreadyFinished, JobNotFound
from corral_http.auth import Refused, answer_refused, refusal_body
from corral_http.live import TooManyStreams
from corral_http.longpolls import TooManyLongPolls
from corral_http.schemas import FieldError, Problem

log = logging.getLogger(__name__)


def exception_handlers(retry_after_s: int) -> ExceptionHandlersMap:
    def retry_later(
        _: Request[Any, Any, Any],
        error: QueueFull | StorageFull | StorageUnavailable | TooManyLongPolls | TooManyStreams,
    ) -> Response[Problem]:
        return _problem(HTTP_503_SERVICE_UNAVAILABLE, str(error), headers={"Retry-After": str(retry_after_s)})

    return {
        Refused: answer_refused,
        InvalidSubmission: _invalid,
        ValidationException: _validation,
        JobNotFound: _not_found,
        NotFoundException: _not_found,
        QueueFull: retry_later,
        StorageFull: retry_later,
        StorageUnavailable: retry_later,
        TooManyLongPolls: retry_later,
        TooManyStreams: retry_later,
        OverQuota: _over_quota,
        KeyRevoked: _key_revoked,
        IdempotencyKeyReused: _idempotency_reused,
        IdempotencyConflict: _idempotency_conflict,
        JobAlreadyFinished: _already_finished,
        HTTPException: _http,
        Exception: _unexpected,
    }


def _problem(
    status: int, detail: str, errors: list[FieldError] | None = None, headers: dict[str, str] | None = None
) -> Response[Problem]:
    return Response(Problem(status, detail, errors or []), status_code=status, headers=headers)


def _invalid(_: Request[Any, Any, Any], error: InvalidSubmission) -> Response[Problem]:
    status = HTTP_413_REQUEST_ENTITY_TOO_LARGE if isinstance(error, SubmissionTooLarge) else HTTP_422_UNPROCESSABLE_ENTITY
    return _problem(status, str(error), [FieldError(error.field, error.message)])


def _validation(_: Request[Any, Any, Any], error: ValidationException) -> Response[Problem]:
    # Litestar answers 400 for a body or parameter that fails validation; a well-formed
    # request with wrong content is a 422, and the client is told each field.
    fields = [
        FieldError(str(item.get("key") or item.get("source") or "body"), str(item.get("message")))
        for item in (error.extra if isinstance(error.extra, list) else [])
        if isinstance(item, dict)
    ]
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, str(error.detail), fields)


def _not_found(request: Request[Any, Any, Any], error: JobNotFound | NotFoundException) -> Response[Any]:
    if isinstance(error, HTTPException):
        return _http(request, error)
    return _problem(HTTP_404_NOT_FOUND, str(error))


def _over_quota(_: Request[Any, Any, Any], error: OverQuota) -> Response[Problem]:
    return _problem(HTTP_429_TOO_MANY_REQUESTS, str(error), headers={"Retry-After": str(error.retry_after_s)})


def _key_revoked(_: Request[Any, Any, Any], error: KeyRevoked) -> Response[Problem]:
    # The door (auth.KeyDoor) answers in the route's own format; this is the answer it replaces.
    return _problem(HTTP_401_UNAUTHORIZED, str(error), headers={"WWW-Authenticate": 'Bearer realm="corral"'})


def _idempotency_reused(_: Request[Any, Any, Any], error: IdempotencyKeyReused) -> Response[Problem]:
    return _problem(HTTP_422_UNPROCESSABLE_ENTITY, str(error), [FieldError("Idempotency-Key", str(error))])


def _idempotency_conflict(_: Request[Any, Any, Any], error: IdempotencyConflict) -> Response[Problem]:
    return _problem(HTTP_409_CONFLICT, str(error), headers={"Retry-After": "1"})


def _already_finished(_: Request[Any, Any, Any], error: JobAlreadyFinished) -> Response[Problem]:
    return _problem(HTTP_409_CONFLICT, str(error))


def _http(request: Request[Any, Any, Any], error: HTTPException) -> Response[Any]:
    path = request.url.path
    if path.startswith(("/judge0/", "/api/v2/")) or path in {"/judge0", "/api/v2"}:
        # No route of a compatible API matched (404, 405): its clients read its own error body.
        body = refusal_body(path, error.status_code, str(error.detail))
        return Response(body, status_code=error.status_code, headers=error.headers or {}, media_type="application/json")
    return _problem(error.status_code, str(error.detail), headers=error.headers or {})


def _unexpected(request: Request[Any, Any, Any], error: Exception) -> Response[Problem]:
    log.exception("unhandled error on %s %s", request.method, request.url.path, exc_info=error)
    return _problem(HTTP_500_INTERNAL_SERVER_ERROR, "internal error; it was logged")
