"""The local outbox (``file://``) and the null backend (``null://``)."""

from __future__ import annotations

import email
import hashlib
import os
from collections.abc import Iterable
from email import policy
from pathlib import Path

from adapters.events import normalise_email
from emails.delivery.base import SendResult
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

    def erase(self, addresses: Iterable[str]) -> int:
        """Delete every email (a half-written one too) naming one of ``addresses``; how many.

        An address is looked for in any letter case, in the raw bytes and in the
        decoded headers and text (a quoted-printable body may break it across
        lines). Reads the whole outbox: it is for development, and erasures are rare.
        """
        wanted = {normalise_email(a) for a in addresses if a and a.strip()}
        if not wanted:
            return 0
        erased = 0
        for _ in range(2):  # once more if a temporary file was renamed during the first look
            renamed = False
            for path in sorted(self.directory.iterdir()):
                if not path.name.endswith((".eml", ".tmp")) or not path.is_file():
                    continue
                try:
                    content = path.read_bytes()
                except FileNotFoundError:
                    renamed = True
                    continue
                if _names_any(content, wanted):
                    path.unlink(missing_ok=True)
                    erased += 1
            if not renamed:
                break
        return erased

    def close(self) -> None:
        pass


def _names_any(content: bytes, addresses: set[str]) -> bool:
    raw = content.lower()
    if any(a.encode() in raw for a in addresses):
        return True
    message = email.message_from_bytes(content, policy=policy.default)
    texts: list[str] = []
    for part in message.walk():
        texts.extend(str(value) for value in part.values())
        if part.get_content_maintype() == "text":
            try:
                texts.append(part.get_content())
            except (LookupError, ValueError):
                continue  # an unknown charset or a broken encoding: the raw bytes were searched
    decoded = "\n".join(texts).lower()
    return any(a in decoded for a in addresses)


class NullBackend:
    name = "null"
    supports_idempotency = True

    def send(self, email: OutgoingEmail) -> SendResult:
        return SendResult(None)

    def close(self) -> None:
        pass
