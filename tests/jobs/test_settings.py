from __future__ import annotations

from pathlib import Path

import pytest

from jobs.settings import Mode, Settings, SettingsError


def test_embedded_defaults_live_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)})
    assert settings.mode is Mode.DEVELOPMENT
    assert settings.database_url == f"sqlite:///{tmp_path}/triggerpost.db"
    assert settings.redis_url == f"unix://{tmp_path}/redis.sock"
    assert settings.embedded_redis
    assert settings.email_url == f"file://{tmp_path}/outbox"
    assert settings.base_url == "http://127.0.0.1:8000"


def test_dev_secret_is_created_once_and_kept(tmp_path: Path) -> None:
    first = Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)})
    second = Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)})
    assert len(first.secret_key) >= 32
    assert first.secret_key == second.secret_key
    assert (tmp_path / "secret_key").stat().st_mode & 0o777 == 0o600


def test_explicit_values_win(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {
            "TRIGGERPOST_DATA_DIR": str(tmp_path),
            "TRIGGERPOST_DATABASE_URL": "postgresql://db/x",
            "TRIGGERPOST_REDIS_URL": "redis://r:6379/1",
            "TRIGGERPOST_SECRET_KEY": "k" * 40,
            "TRIGGERPOST_BASE_URL": "https://tp.example/",
            "TRIGGERPOST_MAX_WEBHOOK_BYTES": "1024",
        }
    )
    assert settings.database_url == "postgresql://db/x"
    assert not settings.embedded_redis
    assert settings.base_url == "https://tp.example"
    assert settings.max_webhook_bytes == 1024
    assert not (tmp_path / "secret_key").exists()


def test_production_refuses_dev_defaults(tmp_path: Path) -> None:
    with pytest.raises(SettingsError) as info:
        Settings.from_env({"TRIGGERPOST_ENV": "production", "TRIGGERPOST_DATA_DIR": str(tmp_path)})
    for name in ("SECRET_KEY", "DATABASE_URL", "REDIS_URL", "EMAIL_URL", "BASE_URL", "EMAIL_FROM"):
        assert f"TRIGGERPOST_{name}" in str(info.value)
    assert not (tmp_path / "secret_key").exists()


PRODUCTION = {
    "TRIGGERPOST_ENV": "production",
    "TRIGGERPOST_SECRET_KEY": "k" * 40,
    "TRIGGERPOST_DATABASE_URL": "postgresql://db/x",
    "TRIGGERPOST_REDIS_URL": "redis://r:6379/0",
    "TRIGGERPOST_EMAIL_URL": "smtp://mail:587",
    "TRIGGERPOST_BASE_URL": "https://tp.example",
    "TRIGGERPOST_EMAIL_FROM": "shops@mail.tp.example",
}


def test_production_with_everything_set() -> None:
    assert Settings.from_env(PRODUCTION).production


@pytest.mark.parametrize(
    ("name", "value", "message"),
    [
        ("TRIGGERPOST_SECRET_KEY", "short", "at least 32"),
        ("TRIGGERPOST_EMAIL_URL", "file:///tmp/outbox", "dev outbox"),
        ("TRIGGERPOST_BASE_URL", "http://tp.example", "https"),
        ("TRIGGERPOST_ENV", "staging", "must be one of"),
        ("TRIGGERPOST_MAX_WEBHOOK_BYTES", "lots", "whole number"),
        ("TRIGGERPOST_PROXY_HOPS", "-1", "at least 0"),
        ("TRIGGERPOST_SWEEP_INTERVAL", "0", "must be positive"),
    ],
)
def test_bad_values_are_explained(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**PRODUCTION, name: value})


@pytest.mark.parametrize(
    ("name", "value", "what_to_set"),
    [
        ("TRIGGERPOST_DATABASE_URL", "sqlite:////srv/triggerpost.db", "postgresql://"),
        ("TRIGGERPOST_DATABASE_URL", "sqlite://", "postgresql://"),
        ("TRIGGERPOST_DATABASE_URL", "mysql://db/x", "postgresql://"),
        ("TRIGGERPOST_EMAIL_URL", "null://", "smtp://"),
        ("TRIGGERPOST_EMAIL_URL", "file:///tmp/outbox", "smtp://"),
        ("TRIGGERPOST_BASE_URL", "https://", "https://triggerpost.example.com"),
        ("TRIGGERPOST_BASE_URL", "https:///settings", "https://triggerpost.example.com"),
        ("TRIGGERPOST_BASE_URL", "https://:443", "https://triggerpost.example.com"),
        ("TRIGGERPOST_BASE_URL", "https://tp.example:https", "https://triggerpost.example.com"),
        ("TRIGGERPOST_BASE_URL", "https://tp.example/?x=1", "https://triggerpost.example.com"),
        ("TRIGGERPOST_BASE_URL", "https://tp.example#top", "https://triggerpost.example.com"),
        ("TRIGGERPOST_BASE_URL", "https://user:pw@tp.example", "https://triggerpost.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "shops", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "Nordljus <shops@mail.tp.example>", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "shops@", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "@mail.tp.example", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "shops@localhost", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "shops@mail..tp.example", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "shops@-mail.tp.example", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "shops@mail.tp.example.", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "sh ops@mail.tp.example", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", "shops@a@mail.tp.example", "shops@mail.example.com"),
        ("TRIGGERPOST_EMAIL_FROM", ".shops@mail.tp.example", "shops@mail.example.com"),
        (
            "TRIGGERPOST_EMAIL_FROM",
            "shops@mail.tp.example,x@evil.example",
            "shops@mail.example.com",
        ),
        ("TRIGGERPOST_EMAIL_FROM", "shops@exämple.se", "xn--"),
    ],
)
def test_production_refuses_what_only_works_on_one_machine_or_not_at_all(
    name: str, value: str, what_to_set: str
) -> None:
    with pytest.raises(SettingsError) as refused:
        Settings.from_env({**PRODUCTION, name: value})
    assert name in str(refused.value)
    assert what_to_set in str(refused.value)


