"""Do slow clients tie up the web app? gunicorn from the Procfile, on loopback only.

    python bench/slow_clients.py [--slow 4] [--seconds 12] [--model-dir saved_models]

For each worker setup (gunicorn's sync workers, then gthread with threads), opens --slow
connections that send their headers and then trickle a multipart body one byte every 0.2 s
(each stops after --seconds), and meanwhile sends ordinary prediction requests one after the
other. Prints how many ordinary requests succeeded, their median and worst latency, and
whether gunicorn had to kill a stuck worker. Bounded: loopback, --slow connections, --seconds.
"""

from __future__ import annotations

import argparse
import http.client
import os
import signal
import socket
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from machine import print_header
from serve import ROOT, database_env, free_port, jpeg_256, multipart, start_ours

BOUNDARY = "benchboundary7d1f"


def trickle(port: int, body: bytes, seconds: float, stop: threading.Event) -> None:
    sock = socket.create_connection(("127.0.0.1", port), timeout=5)
    head = (
        f"POST /api/v1/predict HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {len(body)}\r\n"
        f"Content-Type: multipart/form-data; boundary={BOUNDARY}\r\n\r\n"
    )
    end = time.monotonic() + seconds
    try:
        sock.sendall(head.encode())
        for byte in body:
            if stop.is_set() or time.monotonic() > end:
                break
            sock.sendall(bytes([byte]))
            time.sleep(0.2)
    except OSError:
        pass  # the server closed it: fine, that is one answer
    finally:
        sock.close()


def ordinary(port: int, body: bytes, seconds: float) -> tuple[int, int, list[float]]:
    ok = failed = 0
    took = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        start = time.perf_counter()
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
            conn.request(
                "POST",
                "/api/v1/predict",
                body,
                {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"},
            )
            status = conn.getresponse().status
            conn.close()
        except OSError:
            status = 0
        took.append(time.perf_counter() - start)
        ok, failed = (ok + 1, failed) if status == 200 else (ok, failed + 1)
        time.sleep(0.05)
    return ok, failed, took


def run(setup: str, extra_args: str, slow: int, seconds: float, model_dir: Path) -> None:
    os.environ["GUNICORN_CMD_ARGS"] = extra_args
    port = free_port()
    body = multipart(jpeg_256())
    with tempfile.TemporaryDirectory() as tmp:
        # Params of its own, as bench/serve.py's: the repository's params.yaml is its fork's.
        database = database_env("sqlite", Path(tmp), "")
        proc = start_ours(port, 2, 1, database, model_dir)
        stop = threading.Event()
        slow_threads = [
            threading.Thread(target=trickle, args=(port, body, seconds, stop)) for _ in range(slow)
        ]
        try:
            for t in slow_threads:
                t.start()
            time.sleep(0.5)  # let them occupy whatever they occupy
            ok, failed, took = ordinary(port, body, seconds - 1)
        finally:
            stop.set()
            for t in slow_threads:
                t.join()
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    worst = max(took) * 1000 if took else float("nan")
    print(
        f"{setup:34s} {slow} slow clients: {ok} ordinary requests ok, {failed} failed; "
        f"median {statistics.median(took) * 1000:.0f} ms, worst {worst:.0f} ms"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--slow", type=int, default=4)
    parser.add_argument("--seconds", type=float, default=12.0)
    parser.add_argument("--model-dir", type=Path, default=ROOT / "saved_models")
    args = parser.parse_args()
    print_header("gunicorn", "Flask", "LiteRT")
    # --threads 1: gunicorn silently turns sync workers into gthread ones when threads > 1.
    sync = "--worker-class sync --threads 1"
    run("sync, 2 workers", sync, args.slow, args.seconds, args.model_dir)
    run("gthread, 2 workers x 16 threads (ours)", "", args.slow, args.seconds, args.model_dir)


if __name__ == "__main__":
    main()
