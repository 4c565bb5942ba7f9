"""gunicorn settings for the web process (``gunicorn -c python:webapp.gunicorn_conf``).

Threads per worker let one worker stream a large upload while it still
answers status polls; WEB_CONCURRENCY (read by gunicorn itself) sets the
number of worker processes. Logging handlers are configured here, the web
process's entry point.
"""

import os
import shutil
import tempfile

from core.logs import configure
from core.settings import Settings

_settings = Settings.from_env()
worker_class = "gthread"
threads = _settings.web_threads
# Large uploads take a while to stream; the sync timeout would kill them.
timeout = _settings.web_timeout
# Our request log (webapp.request_log) replaces gunicorn's access log.
accesslog = None
configure(_settings.log_level, _settings.log_format)

# prometheus-client multiprocess mode: every worker writes its counters to
# files here and /metrics sums them. A fresh directory per server start.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sentiment-metrics-")


def on_exit(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
