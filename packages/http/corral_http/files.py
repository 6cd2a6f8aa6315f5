"""Serving a file a job returned: whatever the program wrote, a browser must only ever download
it, never render or run it on the API's origin.

So a file is served as one of a few inert types or as application/octet-stream (an HTML page,
an SVG or a script the program left would otherwise run with the API's origin), always as an
attachment, with nosniff and a sandboxing CSP for browsers that open it anyway. Its sha256 is
its ETag; one byte range may be asked for (RFC 9110 §14), more are answered whole.
"""

from __future__ import annotations

import re
from urllib.parse import quote

import msgspec

# Types no browser executes. Anything else, text/html, image/svg+xml and javascript among
# them, is sent as bytes.
INERT_TYPES = frozenset(
    {
        "image/png",
        "image/jpeg",
        "image/gif",
        "image/webp",
        "text/plain",
        "text/csv",
        "application/json",
        "application/pdf",
        "application/octet-stream",
    }
)
OPAQUE = "application/octet-stream"
# Positions past 18 digits are no file's: such a header is ignored, not parsed into a huge int.
_RANGE = re.compile(r"bytes=(\d{0,18})-(\d{0,18})")


class Unsatisfiable(Exception):
    """A range that starts past the file's end (HTTP 416)."""


class Span(msgspec.Struct, frozen=True):
    """Bytes `start` to `end`, both included."""

    start: int
    end: int


def served_type(media_type: str) -> str:
    """The Content-Type a file is served with: its own when inert, else opaque bytes."""
    essence = media_type.split(";", 1)[0].strip().lower()
    return essence if essence in INERT_TYPES else OPAQUE


def disposition(name: str) -> str:
    """An attachment named by the name's last part (RFC 6266, RFC 8187's UTF-8 form): every byte
    but unreserved ones percent-encoded, so no quote, semicolon or newline reaches the header."""
    return "attachment; filename*=UTF-8''" + quote(name.rsplit("/", 1)[-1], safe="")


def etag(sha256: str) -> str:
    return f'"{sha256}"'


def matches(if_none_match: str | None, tag: str) -> bool:
    """Whether If-None-Match names this file's tag (weakly compared, as §13.1.2 says)."""
    if if_none_match is None:
        return False
    if if_none_match.strip() == "*":
        return True
    return any(candidate.strip().removeprefix("W/") == tag for candidate in if_none_match.split(","))


def span(range_header: str | None, size: int) -> Span | None:
    """The one range asked for, within the file; None to send the whole file (no Range, one
    this server does not read, or several ranges). Raises Unsatisfiable past the end."""
    if range_header is None:
        return None
    found = _RANGE.fullmatch(range_header.strip())
    if found is None:
        return None
    first, last = found.groups()
    if not first and not last:
        return None
    if not first:  # the last `last` bytes
        if int(last) == 0 or size == 0:
            raise Unsatisfiable
        return Span(max(size - int(last), 0), size - 1)
    start = int(first)
    if last and int(last) < start:
        return None  # not a valid range: ignored, as §14.1.1 says
    if start >= size:
        raise Unsatisfiable
    end = size - 1 if not last else int(last)
    return Span(start, min(end, size - 1))
