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
    ],
)
def test_bad_values_are_explained(name: str, value: str, message: str) -> None:
    with pytest.raises(SettingsError, match=message):
        Settings.from_env({**PRODUCTION, name: value})
