from __future__ import annotations

import secrets


class RandomIds:
    """128 random bits from the OS, URL-safe base64 without padding (22 characters), drawn again
    while the first character is "-": an id is pasted into command lines (`corral job <id>`),
    where a leading "-" reads as an option."""

    def new_id(self) -> str:
        while (found := secrets.token_urlsafe(16)).startswith("-"):
            pass
        return found
