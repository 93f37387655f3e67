"""Settings precedence: defaults < TOML file < FLOW_* environment < flags, each value with its source."""

from __future__ import annotations

import pytest

from flow.daemon.config import ConfigError, load_settings, normalize_db_url


@pytest.fixture(autouse=True)
def clean_env(monkeypatch, tmp_path):
    for var in ("FLOW_DAGS_FOLDER", "FLOW_DB_URL", "FLOW_LOG_FOLDER", "FLOW_PARALLELISM", "FLOW_CONFIG",
                "FLOW_DEFAULT_TIMEZONE", "FLOW_PAUSED_AT_CREATION"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    monkeypatch.delenv("XDG_CONFIG_HOME", raising=False)
    monkeypatch.delenv("XDG_DATA_HOME", raising=False)


def test_per_user_defaults_with_nothing_set(tmp_path):
    s = load_settings()
    home = tmp_path / "home"
    assert s.dags_folder == str(home / ".config/flowd/dags")
    assert s.db_url == f"sqlite:///{home}/.local/share/flowd/flow.db"
    assert s.log_folder == str(home / ".local/share/flowd/logs")
    assert s.sources["db_url"] == "default"


def test_file_then_environment_then_flags_win(tmp_path, monkeypatch):
    cfg = tmp_path / "flowd.toml"
    cfg.write_text('dags_folder = "/from/file"\nparallelism = 4\n[flowd]\n')
    monkeypatch.setenv("FLOW_CONFIG", str(cfg))
    s = load_settings()
    assert (s.dags_folder, s.parallelism, s.sources["parallelism"]) == ("/from/file", 4, str(cfg))
    monkeypatch.setenv("FLOW_DAGS_FOLDER", "/from/env")
    monkeypatch.setenv("FLOW_PARALLELISM", "8")
    s = load_settings()
    assert (s.dags_folder, s.parallelism, s.sources["dags_folder"]) == ("/from/env", 8, "$FLOW_DAGS_FOLDER")
    s = load_settings({"dags_folder": "/from/flag", "parallelism": None})
    assert (s.dags_folder, s.parallelism, s.sources["dags_folder"]) == ("/from/flag", 8, "command line")


def test_flowd_table_in_the_file_is_read(tmp_path):
    cfg = tmp_path / "flowd.toml"
    cfg.write_text('[flowd]\nparallelism = 3\n')
    assert load_settings(config_file=cfg).parallelism == 3


@pytest.mark.parametrize("content,needle", [
    ("parallelism = 0\n", "parallelism"),
    ("parallelism = 'many'\n", "parallelism"),
    ("no_such_setting = 1\n", "unknown setting 'no_such_setting'"),
    ("this is = not toml =\n", "cannot read configuration file"),
])
def test_bad_values_name_the_setting_and_the_file(tmp_path, content, needle):
    cfg = tmp_path / "flowd.toml"
    cfg.write_text(content)
    with pytest.raises(ConfigError, match=needle) as info:
        load_settings(config_file=cfg)
    assert str(cfg) in str(info.value)


def test_bad_environment_value_names_the_variable(monkeypatch):
    monkeypatch.setenv("FLOW_PAUSED_AT_CREATION", "perhaps")
    with pytest.raises(ConfigError, match=r"\$FLOW_PAUSED_AT_CREATION"):
        load_settings()


@pytest.mark.parametrize("given,expected_prefix", [
    ("./state.db", "sqlite:////"),
    ("sqlite:///relative.db", "sqlite:////"),
    ("postgresql://u@h/db", "postgresql://u@h/db"),
])
def test_database_urls_are_normalised(given, expected_prefix):
    assert normalize_db_url(given).startswith(expected_prefix)
