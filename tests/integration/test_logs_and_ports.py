"""No client writes its own log line (control characters in a path are escaped), and a runner's
metrics port, which needs no token, is reachable from this machine only unless told otherwise."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import urllib.request

import pytest

from tests.helpers import wait_for
from tests.integration.conftest import REPO, WebServer, free_port

FORGED = "2026-01-01 00:00:00,000 INFO 1 webapp.auth: signed in as admin"


def _raw_get(port: int, target: str) -> bytes:
    """A request line sent byte for byte, as no HTTP library would send it."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(f"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n".encode())
        answer = b""
        while chunk := sock.recv(65536):
            answer += chunk
    return answer


@pytest.mark.parametrize("log_format", ["text", "json"])
def test_a_path_with_control_characters_is_one_escaped_log_line(database_url, tmp_path, log_format):
    web = WebServer(database_url, tmp_path, LOG_FORMAT=log_format)
    try:
        encoded = FORGED.replace(" ", "%20").replace(",", "%2C").replace(":", "%3A")
        answer = _raw_get(web.port, f"/batch/x%0a{encoded}%0d%0a{encoded}%1b[2J%e2%80%a8end")
        assert answer.startswith(b"HTTP/1.1 404")
        wait_for(lambda: "end" in web.logfile.read_text(errors="replace"), timeout=30)
    finally:
        web.stop()
    lines = web.logfile.read_text(errors="replace").splitlines()
    assert not [line for line in lines if line.startswith(FORGED)], lines
    logged = [line for line in lines if "signed in as admin" in line]
    assert len(logged) == 1, lines  # the request's one line, holding the whole path
    if log_format == "text":
        assert "webapp.request_log" in logged[0]
        assert "/batch/x\\n2026-01-01" in logged[0] and "\\r\\n2026" in logged[0]
        assert "\\x1b[2J" in logged[0] and "\\u2028end" in logged[0]
    else:
        assert '"path": "/batch/x\\n2026-01-01' in logged[0]


def _listening(port: int) -> list[str]:
    """Local addresses with a socket listening on ``port``, read from /proc/net/tcp (IPv4)."""
    found = []
    for line in open("/proc/net/tcp").read().splitlines()[1:]:  # noqa: SIM115
        local, state = line.split()[1], line.split()[3]
        address, port_hex = local.split(":")
        if state == "0A" and int(port_hex, 16) == port:  # 0A: LISTEN
            found.append(socket.inet_ntoa(bytes.fromhex(address)[::-1]))
    return found


def _answers(host: str, port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://{host}:{port}/metrics", timeout=5) as answer:
            return answer.status == 200
    except OSError:
        return False


@pytest.mark.parametrize("bind", [None, "0.0.0.0"])
def test_runner_metrics_port_binds_loopback_unless_told(database_url, tmp_path, bind):
    port = free_port()
    command = [sys.executable, "-m", "jobrunner", "--metrics-port", str(port)]
    if bind:
        command += ["--metrics-host", bind]
    env = dict(os.environ, DATABASE_URL=database_url, MIGRATE_ON_START="false", PYTHONPATH=str(REPO))
    with (tmp_path / "runner.log").open("wb") as log:
        runner = subprocess.Popen(command, env=env, cwd=REPO, stdout=log, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: _answers("127.0.0.1", port), timeout=60, interval=0.2)
        if bind is None:
            assert _listening(port) == ["127.0.0.1"]
            # 127.0.0.2 is this machine too, but not the address the port is bound to.
            assert not _answers("127.0.0.2", port)
        else:
            assert _listening(port) == ["0.0.0.0"]
            assert _answers("127.0.0.2", port)
    finally:
        runner.send_signal(signal.SIGTERM)
        try:
            runner.wait(timeout=30)
        except subprocess.TimeoutExpired:
            runner.kill()
            runner.wait()
