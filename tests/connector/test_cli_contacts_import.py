"""`triggerpost contacts import`: birthdays and consent from a merchant's file."""

from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result
from sqlalchemy import func, select

from connector.cli import main
from jobs.engine import suppressions
from jobs.intake import contacts_import, privacy
from jobs.intake.contacts_import import MAX_LINE, YEAR_UNKNOWN
from jobs.store.db import make_engine, make_sessions
from jobs.store.models import (
    SCOPE_ALL,
    SCOPE_MARKETING,
    Contact,
    Enrollment,
    Message,
    NonEnrolment,
    Shop,
    StoredEvent,
)

SHOP = "nordic-socks.myshopify.com"
OTHER = "Butik.Example.se"


@pytest.fixture
def env(tmp_path: Path, database_url: str) -> dict[str, str]:
    env = {
        "TRIGGERPOST_DATA_DIR": str(tmp_path / "var"),
        "TRIGGERPOST_DATABASE_URL": database_url,
        "TRIGGERPOST_SHOPIFY_API_SECRET": "",
    }
    for args in (
        ["shopify", SHOP, "--webhook-secret", "app-secret-1"],
        ["woocommerce", f"https://{OTHER}/", "--webhook-secret", "s3cr3tvalue",
         "--consumer-key", "ck_1", "--consumer-secret", "cs_1", "--currency", "sek"],
    ):  # fmt: skip
        added = CliRunner().invoke(main, ["shop", "add", *args], env=env)
        assert added.exit_code == 0, added.output
    return env


def write(tmp_path: Path, text: str | bytes, name: str = "contacts.csv") -> Path:
    path = tmp_path / name
    if isinstance(text, str):
        path.write_text(text, "utf-8")
    else:
        path.write_bytes(text)
    return path


def run(env: dict[str, str], path: Path, *extra: str, shop: str = SHOP) -> Result:
    return CliRunner().invoke(main, ["contacts", "import", shop, str(path), *extra], env=env)


def report(env: dict[str, str], path: Path, *extra: str) -> tuple[int, dict[str, Any]]:
    result = run(env, path, "--json", *extra)
    assert result.exception is None or isinstance(result.exception, SystemExit), result.output
    return result.exit_code, json.loads(result.output)


def contacts(database_url: str, shop_key: str = SHOP) -> dict[str, Contact]:
    engine = make_engine(database_url)
    with make_sessions(engine)() as session:
        shop_id = session.scalar(select(Shop.id).where(Shop.key == shop_key))
        found = {
            c.email or "": c
            for c in session.scalars(select(Contact).where(Contact.shop_id == shop_id))
        }
    engine.dispose()
    return found


def in_store(database_url: str, work: Any) -> None:
    engine = make_engine(database_url)
    with make_sessions(engine).begin() as session:
        shop = session.scalars(select(Shop).where(Shop.key == SHOP)).one()
        work(session, shop)
    engine.dispose()


HAPPY = (
    "email,birthday,consent,consent_source,consent_at,first_name\n"
    "Anna@Example.se,1990-04-12,subscribed,in-store sign-up,2026-05-01,Anna\n"
    "bo@example.se,--02-29,,,,\n"
    "cia@example.se,,unsubscribed,newsletter form,2026-06-01T10:00:00+02:00,\n"
)


