"""The runner processes: claim chunks (CHUNK_SIZE rows each), score them with VADER, commit the results.

``python -m jobrunner`` runs one runner; the queue's statements live in
:mod:`core.batches.queue`, the loop around them in :mod:`jobrunner.runner`,
the scoring in :mod:`jobrunner.scoring` and :mod:`jobrunner.vader_fast`.
What runners share with the web app is in :mod:`core`.
"""
