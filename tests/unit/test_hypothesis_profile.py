"""The property tests run our Hypothesis profile even where CI is set: 300 examples, new ones every
run, from a seed the session header prints and ``--hypothesis-seed`` replays."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

PROPERTY_TEST = """
import os
from hypothesis import given, strategies as st

@given(st.integers(0, 2**62))
def test_draws(number):
    with open(os.environ["DRAWN"], "a") as drawn:
        drawn.write(f"{number}\\n")
"""


def run_session(tmp_path: Path, name: str, *args: str) -> tuple[str, list[int]]:
    """A pytest session with tests/conftest.py as its plugin and CI set, as in CI; its header line
    and the numbers its one property test was given."""
    workdir = tmp_path / name
    workdir.mkdir()
    (workdir / "test_property.py").write_text(PROPERTY_TEST)
    drawn = workdir / "drawn.txt"
    env = {**os.environ, "CI": "true", "PYTHONPATH": str(REPO), "DRAWN": str(drawn)}
    command = [sys.executable, "-m", "pytest", "-p", "tests.conftest", "-p", "no:cacheprovider", *args]
    done = subprocess.run(command, cwd=workdir, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    header = next(line for line in done.stdout.splitlines() if line.startswith("hypothesis seed:"))
    return header, [int(line) for line in drawn.read_text().split()]


def test_ci_draws_300_new_examples_each_run_from_a_printed_seed(tmp_path):
    first_header, first = run_session(tmp_path, "first")
    second_header, second = run_session(tmp_path, "second")
    assert len(first) == len(second) == 300
    assert set(first) != set(second), "the same examples twice: derandomized"
    seed = re.fullmatch(r"hypothesis seed: (\d+) .*--hypothesis-seed=\1\)", first_header).group(1)
    assert first_header != second_header
    replay_header, replayed = run_session(tmp_path, "replay", f"--hypothesis-seed={seed}")
    assert replay_header == first_header
    assert replayed == first
