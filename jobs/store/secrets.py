"""Secrets at rest: shop tokens and webhook secrets are stored as Fernet tokens.

The key is derived from the service's secret key, so a copied database alone
gives nothing away. Rotating ``TRIGGERPOST_SECRET_KEY`` means re-encrypting
(pass the old key as ``previous``: reads try it, writes use the new one).

Single-use tokens we only ever compare (connect nonces, OAuth states, merchant
session ids, spent install links) are stored as :func:`token_digest` alone.
"""

from __future__ import annotations

import base64
import hashlib

from cryptography.fernet import Fernet, InvalidToken, MultiFernet


def token_digest(token: str) -> str:
    """What the store keeps of a token it only needs to recognise: its SHA-256, in hex."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


class SecretError(ValueError):
    """A stored secret cannot be read with the configured key."""


class SecretBox:
    def __init__(self, secret_key: str, previous: str | None = None) -> None:
        keys = [_derive(secret_key)] + ([_derive(previous)] if previous else [])
        self._fernet = MultiFernet([Fernet(k) for k in keys])

    def seal(self, plain: str) -> str:
        return self._fernet.encrypt(plain.encode("utf-8")).decode("ascii")

    def open(self, sealed: str) -> str:
        try:
            return self._fernet.decrypt(sealed.encode("ascii")).decode("utf-8")
        except InvalidToken as exc:
            raise SecretError(
                "a stored secret does not decrypt with TRIGGERPOST_SECRET_KEY "
                "(was the key changed without re-encrypting?)"
            ) from exc

    def seal_optional(self, plain: str | None) -> str | None:
        return None if plain is None else self.seal(plain)

    def open_optional(self, sealed: str | None) -> str | None:
        return None if sealed is None else self.open(sealed)


def _derive(secret_key: str) -> bytes:
    # a purpose-bound key: the same secret key also signs cookies and tokens
    digest = hashlib.sha256(b"triggerpost/secrets-at-rest/v1\x00" + secret_key.encode()).digest()
    return base64.urlsafe_b64encode(digest)
