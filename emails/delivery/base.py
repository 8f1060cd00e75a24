"""What every delivery backend is and raises (see :mod:`emails.delivery` for the URLs)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from emails.outgoing import OutgoingEmail


class DeliveryError(RuntimeError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class TransientDeliveryError(DeliveryError):
    def __init__(self, reason: str, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.retry_after = retry_after


class PermanentDeliveryError(DeliveryError):
    pass


class BackendConfigError(ValueError):
    """The email URL cannot be used; the message says why."""


@dataclass(frozen=True)
class SendResult:
    provider_message_id: str | None


class Backend(Protocol):
    @property
    def name(self) -> str: ...

    @property
    def supports_idempotency(self) -> bool:
        """True when sending again with the same idempotency key cannot make a second email."""
        ...

    def send(self, email: OutgoingEmail) -> SendResult: ...

    def close(self) -> None: ...
