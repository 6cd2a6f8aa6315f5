"""Structured logs: one JSON object per line, with the job and request each event belongs to.

The job id and request id are context variables, so a line logged anywhere below the code that
set them carries them without being handed them: the API sets the request id per HTTP request
(and the job id once the job exists), a worker slot sets both when it claims a job, from the
request id the job carries. Every line has `ts`, `level`, `logger`, `event` (the message),
`role` and `pid`; `job_id` and `request_id` when there are ones; `error` with the traceback
when an exception is logged; and whatever a call passes as `extra=`.
"""

from __future__ import annotations

import contextvars
import logging
import os
from datetime import UTC, datetime
from typing import Any

import msgspec

job_id: contextvars.ContextVar[str] = contextvars.ContextVar("job_id", default="")
request_id: contextvars.ContextVar[str] = contextvars.ContextVar("request_id", default="")

# The attributes every LogRecord has; anything else on a record came from `extra=`.
_STANDARD = frozenset(logging.LogRecord("", 0, "", 0, "", None, None).__dict__) | {"message", "asctime"}
# An `extra=` value JSON cannot hold is written as its str().
_encode = msgspec.json.Encoder(enc_hook=str).encode


class JsonLines(logging.Formatter):
    def __init__(self, role: str) -> None:
        super().__init__()
        self.role = role

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname.lower(),
            "logger": record.name,
            "event": record.getMessage(),
            "role": self.role,
            "pid": os.getpid(),
        }
        if job := job_id.get():
            line["job_id"] = job
        if request := request_id.get():
            line["request_id"] = request
        for key, value in record.__dict__.items():
            if key not in _STANDARD and not key.startswith("_"):
                line[key] = value
        if record.exc_info:
            line["error"] = self.formatException(record.exc_info)
        return _encode(line).decode()


def configure(role: str, level: str) -> None:
    """Send every logger's lines to stderr as JSON, replacing whatever was set up before."""
    handler = logging.StreamHandler()
    handler.setFormatter(JsonLines(role))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())


def set_role(role: str) -> None:
    """Name the process in every line from now on (a forked child takes its own role)."""
    for handler in logging.getLogger().handlers:
        if isinstance(handler.formatter, JsonLines):
            handler.formatter.role = role
