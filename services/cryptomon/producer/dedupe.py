"""Drop trades already produced: reconnects replay recent trades (Coinbase `last_match`,
overlapping sessions), and each trade must land in Kafka once.

Integer trade ids rise strictly per market on Binance and Coinbase, so a per-market
high-water mark is exact and O(1): an id at or below the highest one already emitted is
a replay. Non-integer ids fall back to a bounded set of recently seen ids.
"""

from __future__ import annotations

from collections import OrderedDict


class Deduper:
    def __init__(self, window: int = 100_000) -> None:
        self._high: dict[str, int] = {}
        self._recent: OrderedDict[tuple[str, str], None] = OrderedDict()
        self._window = window
        self.duplicates = 0

    def is_new(self, market: str, trade_id: int | str) -> bool:
        if type(trade_id) is int:
            high = self._high.get(market)
            if high is not None and trade_id <= high:
                self.duplicates += 1
                return False
            self._high[market] = trade_id
            return True
        key = (market, str(trade_id))
        if key in self._recent:
            self.duplicates += 1
            return False
        self._recent[key] = None
        if len(self._recent) > self._window:
            self._recent.popitem(last=False)
        return True

    def high_water(self, market: str) -> int | None:
        return self._high.get(market)
