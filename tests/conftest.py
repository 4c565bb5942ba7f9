"""Settings shared by every test."""

from hypothesis import settings

# Property tests run 300 examples by default (CI);
# `pytest --hypothesis-profile=thorough` runs ten times as many.
settings.register_profile("default", max_examples=300, deadline=None)
settings.register_profile("thorough", max_examples=3000, deadline=None)
