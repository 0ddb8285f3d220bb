"""Deterministic pseudonyms keyed by a site secret (HMAC-SHA256).

The same original value and secret give the same pseudonym on any node, any day, with no
mapping table. Each kind of value is hashed in its own domain so that equal strings in
different roles (a PatientID that equals an AccessionNumber) do not collide by construction.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
from dataclasses import dataclass

MIN_SECRET_BYTES = 16


class SecretError(ValueError):
    """The site secret is missing or unusable."""


@dataclass(frozen=True)
class Keys:
    secret: bytes

    def __post_init__(self) -> None:
        if len(self.secret) < MIN_SECRET_BYTES:
            raise SecretError(f"the site secret must be at least {MIN_SECRET_BYTES} bytes")

    def _digest(self, domain: str, value: str) -> bytes:
        return hmac.new(self.secret, f"{domain}\x00{value}".encode(), hashlib.sha256).digest()

    def uid(self, original: str) -> str:
        """A 2.25 UID (PS3.5 B.2) from 128 bits of the keyed hash of the original UID."""
        n = int.from_bytes(self._digest("uid", original.strip())[:16], "big")
        return f"2.25.{n}"

    def identifier(self, domain: str, original: str, length: int = 16) -> str:
        """A stable pseudonymous ID of base32 letters and digits (fits SH's 16 characters)."""
        text = base64.b32encode(self._digest(f"id:{domain}", original.strip())).decode()
        return text[:length]

    def date_offset(self, patient_key: str, days: tuple[int, int]) -> dt.timedelta:
        """The patient's date offset, uniform in [min, max] days (both inclusive)."""
        lo, hi = days
        n = int.from_bytes(self._digest("date-offset", patient_key)[:8], "big")
        return dt.timedelta(days=lo + n % (hi - lo + 1))


def new_secret() -> bytes:
    """A fresh random secret, as text (so it can be kept in a file or an environment variable)."""
    import secrets

    return secrets.token_hex(32).encode()
