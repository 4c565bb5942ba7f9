"""gunicorn settings for the web process (``gunicorn -c python:webapp.server.gunicorn_conf``).

Threads per worker let one worker stream a large upload while it still
answers status polls; WEB_CONCURRENCY (read by gunicorn itself) sets the
number of worker processes. The worker class is gthread's, receiving each
request in its event loop before a thread takes it (webapp.server.worker), so slow
or stalled clients cannot hold the threads. Logging handlers are configured
here, the web process's entry point.
"""

import logging
import os
import shutil
import socket
import tempfile

from core.logs import configure
from core.settings import Settings

_settings = Settings.from_env()
worker_class = "webapp.server.worker.ReceivingThreadWorker"
threads = _settings.web_threads
# Large uploads take a while to stream; the sync timeout would kill them.
timeout = _settings.web_timeout
# X-Forwarded-Proto is believed from these proxies only (none unless FORWARDED_ALLOW_IPS names
# them, where gunicorn alone would trust 127.0.0.1); webapp.forwarded reads the same list.
forwarded_allow_ips = _settings.forwarded_allow_ips
# Our request log (webapp.request_log) replaces gunicorn's access log.
accesslog = None
configure(_settings.log_level, _settings.log_format)

# Uploads and exports hold a thread and a pool connection for as long as they
# last: when their caps could take them all, nothing would be left for status
# polls and pages.
_heavy = _settings.max_uploads + _settings.max_exports
if _heavy >= min(_settings.web_threads, _settings.db_pool_size):
    logging.getLogger(__name__).warning(
        "MAX_UPLOADS + MAX_EXPORTS (%d) leave no thread or pool connection for other requests "
        "(WEB_THREADS %d, DB_POOL_SIZE %d)",
        _heavy,
        _settings.web_threads,
        _settings.db_pool_size,
    )

# prometheus-client multiprocess mode: every worker writes its counters to
# files here and /metrics sums them. A fresh directory per server start.
if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="sentiment-metrics-")


def on_exit(server):
    shutil.rmtree(os.environ["PROMETHEUS_MULTIPROC_DIR"], ignore_errors=True)


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def when_ready(server):
    """Warn, loudly, when the service listens beyond loopback and nobody needs a key to use it."""
    from core.clients import open_to_the_network_warning
    from core.connections import conninfo

    listening = [sock.sock.getsockname()[:2] for sock in server.LISTENERS if sock.FAMILY != socket.AF_UNIX]
    warning = open_to_the_network_warning(conninfo(_settings, "runner"), _settings.api_token, listening)
    if warning:
        logging.getLogger(__name__).warning(warning)
