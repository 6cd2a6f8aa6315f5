"""Errors as exceptions: each HTTP error answer becomes one, carrying the server's problem details."""

from __future__ import annotations

from corral_client.models import FieldError


class CorralError(Exception):
    """Anything this client raises."""


class TransportError(CorralError):
    """The server could not be reached, or the connection broke."""


class ApiError(CorralError):
    """The server answered with an error: its status code, detail and per-field errors."""

    def __init__(self, status_code: int, detail: str, errors: list[FieldError] | None = None) -> None:
        self.status_code = status_code
        self.detail = detail
        self.errors = errors or []
        fields = "; ".join(f"{error.field}: {error.message}" for error in self.errors)
        super().__init__(f"{status_code}: {detail}" + (f" ({fields})" if fields and fields != detail else ""))


class InvalidRequest(ApiError):
    """400, 413 or 422: the request breaks a rule; `errors` names the fields at fault."""


class Unauthorized(ApiError):
    """401 or 403: the key is missing, wrong, or not allowed this."""


class JobNotFound(ApiError):
    """404: no job with that id."""


class AlreadyFinished(InvalidRequest):
    """409 to a cancel: the job already finished (COMPLETED, FAILED or CANCELLED)."""


class NotSupported(ApiError):
    """405 or 501: this server does not offer the operation (e.g. cancelling a job)."""


class ServerUnavailable(ApiError):
    """429 or 503 still, after every retry the policy allowed."""


def error_for(status_code: int, detail: str, errors: list[FieldError]) -> ApiError:
    kind: type[ApiError]
    if status_code in (401, 403):
        kind = Unauthorized
    elif status_code == 404:
        kind = JobNotFound
    elif status_code in (405, 501):
        kind = NotSupported
    elif status_code in (429, 503):
        kind = ServerUnavailable
    elif 400 <= status_code < 500:
        kind = InvalidRequest
    else:
        kind = ApiError
    return kind(status_code, detail, errors)