@pytest.mark.parametrize(
    ("name", "value"),
    [
        ("TRIGGERPOST_DATABASE_URL", "postgres://u:p@db:5432/x"),
        ("TRIGGERPOST_DATABASE_URL", "postgresql+psycopg://u:p@db/x"),
        ("TRIGGERPOST_EMAIL_URL", "smtps://u:p@mail.example:465"),
        ("TRIGGERPOST_EMAIL_URL", "postmark://token@api.postmarkapp.com?rate=10/s"),
        ("TRIGGERPOST_EMAIL_URL", "sendgrid://key@api.sendgrid.com"),
        ("TRIGGERPOST_BASE_URL", "https://tp.example:8443/"),
        ("TRIGGERPOST_BASE_URL", "https://tp.example/triggerpost"),
        ("TRIGGERPOST_EMAIL_FROM", "no-reply+shops@mail.xn--exmple-cua.se"),
        ("TRIGGERPOST_EMAIL_FROM", "o'brien.shop@mail.tp.example"),
    ],
)
def test_production_accepts_real_deployments(name: str, value: str) -> None:
    assert Settings.from_env({**PRODUCTION, name: value}).production


def test_a_refusal_never_prints_the_credentials_in_a_url() -> None:
    for name, value in (
        ("TRIGGERPOST_DATABASE_URL", "sqlite://hunter2@/x.db"),
        ("TRIGGERPOST_EMAIL_URL", "null://hunter2@x"),
        ("TRIGGERPOST_BASE_URL", "https://admin:hunter2@tp.example"),
    ):
        with pytest.raises(SettingsError) as refused:
            Settings.from_env({**PRODUCTION, name: value})
        assert "hunter2" not in str(refused.value)


def test_development_keeps_its_single_machine_defaults(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TRIGGERPOST_DATA_DIR": str(tmp_path), "TRIGGERPOST_EMAIL_URL": "null://"}
    )
    assert settings.database_url.startswith("sqlite:///")
    assert settings.email_url == "null://"


def test_proxy_hops_default_to_none_and_may_be_set(tmp_path: Path) -> None:
    assert Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)}).proxy_hops == 0
    behind = Settings.from_env(
        {"TRIGGERPOST_DATA_DIR": str(tmp_path), "TRIGGERPOST_PROXY_HOPS": "2"}
    )
    assert behind.proxy_hops == 2


def test_links_follow_the_port_the_service_serves_on(tmp_path: Path) -> None:
    settings = Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)})
    assert settings.serving_on("127.0.0.1", 27431).base_url == "http://127.0.0.1:27431"
    # listening everywhere: the links reach it on loopback
    everywhere = "0.0.0.0"  # noqa: S104 (what it listens on)
    assert settings.serving_on(everywhere, 8123).base_url == "http://127.0.0.1:8123"
    assert settings.serving_on("::1", 8123).base_url == "http://[::1]:8123"


def test_an_explicit_base_url_is_kept_whatever_the_port(tmp_path: Path) -> None:
    settings = Settings.from_env(
        {"TRIGGERPOST_DATA_DIR": str(tmp_path), "TRIGGERPOST_BASE_URL": "https://tp.example"}
    )
    assert settings.serving_on("127.0.0.1", 27431).base_url == "https://tp.example"


def test_commands_beside_a_running_service_make_links_to_its_port(tmp_path: Path) -> None:
    """`triggerpost run --port 27431` notes its address; a login link made by the CLI
    beside it reaches it. Set explicitly, the base URL wins and nothing is noted."""
    from jobs.settings import note_served_base_url

    served = Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)}).serving_on(
        "127.0.0.1", 27431
    )
    note_served_base_url(served)
    beside = Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)})
    assert beside.base_url == "http://127.0.0.1:27431"
    assert not beside.base_url_explicit
    explicit = Settings.from_env(
        {"TRIGGERPOST_DATA_DIR": str(tmp_path), "TRIGGERPOST_BASE_URL": "http://127.0.0.1:9"}
    )
    assert explicit.base_url == "http://127.0.0.1:9"
    note_served_base_url(explicit)
    assert Settings.from_env({"TRIGGERPOST_DATA_DIR": str(tmp_path)}).base_url == (
        "http://127.0.0.1:8000"
    )
