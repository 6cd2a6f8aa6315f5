"""One rule for building a Struct from another object field by field, where the names agree:
a view from the domain object it shows, a narrower domain object from a wider one, a port's
options from the settings that name them."""

from __future__ import annotations

from typing import Any, TypeVar

import msgspec

S = TypeVar("S", bound=msgspec.Struct)


def copied(kind: type[S], source: object, *, prefix: str = "", **given: Any) -> S:
    """A `kind` whose every field is `source`'s attribute of the same name (after `prefix`),
    but the fields `given`. An attribute `source` lacks raises AttributeError: a rename on
    either side fails loudly instead of silently changing what is copied."""
    fields = {name: getattr(source, prefix + name) for name in kind.__struct_fields__ if name not in given}
    return kind(**fields, **given)
