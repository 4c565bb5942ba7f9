"""A runner's name: RUNNER_NAME, or host:pid."""

from __future__ import annotations

import os
import socket


def default_runner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"
