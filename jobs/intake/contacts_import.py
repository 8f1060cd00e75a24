"""Contacts from a merchant's file: birthdays and consent (``triggerpost contacts import``).

The file is a CSV with a header row naming its columns (any case, spaces
trimmed), comma-, semicolon- or tab-separated (the header row decides: Excel in
Sweden writes ``;``), UTF-8 with or without a byte order mark:

- ``email`` (required): the contact, found by its normalised address in this
  shop only, created when the shop has none;
- ``birthday``: ``YYYY-MM-DD``, or ``--MM-DD`` when the year is unknown. The
  store holds a date, so an unknown year is stored as :data:`YEAR_UNKNOWN`
  (1904, a leap year, so ``--02-29`` is a birthday too); a real birthday in
  1904 or earlier is refused as no living customer's;
- ``consent``: ``subscribed`` or ``unsubscribed`` (empty: left as it is), with
  ``consent_source`` (required with it: where it was given, "in-store sign-up")
  and ``consent_at`` (a date or an ISO time, UTC unless it says otherwise; now
  when empty, and then nothing new for a contact whose consent is that already,
  so a file imported again changes nothing). It goes through the intake's rule
  (``apply.set_consent``): a newer statement we hold is not replaced by an older one;
- ``first_name``. Other columns are ignored, with a warning.

Rows are numbered as a spreadsheet shows them (the header is row 1). A bad
row is reported (``row 7: birthday "1990-13-01" is not a date (YYYY-MM-DD)``)
and left out; the good rows are applied all the same. An address that comes
twice is applied from its first row; the later rows are errors. A file that
cannot be read as a whole (not UTF-8, binary, no header, no ``email`` column,
a line longer than :data:`MAX_LINE`) applies nothing: it is read through once
before anything is written.

What an import never does:

- start a flow: it writes the contacts directly, not through the event intake
  and the engine, so 10,000 imported subscribers get no welcome email;
- create a contact the shop erased at the person's request: the erasure keeps
  the hash of an address only where it held a suppression of it
  (``suppressions.erased_form``), and such an address is skipped. (An erased
  person who never bounced, complained or unsubscribed left nothing behind by
  design, so nothing can recognise their address in a file.);
- subscribe an address whose owner unsubscribed from the shop's marketing
  through our own links (a ``marketing`` suppression): the row's consent is
  skipped, whatever its date, and the rest of the row applied;
- touch another shop's contacts.

The file is streamed and written in chunks of :data:`CHUNK` rows, one
transaction each, so a file of 100,000 rows holds only a chunk in memory (and
the set of addresses seen, for duplicates). A dry run applies each chunk and
rolls it back: the report is exactly what the import would do.
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import IO, Any

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session, sessionmaker

from adapters import events as ev
from jobs.engine.guards import plausible_address
from jobs.engine.suppressions import erased_form
from jobs.intake.apply import set_consent
from jobs.store.db import insert_new
from jobs.store.models import (
    SCOPE_MARKETING,
    Contact,
    Shop,
    Suppression,
    SuppressionReason,
    now,
)

#: the year a birthday without one is stored with: a leap year (29 February is
#: a birthday), and before any living customer's; nothing may read it as an age
YEAR_UNKNOWN = 1904
#: the earliest real birthday accepted (1904 stands for "year unknown")
EARLIEST_BIRTHDAY = date(YEAR_UNKNOWN + 1, 1, 1)
#: what the stored consent source starts with, so a merchant's words are told
#: apart from a platform's ("shopify:...") and our own ("triggerpost:...")
SOURCE_PREFIX = "import:"
#: the longest consent source a row may give (the column holds 128 with the prefix)
SOURCE_LENGTH = 128 - len(SOURCE_PREFIX)
#: the longest line read: a contacts file has short lines; a longer one is no such file
MAX_LINE = 64 * 1024
#: rows per transaction
CHUNK = 1000
#: the first row errors kept word for word (the rest are counted)
KEPT_ERRORS = 1000

COLUMNS = ("email", "birthday", "consent", "consent_source", "consent_at", "first_name")
CONSENTS = {"subscribed": ev.ConsentState.SUBSCRIBED, "unsubscribed": ev.ConsentState.UNSUBSCRIBED}


class ImportFileError(Exception):
    """The file cannot be read as a contacts file at all: nothing is applied."""


class Outcome(StrEnum):
    CREATED = "created"
    UPDATED = "updated"
    UNCHANGED = "unchanged"
    SKIPPED = "skipped"


@dataclass(frozen=True)
class Row:
    """One valid row, ready to apply."""

    number: int
    email: str
    birthday: date | None
    consent: ev.Consent | None
    first_name: str | None
    #: the file gave the consent's time (``consent_at``); without one it is stated now
    consent_dated: bool = True


@dataclass
class Report:
    """What an import did (or, in a dry run, would do)."""

    dry_run: bool
    rows: int = 0
    created: int = 0
    updated: int = 0
    unchanged: int = 0
    skipped: int = 0
    #: rows applied without their "subscribed": the address unsubscribed through our links
    consent_refused: int = 0
    errors: int = 0
    ignored_columns: list[str] = field(default_factory=list)
    error_lines: list[str] = field(default_factory=list)
    #: rows (or their consent) left out on purpose, each with the reason
    skip_lines: list[str] = field(default_factory=list)

    def error(self, number: int, text: str) -> None:
        self.errors += 1
        if len(self.error_lines) < KEPT_ERRORS:
            self.error_lines.append(f"row {number}: {text}")

    def skip(self, number: int, text: str) -> None:
        if len(self.skip_lines) < KEPT_ERRORS:
            self.skip_lines.append(f"row {number}: {text}")

    def as_dict(self) -> dict[str, Any]:
        return {
            "dry_run": self.dry_run,
            "rows": self.rows,
            "created": self.created,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "skipped": self.skipped,
            "consent_refused": self.consent_refused,
            "errors": self.errors,
            "ignored_columns": self.ignored_columns,
            "error_lines": self.error_lines,
            "skip_lines": self.skip_lines,
        }


# --- reading the file --------------------------------------------------------------


def _lines(raw: IO[bytes]) -> Iterator[str]:
    """The file's lines as text, refusing what is no contacts file (binary, not UTF-8)."""
    decoder = codecs.getincrementaldecoder("utf-8-sig")("strict")
    number = 0
    while True:
        line = raw.readline(MAX_LINE + 1)
        if not line:
            break
        number += 1
        if len(line) > MAX_LINE:
            raise ImportFileError(
                f"line {number} is longer than {MAX_LINE} bytes: this is not a contacts file"
            )
        if b"\x00" in line:
            raise ImportFileError(f"line {number} holds binary data: this is not a CSV file")
        try:
            yield decoder.decode(line)
        except UnicodeDecodeError as exc:
            raise ImportFileError(
                f"line {number} is not UTF-8 text ({exc.reason}): save the file as "
                '"CSV UTF-8" and try again'
            ) from exc


