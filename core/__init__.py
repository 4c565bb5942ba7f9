"""What the web app and the runners share: the batch, the settings, the SQL and the schema.

``core`` owns everything both processes need and neither owns alone: the one
module through which a batch is created, read, changed and finished
(:mod:`core.batches`), every setting (:mod:`core.settings`), the named SQL
statements of ``sql/queries`` (:mod:`core.queries`), the migrator, logging
set-up, and the embedded PostgreSQL that ``make run`` and the tests start.
``webapp`` (HTTP) and ``jobrunner`` (runner processes) import from here,
never from each other.
"""
