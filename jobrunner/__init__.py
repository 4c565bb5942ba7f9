"""The database side of the batch sentiment service.

``jobrunner`` owns everything that talks to PostgreSQL besides HTTP: the
settings, the SQL (loaded from ``sql/``), the migrator, the runner processes
that score chunks, and an embedded PostgreSQL for development and tests. The
``webapp`` package is the HTTP face and imports from here.
"""
