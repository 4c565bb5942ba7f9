"""The CPU priority of the thread that serves a web worker's streams.

Serving followers is bulk copying: every committed row, to every client that follows its batch.
At the priority of the request threads it competes on equal terms with the runners scoring those
rows (where they share a machine) and with the requests themselves. A few nice steps lower, it
gets the CPU they leave, and all of it when they leave it idle. A follower that falls behind
meanwhile loses nothing: it reads on from the batch's commit log.

Limits (docs/design.md): a nice value orders threads within one cgroup and autogroup session
only, so runners in a container of their own are not behind it; and the thread shares the
worker's GIL, so a request thread waiting for the GIL waits for this thread's next turn on the
CPU, which on a busy machine comes later the lower it runs.
"""

from __future__ import annotations

import logging
import os
import sys
import threading

log = logging.getLogger(__name__)

#: The lowest priority Linux has.
LOWEST_NICE = 19


def lower_this_thread(steps: int) -> None:
    """Lower the calling thread's priority by ``steps`` nice steps (to 19 at most); Linux only,
    where a thread's id names that thread alone to setpriority. 0 leaves it as it is."""
    if steps <= 0 or not sys.platform.startswith("linux"):
        return
    tid = threading.get_native_id()
    try:
        nice = min(os.getpriority(os.PRIO_PROCESS, tid) + steps, LOWEST_NICE)
        os.setpriority(os.PRIO_PROCESS, tid, nice)
    except OSError as exc:  # lowering one's own priority needs no privilege; a sandbox may refuse
        log.warning("the stream thread's priority stays as it is: %s", exc)
