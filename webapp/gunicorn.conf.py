"""gunicorn settings for Heroku, Docker and `make serve`.

Heroku sets $PORT and $WEB_CONCURRENCY; the model is loaded in each worker after the fork
(no preload), so every worker owns its LiteRT interpreter.
"""

import os
import tempfile
from collections import Counter

bind = f"0.0.0.0:{os.environ.get('PORT', '8000')}"
workers = int(os.environ.get("WEB_CONCURRENCY", "2"))
# Threads, not plain sync workers: a client that trickles its upload ties up one thread, not a
# whole worker (bench/slow_clients.py measures both; docs/benchmarks.md). Inference stays one
# at a time per worker (the LiteRT lock), so threads cost no model memory; the Procfile's
# MALLOC_ARENA_MAX=2 keeps glibc from giving each of the threads its own heap.
worker_class = "gthread"
threads = int(os.environ.get("GUNICORN_THREADS", "16"))
preload_app = False
timeout = 30
graceful_timeout = 20
max_requests = 5000  # recycle workers now and then; jitter avoids all restarting at once
max_requests_jitter = 500
accesslog = None  # the app writes one JSON line per request itself
# gunicorn's own reading of X-Forwarded-Proto: only from the local host (its default). The
# app's ProxyFix decides what to trust from real proxies (PROXY_HOPS, webapp/security.py).
forwarded_allow_ips = os.environ.get("FORWARDED_ALLOW_IPS", "127.0.0.1,::1")


def worker_cpu(allowed: set[int], workers: int, taken: list[int]) -> int | None:
    """The CPU a new worker is pinned to (the one fewest living workers hold), or None to
    leave it to the scheduler.

    Only with one worker per CPU this process may use, each running one LiteRT thread: then
    Linux now and then runs two busy workers on one core while another idles. With more CPUs
    than workers (a shared dyno shows 8 CPUs to 2 workers) or LiteRT threads > 1 the scheduler
    is better placed. Explanations, which run many inferences a request, lose throughput
    pinned: PIN_WORKERS=0 turns it off (docs/operations.md).
    Least-held rather than free: on a HUP reload the new workers are spawned while the old
    ones still hold every CPU, and they must still spread out.
    """
    if os.environ.get("PIN_WORKERS", "1") == "0" or os.environ.get("LITERT_THREADS", "1") != "1":
        return None
    if workers != len(allowed):
        return None
    held = Counter(cpu for cpu in taken if cpu in allowed)
    return min(sorted(allowed), key=lambda cpu: held[cpu])


def pre_fork(server, worker):
    # In the master, before the fork: it alone knows every living worker's CPU, so two workers
    # spawned at once, or a recycled worker's replacement, never share one. (Worker counts
    # changed at run time with TTIN/TTOU keep the workers' CPUs until they are recycled.)
    worker.cpu = None
    if hasattr(os, "sched_getaffinity"):
        taken = [w.cpu for w in server.WORKERS.values() if getattr(w, "cpu", None) is not None]
        worker.cpu = worker_cpu(os.sched_getaffinity(0), server.num_workers, taken)


def post_fork(server, worker):
    # Before the app loads: the worker's threads (gthread's and LiteRT's) inherit the CPU.
    if worker.cpu is None:
        return
    try:
        os.sched_setaffinity(0, {worker.cpu})
    except OSError as exc:  # the CPU set changed since pre_fork: serve unpinned, do not fail
        server.log.warning("worker %s not pinned to CPU %s: %s", worker.pid, worker.cpu, exc)
        worker.cpu = None
        return
    server.log.info("worker %s pinned to CPU %s", worker.pid, worker.cpu)


def on_starting(server):
    # Prometheus counters from every worker are summed from files in this folder; it must
    # exist before the workers import prometheus_client.
    if not os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
        os.environ["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix="prometheus-")


def child_exit(server, worker):
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)