def test_a_file_creates_contacts_with_birthdays_and_consent(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    result = run(env, write(tmp_path, HAPPY))
    assert result.exit_code == 0, result.output
    assert "3 rows read" in result.output
    assert "created 3, updated 0, unchanged 0" in result.output
    found = contacts(database_url)
    anna = found["anna@example.se"]
    assert anna.birthday == date(1990, 4, 12)
    assert anna.first_name == "Anna"
    assert anna.consent_state == "subscribed"
    assert anna.consent_source == "import:in-store sign-up"
    assert anna.consent_at is not None
    assert anna.consent_at.replace(tzinfo=UTC) == datetime(2026, 5, 1, tzinfo=UTC)
    # a birthday without its year is stored in the leap year that stands for "unknown"
    assert found["bo@example.se"].birthday == date(YEAR_UNKNOWN, 2, 29)
    assert found["bo@example.se"].consent_state is None
    cia = found["cia@example.se"]
    assert cia.consent_state == "unsubscribed"
    assert cia.consent_at is not None
    assert cia.consent_at.replace(tzinfo=UTC) == datetime(2026, 6, 1, 8, tzinfo=UTC)


def test_importing_starts_no_flow(env: dict[str, str], database_url: str, tmp_path: Path) -> None:
    lines = [f"subscriber{i}@example.se,subscribed,newsletter form" for i in range(50)]
    path = write(tmp_path, "email,consent,consent_source\n" + "\n".join(lines) + "\n")
    assert run(env, path).exit_code == 0
    assert len(contacts(database_url)) == 50
    engine = make_engine(database_url)
    with make_sessions(engine)() as session:
        for model in (Enrollment, Message, NonEnrolment, StoredEvent):
            assert session.scalar(select(func.count()).select_from(model)) == 0, model
    engine.dispose()


def test_excel_semicolons_a_byte_order_mark_and_headers_in_any_case(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    text = (
        " E-post ; EMAIL ;Birthday;Consent;Consent_Source\r\n"
        "x;åsa@exempel.se;1985-12-24;subscribed;butiken i Lund\r\n"
    )
    path = write(tmp_path, "\ufeff".encode() + text.encode())
    code, shown = report(env, path)
    assert code == 0, shown
    assert shown["created"] == 1
    assert shown["ignored_columns"] == ["e-post"]
    åsa = contacts(database_url)["åsa@exempel.se"]
    assert åsa.birthday == date(1985, 12, 24)
    assert åsa.consent_source == "import:butiken i Lund"
    # the text report warns once about the column it does not read
    again = run(env, path)
    assert again.output.count("column 'e-post' ignored") == 1


def test_each_bad_row_is_reported_with_its_spreadsheet_row_and_the_rest_applied(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    future = (datetime.now(UTC).date() + timedelta(days=30)).isoformat()
    text = (
        "email,birthday,consent,consent_source,consent_at\n"   # row 1
        "good@example.se,1990-01-01,,,\n"                        # row 2
        "not-an-address,,,,\n"                                   # row 3
        "b@example.se,2025-02-30,,,\n"                           # row 4
        "c@example.se,1990-13-01,,,\n"                           # row 5
        f"d@example.se,{future},,,\n"                            # row 6
        "e@example.se,1899-05-05,,,\n"                           # row 7
        "f@example.se,,maybe,web,\n"                             # row 8
        "g@example.se,,subscribed,,\n"                           # row 9
        "GOOD@example.se,1991-01-01,,,\n"                        # row 10
        "h@example.se,,subscribed,web,yesterday\n"               # row 11
        ",1990-01-01,,,\n"                                       # row 12
        "i@example.se,,,,,,surplus\n"                            # row 13
        "j@example.se,2026-W01-1,,,\n"                           # row 14
        "k@example.se,--02-30,,,\n"                              # row 15
    )  # fmt: skip
    code, shown = report(env, write(tmp_path, text))
    assert code == 1
    assert shown["rows"] == 14
    assert shown["created"] == 1
    assert shown["errors"] == 13
    assert shown["error_lines"] == [
        'row 3: email "not-an-address" is not an email address',
        'row 4: birthday "2025-02-30" is not a date (YYYY-MM-DD, or --MM-DD without the year)',
        'row 5: birthday "1990-13-01" is not a date (YYYY-MM-DD, or --MM-DD without the year)',
        f'row 6: birthday "{future}" is in the future',
        (
            'row 7: birthday "1899-05-05" is before 1905: no living customer\'s '
            "(for an unknown year write --MM-DD)"
        ),
        (
            'row 8: consent "maybe" is not subscribed or unsubscribed '
            "(leave it empty to keep what the shop holds)"
        ),
        "row 9: consent_source is empty: say where the consent was given",
        "row 10: good@example.se is already in row 2 (applied from there)",
        'row 11: consent_at "yesterday" is not a date or time (YYYY-MM-DD HH:MM)',
        "row 12: email is empty",
        "row 13: 7 cells, but the header names 5 columns",
        'row 14: birthday "2026-W01-1" is not a date (YYYY-MM-DD, or --MM-DD without the year)',
        'row 15: birthday "--02-30" is not a date (YYYY-MM-DD, or --MM-DD without the year)',
    ]
    assert set(contacts(database_url)) == {"good@example.se"}
    assert contacts(database_url)["good@example.se"].birthday == date(1990, 1, 1)
    text_report = run(env, write(tmp_path, text))
    assert text_report.exit_code == 1
    assert 'row 5: birthday "1990-13-01" is not a date' in text_report.output
    assert "13 rows with errors (left out)" in text_report.output


def test_a_dry_run_reports_the_same_and_changes_nothing(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path, HAPPY)
    code, dry = report(env, path, "--dry-run")
    assert code == 0
    assert (dry["dry_run"], dry["created"], dry["updated"]) == (True, 3, 0)
    assert contacts(database_url) == {}
    assert "dry run: nothing was changed" in run(env, path, "--dry-run").output
    code, real = report(env, path)
    assert (real["created"], real["updated"], real["unchanged"]) == (3, 0, 0)


def test_importing_the_same_file_again_changes_nothing(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    path = write(tmp_path, HAPPY)
    assert run(env, path).exit_code == 0
    before = {
        e: (c.birthday, c.consent_state, c.consent_at) for e, c in contacts(database_url).items()
    }
    code, again = report(env, path)
    assert code == 0
    assert (again["created"], again["updated"], again["unchanged"]) == (0, 0, 3)
    after = {
        e: (c.birthday, c.consent_state, c.consent_at) for e, c in contacts(database_url).items()
    }
    assert after == before


def test_a_file_without_consent_times_imported_again_changes_nothing(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    """Undated, "subscribed" means as of the import: again, it is nothing new."""
    path = write(tmp_path, "email,consent,consent_source\nanna@example.se,subscribed,form\n")
    assert run(env, path).exit_code == 0
    first = contacts(database_url)["anna@example.se"].consent_at
    code, again = report(env, path)
    assert (code, again["updated"], again["unchanged"]) == (0, 0, 1)
    assert "1 row read; contacts were created 0, updated 0, unchanged 1" in run(env, path).output
    assert contacts(database_url)["anna@example.se"].consent_at == first


def test_an_older_consent_in_the_file_does_not_replace_a_newer_one(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    header = "email,consent,consent_source,consent_at\n"
    run(env, write(tmp_path, header + "anna@example.se,unsubscribed,phone call,2026-03-01\n"))
    code, shown = report(
        env, write(tmp_path, header + "anna@example.se,subscribed,old form,2025-01-01\n")
    )
    assert (code, shown["unchanged"]) == (0, 1)
    assert contacts(database_url)["anna@example.se"].consent_state == "unsubscribed"


def test_another_shops_contact_with_the_same_address_is_untouched(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    text = "email,birthday\nanna@example.se,1970-01-01\n"
    assert run(env, write(tmp_path, text), shop=OTHER.lower()).exit_code == 0
    assert run(env, write(tmp_path, "email,birthday\nanna@example.se,1990-04-12\n")).exit_code == 0
    other = contacts(database_url, OTHER.lower())
    assert other["anna@example.se"].birthday == date(1970, 1, 1)
    assert contacts(database_url)["anna@example.se"].birthday == date(1990, 4, 12)


def test_a_contact_the_shop_erased_is_not_created_again(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    at = datetime(2026, 1, 1, tzinfo=UTC)

    def erase(session: Any, shop: Shop) -> None:
        contact = Contact(shop_id=shop.id, email="gone@example.se")
        session.add(contact)
        session.flush()
        suppressions.suppress(
            session, shop.id, "gone@example.se",
            scope=SCOPE_ALL, reason="hard_bounce", source="postmark:bounce", at=at,
        )  # fmt: skip
        privacy.erase_contact(
            session, shop.id, contact, emails={"gone@example.se"}, order_ids=(), at=at
        )

    in_store(database_url, erase)
    text = "email,birthday,consent,consent_source\ngone@example.se,1990-01-01,subscribed,form\n"
    result = run(env, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert (
        "row 2: gone@example.se was erased at the shop's request: not created again from a file"
        in result.output
    )
    assert "skipped 1" in result.output
    assert "gone@example.se" not in contacts(database_url)


def test_an_unsubscribe_through_our_link_is_never_undone_by_a_file(
    env: dict[str, str], database_url: str, tmp_path: Path
) -> None:
    def unsubscribe(session: Any, shop: Shop) -> None:
        session.add(Contact(shop_id=shop.id, email="anna@example.se"))
        session.flush()
        suppressions.unsubscribe(
            session, shop.id, "anna@example.se", scope=SCOPE_MARKETING,
            source="unsubscribe_link", at=datetime(2026, 1, 1, tzinfo=UTC),
        )  # fmt: skip

    in_store(database_url, unsubscribe)
    text = (
        "email,birthday,consent,consent_source,consent_at\n"
        "anna@example.se,1990-04-12,subscribed,newsletter form,2026-06-01\n"
    )
    result = run(env, write(tmp_path, text))
    assert result.exit_code == 0, result.output
    assert (
        "row 2: anna@example.se unsubscribed through the shop's emails (unsubscribe_link, "
        "2026-01-01): consent not changed" in result.output
    )
    assert "1 of them kept their unsubscribe" in result.output
    anna = contacts(database_url)["anna@example.se"]
    assert anna.consent_state == "unsubscribed"
    assert anna.birthday == date(1990, 4, 12)  # the rest of the row is applied


@pytest.mark.parametrize(
    ("content", "said"),
    [
        (b"", "the file is empty"),
        (b"\n\n", "the file is empty"),
        (b"PK\x03\x04\x14\x00\x06\x00\x08\x00", "binary data: this is not a CSV file"),
        (b"email\nfirst@example.se\n\x89PNG\r\n\x1a\n", "line 3 is not UTF-8 text"),
        (b"\xff\xfe\xfa garbage\n", "is not UTF-8 text"),
        (b"name,birthday\nAnna,1990-01-01\n", "the header row has no email column"),
        (b"anna@example.se,1990-01-01\n", "row 1 looks like a contact, not a header"),
        (b"email,birthday\n" + b"a" * (MAX_LINE + 10) + b"\n", "line 2 is longer than"),
        (b'email,birthday\n"anna@example.se,1990\n', "row 2 is not CSV"),
        (b"email,Email\nanna@example.se,x\n", "names email more than once"),
    ],
)
def test_a_file_that_is_no_contacts_file_is_refused_whole_with_a_clear_message(
    env: dict[str, str], database_url: str, tmp_path: Path, content: bytes, said: str
) -> None:
    result = run(env, write(tmp_path, content))
    assert result.exit_code == 1
    assert isinstance(result.exception, SystemExit), result.exception
    assert said in result.output
    assert "nothing imported" in result.output
    assert contacts(database_url) == {}


def test_an_unknown_shop_or_missing_file_is_a_clear_message(
    env: dict[str, str], tmp_path: Path
) -> None:
    missing = run(env, tmp_path / "nope.csv")
    assert missing.exit_code != 0
    assert "no such file" in missing.output
    unknown = run(env, write(tmp_path, HAPPY), shop="nowhere.myshopify.com")
    assert unknown.exit_code != 0
    assert "no shop 'nowhere.myshopify.com'" in unknown.output


def test_a_file_longer_than_a_chunk_counts_the_same_dry_or_applied(
    env: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(contacts_import, "CHUNK", 3)
    lines = [f"p{i}@example.se,19{50 + i}-01-0{1 + i % 9}" for i in range(10)]
    lines.insert(7, "P2@example.se,1999-09-09")  # row 9 repeats row 4, in another chunk
    path = write(tmp_path, "email,birthday\n" + "\n".join(lines) + "\n")
    code, dry = report(env, path, "--dry-run")
    assert (code, dry["created"], dry["errors"]) == (1, 10, 1)
    assert dry["error_lines"] == ["row 9: p2@example.se is already in row 4 (applied from there)"]
    assert contacts(database_url) == {}
    code, real = report(env, path)
    assert {k: real[k] for k in ("created", "errors", "error_lines")} == {
        k: dry[k] for k in ("created", "errors", "error_lines")
    }
    assert contacts(database_url)["p2@example.se"].birthday == date(1952, 1, 3)


def test_help_says_what_happens_to_bad_rows(env: dict[str, str]) -> None:
    shown = CliRunner().invoke(main, ["contacts", "import", "--help"], env=env)
    assert shown.exit_code == 0
    assert "--dry-run" in shown.output
    assert "the good rows are applied all the same" in shown.output


def test_a_chunk_one_of_whose_contacts_appeared_meanwhile_is_written_again(
    env: dict[str, str], database_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real = contacts_import.insert_new
    calls: list[int] = []

    def racing(session: Any, model: Any, unique: Any, rows: Any) -> Any:
        calls.append(len(rows))
        if len(calls) == 1:  # a webhook's contact lands just before the chunk's insert
            real(
                session, model, unique, [{"shop_id": rows[0]["shop_id"], "email": "bo@example.se"}]
            )
        return real(session, model, unique, rows)

    monkeypatch.setattr(contacts_import, "insert_new", racing)
    code, shown = report(env, write(tmp_path, HAPPY))
    assert code == 0, shown
    assert calls == [3, 3]  # the chunk started over once
    assert (shown["created"], shown["errors"]) == (3, 0)
    assert contacts(database_url)["bo@example.se"].birthday == date(YEAR_UNKNOWN, 2, 29)
