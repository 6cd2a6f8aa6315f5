"""A Judge0 CE 1.13-compatible API, mounted at /judge0: a Judge0 client's base URL.

Submissions are Corral jobs submitted and read through the same use cases as /execute; a
submission's token is its job id. What Judge0 keeps with a submission and Corral's job does not
(the expected output, the language id asked for, redirect_stderr_to_stdout) rides along in the
job's annotations. Requests are decoded as Judge0 (Rails) reads them: unknown attributes
ignored, numbers and booleans accepted as strings. Errors are Judge0's own bodies: 422 with
{attribute: [messages]}, 400 and 503 with {"error": ...}.
"""

from __future__ import annotations

from litestar import Router

from corral_http.compat.judge0.errors import exception_handlers
from corral_http.compat.judge0.routes import LanguagesController, ServiceController, SubmissionsController


def router(retry_after_s: int) -> Router:
    """The Judge0 API, for the app to mount."""
    return Router(
        path="/judge0",
        route_handlers=[SubmissionsController, LanguagesController, ServiceController],
        exception_handlers=exception_handlers(retry_after_s),
        include_in_schema=True,
    )
