"""The stream thread's priority: lowered for the calling thread alone, by the steps asked, to 19."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from webapp.feed.priority import LOWEST_NICE, lower_this_thread

pytestmark = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="thread priorities are Linux's")


def _nice(tid: int) -> int:
    return os.getpriority(os.PRIO_PROCESS, tid)


def _lowered_in_a_thread(steps: int) -> tuple[int, int]:
    """(the new thread's nice before, after) it lowers itself by ``steps``."""
    seen: list[int] = []

    def run() -> None:
        seen.append(_nice(threading.get_native_id()))
        lower_this_thread(steps)
        seen.append(_nice(threading.get_native_id()))

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    return seen[0], seen[1]


@pytest.mark.parametrize("steps", [1, 5, 10])
def test_the_calling_thread_alone_is_lowered_by_the_steps_asked(steps):
    mine = _nice(threading.get_native_id())
    before, after = _lowered_in_a_thread(steps)
    assert before == mine
    assert after == min(mine + steps, LOWEST_NICE)
    assert _nice(threading.get_native_id()) == mine  # the other threads keep theirs
    assert _nice(os.getpid()) == mine


def test_no_step_leaves_the_priority_as_it_is():
    before, after = _lowered_in_a_thread(0)
    assert after == before


def test_a_thread_is_lowered_to_19_at_most():
    assert _lowered_in_a_thread(100)[1] == LOWEST_NICE
