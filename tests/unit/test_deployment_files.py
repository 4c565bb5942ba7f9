"""The Procfile, docker-compose.yml and packaging agree with each other."""

from __future__ import annotations

import configparser
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import yaml

from core.settings import Settings

REPO = Path(__file__).resolve().parents[2]


def procfile() -> dict[str, str]:
    entries = {}
    for line in (REPO / "Procfile").read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, command = line.split(":", 1)
            entries[name.strip()] = command.strip()
    return entries


def shell_argv(command: str, **env: str) -> list[str]:
    """The arguments a POSIX shell (as honcho's and compose's) makes of ``command``."""
    script = f"set -- {command}; printf '%s\\n' \"$@\""
    out = subprocess.run(["sh", "-c", script], env=env, capture_output=True, text=True, check=True)
    return out.stdout.splitlines()


def bind_address(command: str, **env: str) -> str:
    argv = shell_argv(command, **env)
    return argv[argv.index("--bind") + 1]


def test_procfile_runs_web_and_runner():
    entries = procfile()
    assert set(entries) == {"web", "runner"}
    # The same default as the settings' declaration (which `make run` passes on).
    assert f"--bind ${{HOST:-{Settings().host}}}:$PORT" in entries["web"]
    assert "'webapp:create_app()'" in entries["web"]
    assert entries["runner"] == "python -m jobrunner"


def test_web_listens_on_loopback_unless_host_says_otherwise():
    web = procfile()["web"]
    assert bind_address(web, PORT="8000") == "127.0.0.1:8000"
    assert bind_address(web, PORT="8000", HOST="") == "127.0.0.1:8000"
    assert bind_address(web, PORT="8000", HOST="0.0.0.0") == "0.0.0.0:8000"
    assert shell_argv(web, PORT="8000")[-1] == "webapp:create_app()"


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
    # Inside a container loopback is unreachable from the published port: compose says HOST.
    web = services["web"]
    script = web["command"][2].replace("$$", "$").removeprefix("exec ")
    assert bind_address(script, **web["environment"]) == f"0.0.0.0:{web['environment']['PORT']}"
    assert web["ports"] == [f"{web['environment']['PORT']}:{web['environment']['PORT']}"]
    migrate = services["migrate"]
    assert migrate["command"] == ["python", "-m", "core.migrations"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    postgres = services["postgres"]
    assert int(postgres["image"].split(":")[1]) >= 15
    assert "healthcheck" in postgres and postgres["volumes"]
    assert "ports" not in services["runner"]  # so --scale runner=N cannot clash
    dockerfile = (REPO / "Dockerfile").read_text()
    assert dockerfile.startswith("# ") and "FROM python:3.11-slim" in dockerfile
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    for package in {p.strip().split(".")[0] for p in config["options"]["packages"].split(",")}:
        assert f"COPY {package} ./{package}\n" in dockerfile  # every package the install names
    assert "pip install" in dockerfile and "USER app" in dockerfile  # non-root


def test_packaging_declares_the_packages_and_pins_vader():
    config = configparser.ConfigParser()
    config.read(REPO / "setup.cfg")
    packages = [p.strip() for p in config["options"]["packages"].split(",")]
    # Every package directory, subpackages too: one left out would be missing from an installed copy.
    tops = ("core", "webapp", "jobrunner", "cli")
    on_disk = [
        ".".join(init.parent.relative_to(REPO).parts)
        for top in tops
        for init in (REPO / top).rglob("__init__.py")
    ]
    assert sorted(packages) == sorted(on_disk)
    assert {"webapp.auth", "webapp.openapi", "webapp.server", "webapp.upload"} <= set(packages)
    requires = config["options"]["install_requires"]
    assert "vaderSentiment==3.3.2" in requires
    for name in ("flask", "gunicorn", "psycopg[binary]", "psycopg-pool", "pandas"):
        assert name in requires
    for name in ("pytest", "pytest-postgresql"):
        assert name in config["options.extras_require"]["test"]
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    assert set(pyproject) == {"build-system"}
    shlex.split(procfile()["web"])  # well-formed for a shell


def test_the_code_is_ruff_clean():
    # setup.cfg's dev extra brings ruff, and `make test` installs it; its settings are setup.cfg's.
    for check in (["check", "."], ["format", "--check", "."]):
        result = subprocess.run(
            [sys.executable, "-m", "ruff", *check], cwd=REPO, capture_output=True, text=True
        )
        assert result.returncode == 0, result.stdout + result.stderr
