"""Drop trades already produced: reconnects replay recent trades (Coinbase `last_match`, Kraken's
snapshot, overlapping sessions), and each trade must land in Kafka once.

Integer trade ids rise per market on every exchange this package speaks, so a per-market
high-water mark is exact and O(1): an id at or below the highest one already emitted is a
replay. The mark is bounded (issue 15, defect 5): one bogus or re-based id must not turn every
later trade into a "duplicate" forever. Only ids within `max_jump` below the mark count as
replays. An id farther away (above or below) is emitted once and logged, and the mark stays where
it was until `confirmations` such ids in a row, close to each other, show that the exchange
really moved its ids; then the mark moves to them. A normal id in between discards the
candidates (the far id was a stray). Non-integer ids fall back to a bounded set of recent ids.
"""

from __future__ import annotations

import logging
import time
from collections import OrderedDict

log = logging.getLogger("cryptomon.producer.dedupe")

DEFAULT_MAX_JUMP = 10_000_000
DEFAULT_CONFIRMATIONS = 3


class Deduper:
    def __init__(self, window: int = 100_000, max_jump: int = DEFAULT_MAX_JUMP,
                 confirmations: int = DEFAULT_CONFIRMATIONS, name: str = "") -> None:
        self.marks: dict[str, int] = {}       # per-market high-water mark of integer ids
        self.far: dict[str, list[int]] = {}  # per-market far ids awaiting confirmation
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._window = window
        self.max_jump = max_jump
        self.confirmations = confirmations
        self.name = name
        self.rebased = 0    # marks moved after confirmations
        self.strays = 0     # far ids that were not confirmed
        # Trades before this are history (a snapshot of them on the first subscribe is not produced).
        self.started_ms = time.time_ns() // 1_000_000

    def is_new(self, market: str, trade_id: int | str) -> bool:
        if type(trade_id) is int:
            high = self.marks.get(market)
            if high is None:
                self.marks[market] = trade_id
                return True
            if high < trade_id <= high + self.max_jump:
                self.marks[market] = trade_id
                if self.far:
                    self._drop_far(market, high)
                return True
            if high - self.max_jump <= trade_id <= high:
                return False
            return self._far_id(market, trade_id, high)
        key = (market, trade_id)
        if key in self._recent:
            return False
        self._recent[key] = None
        if len(self._recent) > self._window:
            self._recent.popitem(last=False)
        return True

    def seed(self, market: str, trade_id: int) -> None:
        """Set the mark without emitting (a snapshot of old trades on the first subscribe)."""
        if market not in self.marks:
            self.marks[market] = trade_id

    def _drop_far(self, market: str, high: int) -> None:
        far = self.far.pop(market, None)
        if far:
            self.strays += len(far)
            log.warning("%s %s: %d far trade id(s) %s were strays: ids continue at the mark %d",
                        self.name, market, len(far), far[:3], high)

    def _far_id(self, market: str, trade_id: int, high: int) -> bool:
        far = self.far.setdefault(market, [])
        if trade_id in far:
            return False
        if far and abs(trade_id - far[-1]) > self.max_jump:
            self.strays += len(far)
            far.clear()
        far.append(trade_id)
        if len(far) < self.confirmations:
            log.warning("%s %s: trade id %d is far from the mark %d (more than %d): emitted, "
                        "mark kept until %d such ids in a row confirm a re-based id range",
                        self.name, market, trade_id, high, self.max_jump, self.confirmations)
            return True
        self.marks[market] = max(far)
        self.rebased += 1
        log.warning("%s %s: trade ids re-based: mark moved from %d to %d after %d confirmations",
                    self.name, market, high, self.marks[market], len(far))
        del self.far[market]
        return True
