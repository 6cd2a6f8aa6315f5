"""Bounded field types the request schemas share."""

from __future__ import annotations

from typing import Annotated

import msgspec

Language = Annotated[str, msgspec.Meta(pattern=r"^[a-z0-9][a-z0-9_.+-]{0,31}$")]
# The most arguments, files and tests a request may list before its content is looked at; the
# server's own maxima (SizePolicy, written into the OpenAPI document by corral_http.app) are lower.
LISTED = 1024
