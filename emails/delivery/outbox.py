"""The local outbox (``file://``) and the null backend (``null://``)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

from emails.delivery import SendResult
from emails.outgoing import OutgoingEmail, build_mime


class FileOutbox:
    """One ``.eml`` file per message, named from its idempotency key, written atomically.

    Sending the same message again finds its file and writes nothing: the outbox
    can never hold two copies of one email.
    """

    name = "file"
    supports_idempotency = True

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True)

    def path_for(self, email: OutgoingEmail) -> Path:
        key = email.idempotency_key or email.message_id
        digest = hashlib.sha256(key.encode()).hexdigest()[:32]
        return self.directory / f"{digest}.eml"

    def send(self, email: OutgoingEmail) -> SendResult:
        path = self.path_for(email)
        if not path.exists():
            tmp = path.with_suffix(f".{os.getpid()}.tmp")
            tmp.write_bytes(bytes(build_mime(email)))
            os.replace(tmp, path)
        return SendResult(path.name)

    def close(self) -> None:
        pass


class NullBackend:
    name = "null"
    supports_idempotency = True

    def send(self, email: OutgoingEmail) -> SendResult:
        return SendResult(None)

    def close(self) -> None:
        pass
