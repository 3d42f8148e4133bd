"""Recently delivered alert ids: in memory, optionally persisted to an append-only file.

Why a file as well as Kafka offsets: the offset is committed right after Discord accepted the
message, but a crash between the two would redeliver the alert on restart. The id is appended
(and fsynced) to the file before the commit, so a restart still knows it was posted. Bounded:
only the last `capacity` ids are kept; the file is rewritten when it reaches twice that.
"""

from __future__ import annotations

import logging
import os
from collections import OrderedDict
from pathlib import Path

log = logging.getLogger("cryptomon.alerter.dedupe")


class SentIds:
    def __init__(self, capacity: int = 10000, path: Path | None = None) -> None:
        self.capacity = capacity
        self.path = path
        self._ids: OrderedDict[str, None] = OrderedDict()
        self._lines_in_file = 0
        if path is not None:
            self._load(path)

    def __contains__(self, alert_id: str) -> bool:
        return alert_id in self._ids

    def __len__(self) -> int:
        return len(self._ids)

    def _remember(self, alert_id: str) -> None:
        self._ids[alert_id] = None
        self._ids.move_to_end(alert_id)
        while len(self._ids) > self.capacity:
            self._ids.popitem(last=False)

    def _load(self, path: Path) -> None:
        try:
            with path.open(encoding="utf-8", errors="replace") as fh:
                for line in fh:
                    line = line.rstrip("\n")
                    if line:
                        self._remember(line)
                        self._lines_in_file += 1
        except FileNotFoundError:
            path.parent.mkdir(parents=True, exist_ok=True)
        log.info("dedupe state: %d recent alert ids loaded from %s", len(self._ids), path)

    def add(self, alert_id: str) -> None:
        self._remember(alert_id)
        if self.path is None:
            return
        # Ids are single-line by construction (newlines would split them on reload).
        line = alert_id.replace("\n", " ").replace("\r", " ")
        with self.path.open("a", encoding="utf-8") as fh:
            fh.write(line + "\n")
            fh.flush()
            os.fsync(fh.fileno())
        self._lines_in_file += 1
        if self._lines_in_file >= 2 * self.capacity:
            self._compact()

    def _compact(self) -> None:
        assert self.path is not None
        tmp = self.path.with_suffix(self.path.suffix + ".tmp")
        with tmp.open("w", encoding="utf-8") as fh:
            fh.writelines(i.replace("\n", " ") + "\n" for i in self._ids)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, self.path)
        self._lines_in_file = len(self._ids)
