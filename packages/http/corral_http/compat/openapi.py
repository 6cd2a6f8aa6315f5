"""The Judge0 and Piston routes in the OpenAPI document: their request bodies (read by hand, so
Litestar cannot see them) and every status each route answers, with the error body that API
uses: Judge0's {"error": ...} (its 401 has no body, its 422 lists messages per attribute),
Piston's {"message": ...}. Neither is Corral's own error schema.

The schemas are as lax as the routes are: a field the route takes in several shapes (Judge0
reads "71" as 71; Piston skips a limit given as 0, null, false or "") is documented with all of
them, so that a request the document calls invalid is one the route refuses.
"""

from __future__ import annotations

from typing import Any

import msgspec
from litestar.openapi import spec

from corral_http.compat.judge0.schemas import SubmissionIn
from corral_http.compat.piston_request import LIMIT_NAMES

_JSON = "application/json"
_ANY_SCALAR: dict[str, Any] = {"type": ["string", "number", "boolean", "null"]}
_NUMBER_OR_SKIPPED: dict[str, Any] = {"anyOf": [{"type": ["number", "null"]}, {"const": False}, {"const": ""}]}

SCHEMAS: dict[str, dict[str, Any]] = {
    "PistonMessage": {
        "type": "object",
        "description": "Every Piston error: what went wrong, in Piston's words.",
        "properties": {"message": {"type": "string"}},
        "required": ["message"],
    },
    "PistonExecuteIn": {
        "type": "object",
        "description": "What Piston v2 accepts (its api/src/api/v2.js); other fields are ignored.",
        "properties": {
            "language": {"type": "string", "minLength": 1, "description": "A runtime's language or alias"},
            "version": {"type": "string", "minLength": 1, "description": "An exact version, '*', or a prefix"},
            "files": {
                "type": "array",
                "description": "The first utf8 file runs; the others are written beside it",
                "items": {
                    "type": "object",
                    "properties": {
                        "name": {"type": ["string", "null"]},
                        "content": {"type": "string"},
                        "encoding": {"type": ["string", "null"], "description": "utf8 (default), base64 or hex"},
                    },
                    "required": ["content"],
                },
            },
            "stdin": {"type": ["string", "null"], "description": "A newline is added when it does not end in one"},
            "args": {"type": ["array", "null"], "items": {"type": ["string", "number"]}},
            **{
                name: {**_NUMBER_OR_SKIPPED, "description": "Skipped when 0, null, false or ''; -1: no limit"}
                for name in LIMIT_NAMES
            },
        },
        "required": ["language", "version", "files"],
    },
    "PistonPackageIn": {
        "type": "object",
        "properties": {"language": {"type": "string"}, "version": {"type": "string"}},
    },
    "Judge0Error": {
        "type": "object",
        "description": "A Judge0 error: what went wrong, in Judge0's words.",
        "properties": {"error": {"type": "string"}},
        "required": ["error"],
    },
    "Judge0AttributeErrors": {
        "type": "object",
        "description": "Judge0's 422: the messages about each attribute of the submission.",
        "additionalProperties": {"type": "array", "items": {"type": "string"}},
    },
    "Judge0BatchErrors": {
        "type": "array",
        "description": "Judge0's 422 for a batch none of whose submissions was taken: each one's errors.",
        "items": {"$ref": "#/components/schemas/Judge0AttributeErrors"},
    },
    "Judge0SubmissionIn": {
        "type": "object",
        "description": "A submission's attributes as Judge0 takes them: all optional, unknown ones ignored; "
        "numbers and flags may come as strings.",
        "additionalProperties": True,
    },
    "Judge0Submission": {
        "type": "object",
        "description": "The attributes asked for with `fields` (Judge0's default set without it).",
        "properties": {
            "token": {"type": "string"},
            "status": {
                "type": "object",
                "properties": {"id": {"type": "integer"}, "description": {"type": "string"}},
                "required": ["id", "description"],
            },
        },
        "additionalProperties": True,
    },
}


def _judge0_submission_properties() -> dict[str, Any]:
    properties: dict[str, Any] = {}
    for field in msgspec.structs.fields(SubmissionIn):
        text = field.type in (str, str | None)
        properties[field.encode_name] = {"type": ["string", "null"]} if text else _ANY_SCALAR
    return properties


SCHEMAS["Judge0SubmissionIn"]["properties"] = _judge0_submission_properties()
SCHEMAS["Judge0BatchIn"] = {
    "type": "object",
    "properties": {"submissions": {"type": "array", "items": {"$ref": "#/components/schemas/Judge0SubmissionIn"}}},
}

