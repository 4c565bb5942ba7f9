"""`make run`'s process tree for real: honcho, gunicorn and a runner, over HTTP."""

from __future__ import annotations

import os
import signal
import subprocess
import sys

import pytest
import requests

from tests.helpers import make_csv, sample_texts, wait_for
from tests.integration.conftest import REPO, free_port

pytestmark = pytest.mark.integration


def test_devrun_serves_the_readme_flow_and_stops_on_ctrl_c(database_url, tmp_path):
    port = free_port()
    env = dict(
        os.environ,
        DATABASE_URL=database_url,
        PORT=str(port),
        RUNNERS="2",
        PYTHONPATH=str(REPO),
        POLL_SECONDS="0.5",
    )
    log = open(tmp_path / "devrun.log", "wb")  # noqa: SIM115
    proc = subprocess.Popen(
        [sys.executable, "-m", "core.devrun"],
        env=env,
        cwd=REPO,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    base = f"http://127.0.0.1:{port}"
    try:

        def up() -> bool:
            assert proc.poll() is None, (tmp_path / "devrun.log").read_text(errors="replace")
            try:
                return requests.get(f"{base}/batch/nope", timeout=1).status_code == 404
            except requests.ConnectionError:
                return False

        wait_for(up, timeout=60, interval=0.2)
        csv_path = tmp_path / "reviews.csv"
        csv_path.write_bytes(make_csv(sample_texts(2_000)))
        # curl -F "file=@reviews.csv" http://127.0.0.1:8000/batch/upload
        with csv_path.open("rb") as handle:
            answer = requests.post(
                f"{base}/batch/upload", files={"file": ("reviews.csv", handle)}, timeout=30
            )
        assert answer.status_code == 202
        batch = answer.json()
        assert answer.headers["Location"] == f"/batch/{batch['batch_id']}"
        status = wait_for(
            lambda: (
                (s := requests.get(f"{base}{answer.headers['Location']}", timeout=5).json())["status"]
                == "completed"
                and s
            ),
            timeout=90,
            interval=0.2,
        )
        assert sum(status["summary"].values()) == 2_000
        page = requests.get(f"{base}/batch/{batch['batch_id']}/results?page=2&per_page=100", timeout=5)
        assert [r["row"] for r in page.json()["results"]] == list(range(101, 201))
        assert 'rel="next"' in page.headers["Link"]
        # curl --data-binary @reviews.csv -H 'Content-Type: text/csv' .../batch/upload
        answer = requests.post(
            f"{base}/batch/upload",
            data=csv_path.read_bytes(),
            headers={"Content-Type": "text/csv"},
            timeout=30,
        )
        assert answer.status_code == 202
        missing = requests.get(f"{base}/batch/{batch['batch_id']}x", timeout=5)
        assert missing.status_code == 404
        assert missing.headers["Content-Type"] == "application/problem+json"
    finally:
        # Ctrl-C in a terminal signals the whole foreground process group.
        os.killpg(proc.pid, signal.SIGINT)
        code = proc.wait(timeout=30)
        log.close()
    output = (tmp_path / "devrun.log").read_text(errors="replace")
    assert code in (0, 130), output
    assert "runner.1" in output and "runner.2" in output, output
