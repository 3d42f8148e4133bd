"""One log line format for every cryptomon service: `LEVEL logger: message`, and one throttle
(`LogThrottle`) for errors that repeat every few seconds.

Under systemd the journal stamps every line itself, so a timestamp of our own would only repeat
it; anywhere else (a terminal, a file, a test run) the line starts with one. systemd sets
JOURNAL_STREAM=<device>:<inode> when it connects stderr to the journal; a child whose stderr was
redirected elsewhere inherits the variable, so it is compared with the stream when possible.
"""

from __future__ import annotations

import logging
import math
import os
import sys
import threading
import time
from collections.abc import Callable, Hashable, Iterable, Mapping
from typing import TextIO

BASE_FORMAT = "%(levelname)s %(name)s: %(message)s"
TIMED_FORMAT = "%(asctime)s " + BASE_FORMAT


def under_journald(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> bool:
    """True when `stream` (default stderr) goes to the journal."""
    env = os.environ if env is None else env
    value = env.get("JOURNAL_STREAM", "").strip()
    if not value:
        return False
    stream = sys.stderr if stream is None else stream
    try:
        dev, ino = (int(part) for part in value.split(":"))
        st = os.fstat(stream.fileno())
    except (ValueError, OSError, AttributeError):
        return True  # cannot compare (no real file descriptor): trust systemd's variable
    return (st.st_dev, st.st_ino) == (dev, ino)


def log_format(stream: TextIO | None = None, env: Mapping[str, str] | None = None) -> str:
    return BASE_FORMAT if under_journald(stream, env) else TIMED_FORMAT


def setup_logging(level: str | int = "INFO", *, stream: TextIO | None = None, env: Mapping[str, str] | None = None,
                  filters: Iterable[logging.Filter] = ()) -> logging.Handler:
    """Replace the root logger's handlers with one stderr handler in the shared format."""
    stream = sys.stderr if stream is None else stream
    handler = logging.StreamHandler(stream)
    formatter = logging.Formatter(log_format(stream, env))
    formatter.default_msec_format = "%s.%03d"
    handler.setFormatter(formatter)
    for f in filters:
        handler.addFilter(f)
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    return handler


class LogThrottle:
    """At most one log line per key every `interval_s` seconds.

    librdkafka hands its error callback the same connection error every few seconds for as long
    as the problem lasts; one line per interval says it just as well. Each key (an error code, a
    kind of problem) has its own clock: a new kind of error is logged at once. The first call for
    a key, and the first one `interval_s` or more after the last logged one, returns True.
    `clock` returns seconds (default time.monotonic; tests pass a fake one).
    """

    def __init__(self, interval_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        if isinstance(interval_s, bool) or not isinstance(interval_s, (int, float)) \
                or not math.isfinite(interval_s) or interval_s <= 0:
            raise ValueError(f"LogThrottle interval_s must be a positive number of seconds, got {interval_s!r}")
        self.interval_s = float(interval_s)
        self._clock = clock
        self._last_logged: dict[Hashable, float] = {}
        # A producer's error_cb can run on its poller thread and, before that starts, on the caller's.
        self._lock = threading.Lock()

    def should_log(self, key: Hashable) -> bool:
        """True when a line for `key` may be logged now (and counts it as logged)."""
        now = self._clock()
        with self._lock:
            last = self._last_logged.get(key)
            if last is not None and now - last < self.interval_s:
                return False
            self._last_logged[key] = now
            return True