def _delimiter(header: str) -> str:
    counts = {d: header.count(d) for d in (",", ";", "\t")}
    best = max(counts, key=lambda d: counts[d])
    return best if counts[best] else ","


def _records(raw: IO[bytes]) -> tuple[list[str], Iterator[tuple[int, list[str]]]]:
    """The header's column names and the data rows with their spreadsheet numbers."""
    lines = _lines(raw)
    first = next(lines, None)
    while first is not None and not first.strip():
        first = next(lines, None)
    if first is None:
        raise ImportFileError(
            "the file is empty: it needs a header row naming its columns (email, birthday, ...)"
        )

    def joined() -> Iterator[str]:
        yield first
        yield from lines

    try:
        reader = csv.reader(joined(), delimiter=_delimiter(first), strict=True)
        header = [name.strip().lower() for name in next(reader)]
    except csv.Error as exc:
        raise ImportFileError(f"row 1 is not CSV: {exc}") from exc
    if "email" not in header:
        if any("@" in name for name in header):
            raise ImportFileError(
                "row 1 looks like a contact, not a header: the first row must name the "
                "columns (email, birthday, consent, consent_source, consent_at, first_name)"
            )
        raise ImportFileError(
            f"the header row has no email column (it names: {', '.join(header) or 'nothing'})"
        )
    repeated = sorted({name for name in header if name and header.count(name) > 1})
    if repeated:
        raise ImportFileError(f"the header row names {', '.join(repeated)} more than once")

    def rows() -> Iterator[tuple[int, list[str]]]:
        number = 1
        while True:
            try:
                cells = next(reader)
            except StopIteration:
                return
            except csv.Error as exc:
                raise ImportFileError(f"row {number + 1} is not CSV: {exc}") from exc
            number += 1
            yield number, cells

    return header, rows()


# --- one row -----------------------------------------------------------------------


