"""A Python client for Corral's HTTP API, and the `corral` command line.

`Client` (blocking) and `AsyncClient` speak Corral's own API (/execute, /jobs, /runtimes); results
are typed (`models`), errors are exceptions carrying the server's problem details (`errors`).
Nothing here imports Corral's server packages: this package ships alone as a wheel and a PEX.
"""

from corral_client.calls import RetryPolicy
from corral_client.client import AsyncClient, Client
from corral_client.errors import (
    AlreadyFinished,
    ApiError,
    CorralError,
    InvalidRequest,
    JobNotFound,
    NotSupported,
    ServerUnavailable,
    TransportError,
    Unauthorized,
)
from corral_client.models import (
    Accepted,
    CheckerProgram,
    CompileStage,
    Event,
    Exact,
    FieldError,
    Float,
    Job,
    JobError,
    LeftOut,
    Limits,
    Lines,
    Result,
    ReturnedFile,
    Runtime,
    Summary,
    TestCase,
    TestResult,
    Tokens,
)
from corral_client.webhooks import WebhookVerificationError, verify_webhook

__all__ = [
    "Accepted",
    "AlreadyFinished",
    "ApiError",
    "AsyncClient",
    "CheckerProgram",
    "Client",
    "CompileStage",
    "CorralError",
    "Event",
    "Exact",
    "FieldError",
    "Float",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobNotFound",
    "LeftOut",
    "Limits",
    "Lines",
    "NotSupported",
    "Result",
    "RetryPolicy",
    "ReturnedFile",
    "Runtime",
    "ServerUnavailable",
    "Summary",
    "TestCase",
    "TestResult",
    "Tokens",
    "TransportError",
    "Unauthorized",
    "WebhookVerificationError",
    "verify_webhook",
]
