"""bench.profile's reading of py-spy's collapsed stacks: each sample's phase, the first whose
frame is on its stack, and the innermost function."""

from __future__ import annotations

from pathlib import Path

from bench.profile import _phase, _samples

RULES = "FastVader.polarity_scores (jobrunner/vader_fast.py:113)"
SCORE = "score_array (jobrunner/scoring.py:104)"
WORK = "Runner._work (jobrunner/runner.py:170)"
SERVE = "RoundPipe._serve (jobrunner/round_pipe.py:140)"
HOUSE = "RoundPipe._housekeeping (jobrunner/round_pipe.py:245)"
WAIT = "Connection.wait (psycopg/connection.py:400)"


def test_a_sample_goes_to_the_first_phase_whose_frame_is_on_its_stack():
    assert _phase(";".join([WORK, SCORE, RULES])) == "scoring: the VADER rules"
    assert _phase(";".join([WORK, SCORE])) == "scoring: around the rules (factorize, arrays)"
    # Housekeeping runs on the round-pipe thread: it is listed first, so it is told apart.
    assert _phase(";".join([SERVE, HOUSE, WAIT])) == "housekeeping and webhooks"
    assert _phase(";".join([SERVE, WAIT])) == "queue: claims and finishes (the round-pipe thread)"
    # A function of that name in another file is not the phase's.
    assert _phase("polarity_scores (vaderSentiment/vaderSentiment.py:240)").startswith("other")


def test_samples_are_counted_by_phase_and_by_innermost_function(tmp_path: Path):
    raw = tmp_path / "runner.txt"
    raw.write_text(f"{WORK};{SCORE};{RULES} 7\n{SERVE};{WAIT} 3\n{SERVE};{HOUSE};{WAIT} 2\n")
    phases, functions = _samples(raw)
    assert phases == {
        "scoring: the VADER rules": 7,
        "queue: claims and finishes (the round-pipe thread)": 3,
        "housekeeping and webhooks": 2,
    }
    assert functions == {
        "FastVader.polarity_scores (jobrunner/vader_fast.py)": 7,
        "Connection.wait (psycopg/connection.py)": 5,
    }