_DESCRIPTIONS = {
    400: "Bad Request",
    401: "No valid API key",
    404: "Not Found",
    405: "Not allowed here",
    409: "Conflict",
    413: "Request body too large",
    415: "Not JSON",
    422: "Invalid attributes",
    429: "Over the key's quota",
    500: "The job failed",
    503: "Storage or queue unavailable, retry later",
    504: "The job did not finish within the server's longest wait",
}
# (path, method): the statuses it answers besides its success, and its request body.
PISTON: dict[tuple[str, str], tuple[tuple[int, ...], str | None]] = {
    ("/api/v2/runtimes", "get"): ((), None),
    ("/api/v2/packages", "get"): ((), None),
    ("/api/v2/packages", "post"): ((405, 415), "PistonPackageIn"),
    ("/api/v2/packages", "delete"): ((405, 415), "PistonPackageIn"),
    ("/api/v2/execute", "post"): ((400, 409, 413, 415, 500, 504), "PistonExecuteIn"),
}
JUDGE0: dict[tuple[str, str], tuple[tuple[int, ...], str | None]] = {
    ("/judge0/submissions", "post"): ((400, 413, 422), "Judge0SubmissionIn"),
    ("/judge0/submissions/batch", "post"): ((400, 413, 422), "Judge0BatchIn"),
    ("/judge0/submissions/batch", "get"): ((400,), None),
    ("/judge0/submissions/{token}", "get"): ((400, 404), None),
    ("/judge0/submissions/{token}", "delete"): ((400, 404), None),
    ("/judge0/languages/{language_id}", "get"): ((400, 404), None),
}

_SUBMISSION = {"$ref": "#/components/schemas/Judge0Submission"}
# What Judge0's submission routes answer on success (Litestar sees only dicts and lists).
JUDGE0_ANSWERS: dict[tuple[str, str], dict[str, Any]] = {
    ("/judge0/submissions", "post"): _SUBMISSION,
    ("/judge0/submissions/{token}", "get"): _SUBMISSION,
    ("/judge0/submissions/batch", "get"): {
        "type": "object",
        "properties": {"submissions": {"type": "array", "items": {"anyOf": [_SUBMISSION, {"type": "null"}]}}},
    },
    # Each submission's token, or the errors that kept it out.
    ("/judge0/submissions/batch", "post"): {"type": "array", "items": {"type": "object"}},
}


def document_compat(document: spec.OpenAPI, *, keys: bool) -> None:
    """Add the compatible routes' bodies and error answers to the document (in place); 401
    only when the server wants keys."""
    always = (401, 429, 503) if keys else (429, 503)
    components = document.components or spec.Components()
    components.schemas = {**(components.schemas or {}), **{name: _schema(raw) for name, raw in SCHEMAS.items()}}
    document.components = components
    for name, path in (document.paths or {}).items():
        for method in ("get", "post", "delete"):
            operation: spec.Operation | None = getattr(path, method)
            if operation is None:
                continue
            if name.startswith("/api/v2"):
                statuses, body = PISTON.get((name, method), ((), None))
                _document(operation, (*always, *statuses), body, "PistonMessage")
            elif name.startswith("/judge0"):
                statuses, body = JUDGE0.get((name, method), ((), None))
                _document(operation, (*always, *statuses), body, "Judge0Error")
                if (answer := JUDGE0_ANSWERS.get((name, method))) is not None:
                    _document_success(operation, answer)


def _document(operation: spec.Operation, statuses: tuple[int, ...], body: str | None, error: str) -> None:
    responses = {code: answer for code, answer in (operation.responses or {}).items() if not code.startswith(("4", "5"))}
    for status in statuses:
        responses[str(status)] = _error_response(status, error, batch=body == "Judge0BatchIn")
    operation.responses = responses
    if body is not None:
        operation.request_body = spec.RequestBody(
            required=True, content={_JSON: spec.OpenAPIMediaType(schema=spec.Reference(ref=f"#/components/schemas/{body}"))}
        )


def _error_response(status: int, error: str, batch: bool = False) -> spec.OpenAPIResponse:
    if status == 401 and error == "Judge0Error":
        # Judge0 answers a missing or wrong token with 401 and an empty body.
        return spec.OpenAPIResponse(description=_DESCRIPTIONS[status])
    if status == 422 and error == "Judge0Error":
        error = "Judge0BatchErrors" if batch else "Judge0AttributeErrors"
    schema = spec.Reference(ref=f"#/components/schemas/{error}")
    return spec.OpenAPIResponse(description=_DESCRIPTIONS[status], content={_JSON: spec.OpenAPIMediaType(schema=schema)})


def _document_success(operation: spec.Operation, answer: dict[str, Any]) -> None:
    for code, response in (operation.responses or {}).items():
        if code.startswith("2") and isinstance(response, spec.OpenAPIResponse) and response.content and _JSON in response.content:
            response.content[_JSON].schema = _schema_or_ref(answer)


_KEYS = {
    "minLength": "min_length",
    "additionalProperties": "additional_properties",
    "anyOf": "any_of",
    "oneOf": "one_of",
}


def _schema(raw: dict[str, Any]) -> spec.Schema:
    """A JSON Schema written as a dict, as Litestar's spec objects."""
    kwargs: dict[str, Any] = {}
    for key, value in raw.items():
        if key == "$ref":
            continue
        name = _KEYS.get(key, key)
        if key == "properties":
            value = {prop: _schema_or_ref(sub) for prop, sub in value.items()}
        elif key in ("items",) or (key == "additionalProperties" and isinstance(value, dict)):
            value = _schema_or_ref(value)
        elif key in ("anyOf", "oneOf"):
            value = [_schema_or_ref(sub) for sub in value]
        elif key == "type":
            value = _type(value)
        kwargs[name] = value
    return spec.Schema(**kwargs)


def _schema_or_ref(raw: dict[str, Any]) -> spec.Schema | spec.Reference:
    return spec.Reference(ref=raw["$ref"]) if "$ref" in raw else _schema(raw)


def _type(value: str | list[str]) -> Any:
    return [spec.OpenAPIType(one) for one in value] if isinstance(value, list) else spec.OpenAPIType(value)
