"""Erasing a person from the development outbox: every email naming them, however encoded."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from emails.delivery.outbox import FileOutbox
from emails.outgoing import OutgoingEmail

ASTRID = "astrid.lindqvist@example.se"


def outgoing(n: int, to: str, text: str = "Hej!\n") -> OutgoingEmail:
    return OutgoingEmail(
        message_id=f"<m{n}@mail.triggerpost.example>",
        from_name="Nordljus Ullfabrik",
        from_address="shops@mail.triggerpost.example",
        to=to,
        subject="Tack för din beställning",
        html=f"<p>{text}</p>",
        text=text,
        kind="transactional",
        date=datetime(2026, 3, 2, 10, 0, tzinfo=UTC),
        idempotency_key=f"key-{n}",
    )


def test_her_emails_go_and_everyone_elses_stay(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    outbox.send(outgoing(1, ASTRID))
    outbox.send(outgoing(2, "Astrid Lindqvist <Astrid.Lindqvist@Example.SE>"))
    # her address only in a body so far from ASCII that it is sent in base64
    outbox.send(outgoing(3, "jonas.berg@example.com", f"{'å' * 200} {ASTRID}\n"))
    kept = outbox.path_for(outgoing(4, "jonas.berg@example.com"))
    outbox.send(outgoing(4, "jonas.berg@example.com"))
    assert ASTRID.encode() not in outbox.path_for(outgoing(3, "")).read_bytes().lower()
    (tmp_path / "half-written.123.tmp").write_bytes(f"To: {ASTRID}\r\n".encode())

    assert outbox.erase([ASTRID.upper()]) == 4

    assert sorted(tmp_path.iterdir()) == [kept]


def test_erasing_nobody_reads_nothing(tmp_path: Path) -> None:
    outbox = FileOutbox(tmp_path)
    outbox.send(outgoing(1, ASTRID))
    assert outbox.erase(["", "  "]) == 0
    assert len(list(tmp_path.iterdir())) == 1
