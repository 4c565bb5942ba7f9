"""gunicorn settings for the web process (``gunicorn -c python:webapp.gunicorn_conf``).

Threads per worker let one worker stream a large upload while it still
answers status polls; WEB_CONCURRENCY (read by gunicorn itself) sets the
number of worker processes. Logging handlers are configured here, the web
process's entry point.
"""

import os

from jobrunner.logs import configure

worker_class = "gthread"
threads = int(os.environ.get("WEB_THREADS", "4"))
# Large uploads take a while to stream; the sync timeout would kill them.
timeout = int(os.environ.get("WEB_TIMEOUT", "300"))
# Our request log (webapp.request_log) replaces gunicorn's access log.
accesslog = None
configure(os.environ.get("LOG_LEVEL", "INFO").upper(), os.environ.get("LOG_FORMAT", "text").lower())
