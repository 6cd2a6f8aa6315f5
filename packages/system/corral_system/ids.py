from __future__ import annotations

import secrets


class RandomIds:
    """128 random bits from the OS, URL-safe base64 without padding (22 characters)."""

    def new_id(self) -> str:
        return secrets.token_urlsafe(16)
