"""gunicorn settings for the web process (``gunicorn -c python:webapp.gunicorn_conf``).

Threads per worker let one worker stream a large upload while it still
answers status polls; WEB_CONCURRENCY (read by gunicorn itself) sets the
number of worker processes. Logging handlers are configured here, the web
process's entry point.
"""

import logging
import os

worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# Large uploads take a while to stream; the sync timeout would kill them.
timeout = int(os.environ.get("WEB_TIMEOUT", "300"))
accesslog = "-"
logging.basicConfig(
    level=os.environ.get("LOG_LEVEL", "INFO").upper(),
    format="%(asctime)s %(levelname)s %(process)d %(name)s: %(message)s",
)
