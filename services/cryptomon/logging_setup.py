"""One log line format for every cryptomon service: `LEVEL logger: message`.

Under systemd the journal stamps every line itself, so a timestamp of our own would only repeat
it; anywhere else (a terminal, a file, a test run) the line starts with one. systemd sets
JOURNAL_STREAM=<device>:<inode> when it connects stderr to the journal; a child whose stderr was
redirected elsewhere inherits the variable, so it is compared with the stream when possible.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Mapping
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
