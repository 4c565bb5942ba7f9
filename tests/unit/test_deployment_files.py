"""The Procfile, docker-compose.yml and packaging agree with each other."""

from __future__ import annotations

import configparser
import shlex
import tomllib
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def test_procfile_runs_web_and_runner():
    entries = procfile()
    assert set(entries) == {"web", "runner"}
    assert "--bind 0.0.0.0:$PORT" in entries["web"]
    assert "'webapp:create_app()'" in entries["web"]
    assert entries["runner"] == "python -m jobrunner"


def test_compose_commands_match_the_procfile():
    compose = yaml.safe_load((REPO / "docker-compose.yml").read_text())
    services = compose["services"]
    for name, command in procfile().items():
        shell, flag, script = services[name]["command"]
        assert (shell, flag) == ("sh", "-c")
        # Compose turns $$ into $; the shell then sees the Procfile's command.
        assert script.replace("$$", "$") == f"exec {command}"
        assert services[name]["environment"]["DATABASE_URL"].startswith("postgresql://")
        # Migrations run once, in their own service, before web and runners start.
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        assert services[name]["environment"]["MIGRATE_ON_START"] == "false"
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "-m", "core.migrations"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    postgres = services["postgres"]
    assert int(postgres["image"].split(":")[1]) >= 15
    assert "healthcheck" in postgres and postgres["volumes"]
    assert "ports" not in services["runner"]  # so --scale runner=N cannot clash
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    assert "pip install" in dockerfile and "USER app" in dockerfile  # non-root


def test_packaging_declares_the_packages_and_pins_vader():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    packages = [p.strip() for p in config["options"]["packages"].split(",")]
    assert packages == ["core", "webapp", "jobrunner"]
    requires = config["options"]["install_requires"]
    assert "vaderSentiment==3.3.2" in requires
    for name in ("flask", "gunicorn", "psycopg[binary]", "psycopg-pool", "pandas"):
        assert name in requires
    for name in ("pytest", "pytest-postgresql"):
        assert name in config["options.extras_require"]["test"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(pyproject) == {"build-system"}
    shlex.split(procfile()["web"])  # well-formed for a shell