#: the date forms a row may use (``date.fromisoformat`` alone also takes week dates)
_DATE = re.compile(r"[0-9]{4}-[0-9]{2}-[0-9]{2}")
_NO_YEAR = re.compile(r"--[0-9]{2}-[0-9]{2}")


class RowError(Exception):
    """What is wrong with one row, in words for the merchant."""


def _birthday(text: str, today: date) -> date:
    try:
        if _NO_YEAR.fullmatch(text):
            return date.fromisoformat(f"{YEAR_UNKNOWN}-{text[2:]}")
        if not _DATE.fullmatch(text):
            raise ValueError(text)
        day = date.fromisoformat(text)
    except ValueError:
        raise RowError(
            f'birthday "{text}" is not a date (YYYY-MM-DD, or --MM-DD without the year)'
        ) from None
    if day > today:
        raise RowError(f'birthday "{text}" is in the future')
    if day < EARLIEST_BIRTHDAY:
        raise RowError(
            f'birthday "{text}" is before {EARLIEST_BIRTHDAY.year}: no living customer\'s '
            "(for an unknown year write --MM-DD)"
        )
    return day


def _consent_at(text: str, at: datetime) -> datetime:
    try:
        if _DATE.fullmatch(text):
            when = datetime.combine(date.fromisoformat(text), datetime.min.time(), UTC)
        else:
            when = datetime.fromisoformat(text)
    except ValueError:
        raise RowError(f'consent_at "{text}" is not a date or time (YYYY-MM-DD HH:MM)') from None
    when = when.replace(tzinfo=UTC) if when.tzinfo is None else when.astimezone(UTC)
    if when > at:
        raise RowError(f'consent_at "{text}" is in the future')
    return when


def read_row(values: dict[str, str], number: int, at: datetime) -> Row:
    """The row, checked; raises RowError with the first thing wrong with it."""
    text = values.get("email", "")
    if not text:
        raise RowError("email is empty")
    email = ev.normalise_email(text)
    if len(email) > 320 or not plausible_address(email):
        raise RowError(f'email "{text[:80]}" is not an email address')
    birthday = _birthday(values["birthday"], at.date()) if values.get("birthday") else None
    consent = None
    state_text = values.get("consent", "").lower()
    source = values.get("consent_source", "")
    if state_text:
        state = CONSENTS.get(state_text)
        if state is None:
            raise RowError(
                f'consent "{values["consent"]}" is not subscribed or unsubscribed '
                "(leave it empty to keep what the shop holds)"
            )
        if not source:
            raise RowError("consent_source is empty: say where the consent was given")
        if len(source) > SOURCE_LENGTH:
            raise RowError(f"consent_source is longer than {SOURCE_LENGTH} characters")
        when = _consent_at(values["consent_at"], at) if values.get("consent_at") else at
        consent = ev.Consent(state=state, source=SOURCE_PREFIX + source, updated_at=when)
    elif source or values.get("consent_at"):
        raise RowError("consent_source or consent_at without consent (subscribed, unsubscribed)")
    first_name = values.get("first_name") or None
    return Row(
        number,
        email,
        birthday,
        consent,
        first_name[:255] if first_name else None,
        consent_dated=bool(values.get("consent_at")),
    )


# --- applying ----------------------------------------------------------------------


def _state(contact: Contact) -> tuple[Any, ...]:
    return (
        contact.birthday,
        contact.first_name,
        contact.consent_state,
        contact.consent_source,
        contact.consent_at,
    )


def _apply_chunk(session: Session, shop_id: int, chunk: list[Row], report: Report) -> None:
    emails = [row.email for row in chunk]
    contacts = {
        c.email: c
        for c in session.scalars(
            select(Contact).where(Contact.shop_id == shop_id, Contact.email.in_(emails))
        )
    }
    erased = {erased_form(e): e for e in emails}
    blocked: dict[str, Suppression] = {}
    erased_found: set[str] = set()
    for s in session.scalars(
        select(Suppression).where(
            Suppression.shop_id == shop_id, Suppression.email.in_([*emails, *erased])
        )
    ):
        address = erased.get(s.email, s.email)
        if s.email in erased:
            erased_found.add(address)
        if s.scope == SCOPE_MARKETING and s.reason == SuppressionReason.UNSUBSCRIBED:
            blocked[address] = s
    new: list[dict[str, Any]] = []
    for row in chunk:
        contact = contacts.get(row.email)
        if contact is None and row.email in erased_found:
            report.skipped += 1
            report.skip(
                row.number,
                f"{row.email} was erased at the shop's request: not created again from a file",
            )
            continue
        consent = row.consent
        if consent is not None and consent.state == ev.ConsentState.SUBSCRIBED:
            unsubscribe = blocked.get(row.email)
            if unsubscribe is not None:
                report.skip(
                    row.number,
                    f"{row.email} unsubscribed through the shop's emails ({unsubscribe.source}, "
                    f"{unsubscribe.created_at:%Y-%m-%d}): consent not changed",
                )
                report.consent_refused += 1
                consent = None
        if contact is None:
            # filled in as a loose object, then written with the chunk's other new ones
            contact = Contact(shop_id=shop_id, email=row.email)
            _fill(contact, row, consent)
            new.append({name: getattr(contact, name) for name in _NEW_FIELDS})
            report.created += 1
            continue
        before = _state(contact)
        _fill(contact, row, consent)
        if _state(contact) != before:
            report.updated += 1
        else:
            report.unchanged += 1
    if len(insert_new(session, Contact, ("shop_id", "email"), new)) != len(new):
        raise _RacedError("a contact of the chunk was created meanwhile")
    session.flush()


