"""A Python client for Corral's HTTP API, and the `corral` command line.

`Client` (blocking) and `AsyncClient` speak Corral's own API (/execute, /jobs, /runtimes); results
are typed (`models`), errors are exceptions carrying the server's problem details (`errors`).
Nothing here imports Corral's server packages: this package ships alone as a wheel and a PEX.
"""

from corral_client.client import AsyncClient, Client, RetryPolicy
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
from corral_client.models import Accepted, FieldError, Job, JobError, Limits, Result, Runtime

__all__ = [
    "Accepted",
    "AlreadyFinished",
    "ApiError",
    "AsyncClient",
    "Client",
    "CorralError",
    "FieldError",
    "InvalidRequest",
    "Job",
    "JobError",
    "JobNotFound",
    "Limits",
    "NotSupported",
    "Result",
    "RetryPolicy",
    "Runtime",
    "ServerUnavailable",
    "TransportError",
    "Unauthorized",
]
