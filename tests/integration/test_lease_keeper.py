"""The lease keeper (jobrunner/lease_keeper.py) against a real PostgreSQL reached through a proxy
the test freezes with SIGSTOP: a renewal stuck on a dead connection never holds up the runner's
commit, which releases the chunks it commits from the keeper."""

from __future__ import annotations

import os
import signal
import threading
import time
from pathlib import Path

from bench.delay_proxy import delaying_proxy, unix_socket_target, via_proxy
from core.batches.queue import claim_chunks
from jobrunner.lease_keeper import LeaseKeeper
from tests.helpers import make_csv, sample_texts, wait_for


def _proxy_pid(port: int) -> int:
    """The delaying proxy's process, found by the address it listens on."""
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                command = (entry / "cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if b"bench.delay_proxy" in command and f"127.0.0.1:{port}".encode() in command:
                return int(entry.name)
    raise AssertionError(f"no proxy listening on {port}")


def test_a_hung_renewal_does_not_hold_up_a_release(upload, db, database_url):
    upload(make_csv(sample_texts(300, seed=95)))
    chunks = claim_chunks(db, "test:keeper", 60, limit=3)
    assert len(chunks) == 3
    with delaying_proxy(unix_socket_target(database_url), 0) as port:
        keeper = LeaseKeeper(via_proxy(database_url, port), lease_seconds=0.9)
        keeper.start()
        keeper.hold(chunks)
        wait_for(lambda: keeper.renewed >= 3, timeout=30)  # renewing through the proxy
        proxy = _proxy_pid(port)
        os.kill(proxy, signal.SIGSTOP)
        try:
            # The next renewal (every 0.3 s) now hangs on the frozen connection.
            renewed = keeper.renewed
            time.sleep(1.0)
            assert keeper.renewed == renewed
            releasing = threading.Thread(target=keeper.release, args=(chunks,), daemon=True)
            releasing.start()
            releasing.join(timeout=10)
            assert not releasing.is_alive(), "release waited for the hung renewal"
            assert keeper.held() == []
        finally:
            os.kill(proxy, signal.SIGCONT)
        keeper.stop()