def _fill(contact: Contact, row: Row, consent: ev.Consent | None) -> None:
    if row.birthday is not None:
        contact.birthday = row.birthday
    if row.first_name is not None:
        contact.first_name = row.first_name
    if consent is not None and (row.consent_dated or contact.consent_state != consent.state.value):
        # an undated statement of the consent she has already is nothing new (a file
        # imported again): it would only move the consent's time to now
        set_consent(contact, consent, None)


_NEW_FIELDS = (
    "shop_id",
    "email",
    "birthday",
    "birthday_md",
    "first_name",
    "consent_state",
    "consent_source",
    "consent_at",
)


class _RacedError(Exception):
    """A webhook created one of the chunk's contacts while it was written: write it again."""


def _write(sessions: sessionmaker[Session], shop_id: int, chunk: list[Row], report: Report) -> None:
    """One chunk in one transaction (rolled back in a dry run); once more if a webhook
    created one of its contacts meanwhile."""
    for attempt in (1, 2):
        counted = Report(dry_run=report.dry_run)
        session = sessions()
        try:
            _apply_chunk(session, shop_id, chunk, counted)
            if report.dry_run:
                session.rollback()
            else:
                session.commit()
        except (IntegrityError, _RacedError):
            session.rollback()
            if attempt == 2:
                raise
            continue
        finally:
            session.close()
        break
    for name in ("created", "updated", "unchanged", "skipped", "consent_refused"):
        setattr(report, name, getattr(report, name) + getattr(counted, name))
    report.skip_lines.extend(counted.skip_lines[: KEPT_ERRORS - len(report.skip_lines)])


def _walk(raw: IO[bytes], report: Report, at: datetime) -> Iterator[Row]:
    """The valid rows of the file; errors and ignored columns noted on the report."""
    header, records = _records(raw)
    report.ignored_columns = [name for name in header if name not in COLUMNS]
    seen: dict[str, int] = {}
    for number, cells in records:
        if not any(cell.strip() for cell in cells):
            continue  # an empty row, as spreadsheets leave at the end
        report.rows += 1
        if len(cells) > len(header):
            report.error(number, f"{len(cells)} cells, but the header names {len(header)} columns")
            continue
        values = {name: cell.strip() for name, cell in zip(header, cells, strict=False)}
        try:
            row = read_row(values, number, at)
        except RowError as exc:
            report.error(number, str(exc))
            continue
        first = seen.get(row.email)
        if first is not None:
            report.error(number, f"{row.email} is already in row {first} (applied from there)")
            continue
        seen[row.email] = number
        yield row


def run(
    sessions: sessionmaker[Session],
    shop: Shop,
    opener: Callable[[], IO[bytes]],
    *,
    dry_run: bool,
    at: datetime | None = None,
) -> Report:
    """Import the file ``opener()`` opens (binary) into ``shop``'s contacts.

    The file is read twice: once to refuse a file that is no contacts file before
    anything is written, then to apply its rows in chunks.
    """
    at = at or now()
    with opener() as raw:
        for _ in _walk(raw, Report(dry_run=dry_run), at):
            pass
    report = Report(dry_run=dry_run)
    chunk: list[Row] = []
    with opener() as raw:
        for row in _walk(raw, report, at):
            chunk.append(row)
            if len(chunk) >= CHUNK:
                _write(sessions, shop.id, chunk, report)
                chunk = []
    if chunk:
        _write(sessions, shop.id, chunk, report)
    return report
