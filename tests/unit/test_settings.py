"""Settings are declared once: parsing from the environment, and the manual's settings table."""

from __future__ import annotations

import configparser
import re
from dataclasses import fields, replace
from pathlib import Path

import pytest

from core.setting_values import parse_bool, parse_duration
from core.settings import Settings, markdown_table

REPO = Path(__file__).resolve().parents[2]
SETTINGS_PAGE = REPO / "docs" / "settings.md"
DEVELOPMENT_PAGE = REPO / "docs" / "development.md"


def test_the_settings_page_table_is_the_declaration():
    """Regenerate with `python -m core.settings` when a setting changes."""
    text = SETTINGS_PAGE.read_text(encoding="utf-8")
    match = re.search(r"<!-- settings:begin -->\n(.*?)<!-- settings:end -->", text, re.S)
    assert match, "docs/settings.md has no settings table between the settings markers"
    assert match.group(1) == markdown_table(), (
        "docs/settings.md differs from core/settings.py: paste `python -m core.settings` between its markers"
    )


def test_every_setting_has_a_variable_and_a_doc_and_names_are_unique():
    envs = [f.metadata["env"] for f in fields(Settings)]
    assert len(envs) == len(set(envs))
    assert all(re.fullmatch(r"[A-Z][A-Z0-9_]+", env) for env in envs)
    assert all(f.metadata["doc"] for f in fields(Settings))


def test_defaults_and_values_from_the_environment():
    assert Settings.from_env({}) == Settings()
    read = Settings.from_env(
        {"CHUNK_SIZE": "250", "LEASE_SECONDS": "2.5", "MIGRATE_ON_START": "off", "RESULTS_TTL": "7d"}
    )
    assert (read.chunk_size, read.lease_seconds, read.migrate_on_start) == (250, 2.5, False)
    assert read.results_ttl_seconds == 7 * 86400
    assert Settings.from_env({"RESULTS_TTL": "off"}).results_ttl_seconds == 0
    assert Settings.from_env({"LOG_LEVEL": "debug", "LOG_FORMAT": "JSON"}).log_level == "DEBUG"


@pytest.mark.parametrize(
    ("env", "value"),
    [
        ("CHUNK_SIZE", "0"),
        ("CHUNK_SIZE", "ten"),
        ("MIGRATE_ON_START", "maybe"),
        ("RESULTS_TTL", "soon"),
        ("LEASE_SECONDS", "0"),
        ("POLL_SECONDS", "-1"),
        ("DB_POOL_TIMEOUT", "nan"),
        ("LEASE_SECONDS", "inf"),
        ("MAX_EXPIRES_AFTER", "nan"),
        ("RESULTS_TTL", "infd"),
        ("API_TOKEN", "x" * 31),
        ("FORWARDED_ALLOW_IPS", "10.0.0.1/8"),
        ("FORWARDED_ALLOW_IPS", "proxy.example"),
    ],
)
def test_a_bad_value_names_its_variable(env, value):
    with pytest.raises(ValueError, match=env):
        Settings.from_env({env: value})


def test_api_token_needs_32_characters_and_is_never_shown():
    assert Settings.from_env({"API_TOKEN": "x" * 32}).api_token == "x" * 32
    with pytest.raises(ValueError, match="at least 32 characters") as refused:
        Settings.from_env({"API_TOKEN": "short-secret"})
    assert "short-secret" not in str(refused.value)
    with pytest.raises(ValueError, match="API_TOKEN"):  # a test's or an embedder's settings too
        replace(Settings(), api_token="short")


def test_a_chunk_of_the_longest_rows_fits_one_postgresql_value():
    from core import settings_web
    from jobrunner import chunk_scoring
    from webapp.upload import csv_records

    # The bound counts every kept column the upload lets through, at its longest, escaped.
    kept = csv_records.MAX_KEPT_COLUMNS * 6 * (csv_records.MAX_KEPT_NAME_CHARS + csv_records.MAX_KEPT_CHARS)
    assert kept <= settings_web.KEPT_COLUMNS_JSON_CHARS
    # And a failed row's error at its longest, escaped, with its member's name.
    assert 6 * chunk_scoring.MAX_ERROR_CHARS + len(',"error":""') <= settings_web.ERROR_JSON_CHARS
    assert Settings.from_env({"CHUNK_SIZE": "1000"}).chunk_size == 1000
    with pytest.raises(ValueError, match="CHUNK_SIZE, MAX_TEXT_CHARS") as refused:
        Settings.from_env({"CHUNK_SIZE": "1000", "MAX_TEXT_CHARS": "200000"})
    assert "past PostgreSQL's 1,073,741,823" in str(refused.value)
    with pytest.raises(ValueError, match="CHUNK_SIZE"):
        Settings.from_env({"CHUNK_SIZE": "2000"})


def test_one_reading_of_true_and_false_for_settings_and_parameters():
    assert [parse_bool(w) for w in ("1", "TRUE", "yes", "On")] == [True] * 4
    assert [parse_bool(w) for w in ("0", "false", "No", "off", "")] == [False] * 5
    with pytest.raises(ValueError):
        parse_bool("maybe")
    assert parse_duration("90") == 90 and parse_duration("30m") == 1800


def installed_packages() -> list[str]:
    """The top-level packages setup.cfg installs (``[options] packages``)."""
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg", encoding="utf-8")
    names = [name.strip() for name in config["options"]["packages"].split(",")]
    return [name for name in names if name and "." not in name]


def test_the_manual_layout_lists_every_module():
    text = DEVELOPMENT_PAGE.read_text(encoding="utf-8")
    layout = text[text.index("## Layout") : text.index("## Tests")]
    root = REPO
    packages = installed_packages()
    assert {"core", "webapp", "jobrunner", "cli"} <= set(packages)
    modules = [
        path.relative_to(root).as_posix()
        for package in packages
        for path in sorted((root / package).rglob("*.py"))
        if path.name != "__init__.py" or path.parent.name == "webapp"
    ]
    missing = [module for module in modules if f"`{module}`" not in layout]
    assert missing == []
