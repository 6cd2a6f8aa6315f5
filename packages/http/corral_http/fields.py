"""Bounded field types the request schemas share, and the base of the views that show every
field of their domain object under its own name."""

from __future__ import annotations

from typing import Annotated, Self

import msgspec

from corral_core.structs import copied

Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.+-]{0,31}$")]
# The most arguments, files and tests a request may list before its content is looked at; the
# server's own maxima (SizePolicy, written into the OpenAPI document by corral_http.app) are lower.
LISTED = 1024


class CopiedView(msgspec.Struct, frozen=True):
    """A view whose every field is its domain object's of the same name (corral_core.structs)."""

    @classmethod
    def of(cls, source: object) -> Self:
        return copied(cls, source)
