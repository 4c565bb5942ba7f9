"""Settings shared by every test: the Hypothesis profile and seed."""

from __future__ import annotations

import random

import pytest
from hypothesis import settings

# Our profile is registered and loaded here explicitly: with CI set, Hypothesis would otherwise
# load its own `ci` profile (100 examples, derandomized: the same inputs on every run). Property
# tests run 300 examples, new ones on every run, CI included, drawn from the seed the session
# header prints; `pytest --hypothesis-seed=N` replays a run, and on a failure Hypothesis prints the
# failing example with a blob for @reproduce_failure.
# `pytest --hypothesis-profile=thorough` runs ten times as many.
settings.register_profile("sentiment", max_examples=300, deadline=None, derandomize=False, print_blob=True)
settings.register_profile("thorough", settings.get_profile("sentiment"), max_examples=3000)
settings.load_profile("sentiment")


@pytest.hookimpl(tryfirst=True)
def pytest_configure(config: pytest.Config) -> None:
    """Draw the session's seed (unless --hypothesis-seed gave one) before Hypothesis's plugin reads it."""
    if config.getoption("hypothesis_seed", None) is None:
        config.option.hypothesis_seed = str(random.SystemRandom().randrange(2**32))


def pytest_report_header(config: pytest.Config) -> str:
    seed = config.getoption("hypothesis_seed")
    return f"hypothesis seed: {seed} (new examples every run; replay with --hypothesis-seed={seed})"
