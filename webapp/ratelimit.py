"""A per-client request limit, in this worker's memory only: client addresses are never stored."""

from __future__ import annotations

import threading
import time
from collections import OrderedDict, deque

MAX_CLIENTS = 10_000  # addresses remembered at once; the least recently seen are forgotten


class RateLimiter:
    """At most `per_minute` requests per client in any 60-second window (sliding)."""

    def __init__(self, per_minute: int, window_s: float = 60.0) -> None:
        self.per_minute = per_minute
        self.window_s = window_s
        self._seen: OrderedDict[str, deque[float]] = OrderedDict()
        self._lock = threading.Lock()

    def allow(self, client: str, now: float | None = None) -> bool:
        now = time.monotonic() if now is None else now
        with self._lock:
            times = self._seen.pop(client, None) or deque()
            while times and times[0] <= now - self.window_s:
                times.popleft()
            allowed = len(times) < self.per_minute
            if allowed:
                times.append(now)
            self._seen[client] = times
            while len(self._seen) > MAX_CLIENTS:
                self._seen.popitem(last=False)
            return allowed
