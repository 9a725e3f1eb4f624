"""Settings: defaults, TOML file, environment; a bad value gives one line naming it."""

from __future__ import annotations

import pytest

from service.config import ConfigError, load_settings


def test_defaults_use_sqlite_under_data_dir(tmp_path):
    settings = load_settings({"data_dir": tmp_path}, environ={})
    assert settings.resolved_database_url == f"sqlite:///{(tmp_path / 'canhgac.db').resolve()}"


def test_environment_overrides_file(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text('secret_key = "from-file"\nack_sla_minutes = 20\n', encoding="utf-8")
    settings = load_settings(environ={"CANHGAC_CONFIG": str(cfg), "CANHGAC_SECRET_KEY": "env"})
    assert settings.secret_key == "env"
    assert settings.ack_sla_minutes == 20


def test_postgresql_url_uses_psycopg3():
    settings = load_settings(environ={"CANHGAC_DATABASE_URL": "postgresql://u@h/db"})
    assert settings.database_url == "postgresql+psycopg://u@h/db"


@pytest.mark.parametrize(
    ("environ", "needle"),
    [
        ({"CANHGAC_SMTP_PORT": "99999"}, "smtp_port"),
        ({"CANHGAC_DATABASE_URL": "mysql://x"}, "database_url"),
        ({"CANHGAC_TIMEZONE": "Mars/Base"}, "timezone"),
        ({"CANHGAC_LOG_LEVEL": "LOUD"}, "log_level"),
    ],
)
def test_bad_value_names_the_setting_in_one_line(environ, needle):
    with pytest.raises(ConfigError) as info:
        load_settings(environ=environ)
    message = str(info.value)
    assert needle in message
    assert "\n" not in message


def test_unknown_key_in_file_is_named(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("secret_kee = 'typo'\n", encoding="utf-8")
    with pytest.raises(ConfigError, match="secret_kee"):
        load_settings(environ={"CANHGAC_CONFIG": str(cfg)})


def test_broken_toml_is_reported(tmp_path):
    cfg = tmp_path / "c.toml"
    cfg.write_text("secret_key = \n", encoding="utf-8")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_settings(environ={"CANHGAC_CONFIG": str(cfg)})


def test_cli_reports_bad_setting_in_one_line(tmp_path):
    from click.testing import CliRunner

    from service.cli import main

    result = CliRunner().invoke(
        main, ["user", "list", "--data-dir", str(tmp_path)], env={"CANHGAC_SMTP_PORT": "nope"}
    )
    assert result.exit_code != 0
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and "smtp_port" in lines[0]
