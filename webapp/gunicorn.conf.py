"""gunicorn settings for Heroku, Docker and `make serve`.

Heroku sets $PORT and $WEB_CONCURRENCY; the model is loaded in each worker after the fork
(no preload), so every worker owns its LiteRT interpreter.
"""

import os
import tempfile

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
preload_app = False
timeout = 30
graceful_timeout = 20
max_requests = 5000  # recycle workers now and then; jitter avoids all restarting at once
max_requests_jitter = 500
accesslog = None  # the app writes one JSON line per request itself
forwarded_allow_ips = "*"  # Heroku's router is the only peer; ProxyFix trusts one hop


def on_starting(server):
    # Prometheus counters from every worker are summed from files in this folder; it must
    # exist before the workers import prometheus_client.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
