"""What the dashboard shows, built from Kafka records; thread-safe, no Streamlit in here.

Spread policy: the spread of an asset is `price(second) - price(first)` of the two configured
exchanges (default coinbase minus binance), only between USD-like quotes, with USDT and USDC
treated as 1 USD (Binance trades BTC-USDT, Coinbase BTC-USD). The chart says so in its caption.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from cryptomon.alerter.formatting import parse_time

USD_LIKE = ("USD", "USDT", "USDC")
_QUOTES = ("USDT", "USDC", "USD", "EUR", "BTC", "ETH")
PAIR_MAX_SKEW_MS = 60_000  # prices further apart in time are not compared
SPREAD_POINTS_MAX = 3600  # one point per second and asset: an hour
ALERTS_MAX = 500


def split_symbol(symbol: str) -> tuple[str, str]:
    """`BTC-USDT`, `BTC/USD`, `BTCUSDT` -> (base, quote); unknown -> (symbol, "")."""
    s = symbol.strip().upper()
    for sep in ("-", "/", "_"):
        if sep in s:
            base, _, quote = s.partition(sep)
            return base, quote
    for q in _QUOTES:
        if s.endswith(q) and len(s) > len(q):
            return s[: -len(q)], q
    return s, ""


@dataclass
class Status:
    state: str = "connecting"  # connecting | unreachable | waiting | live
    detail: str = ""
    since: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Snapshot:
    status: Status
    prices: list[dict[str, Any]]
    spreads: list[dict[str, Any]]
    alerts: list[dict[str, Any]]
    spread_label: str
    trades_seen: int
    malformed: int
    missing_topics: tuple[str, ...]
    last_data: float | None


class MarketState:
    def __init__(self, spread_exchanges: tuple[str, str] = ("binance", "coinbase")) -> None:
        self.first, self.second = spread_exchanges
        self._lock = threading.Lock()
        self._prices: dict[tuple[str, str], dict[str, Any]] = {}
        # (exchange, base asset) -> {epoch second: (last price in that second, its ts in ms)}
        self._series: dict[tuple[str, str], dict[int, tuple[Decimal, int]]] = {}
        self._alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_MAX)
        self._alert_ids: OrderedDict[str, None] = OrderedDict()
        self._trades = 0
        self._malformed = 0
        self._last_data: float | None = None
        self.status = Status()
        self.missing_topics: tuple[str, ...] = ()

    # --- status ------------------------------------------------------------------------------
    def set_status(self, state: str, detail: str = "") -> None:
        with self._lock:
            if self.status.state != state or self.status.detail != detail:
                self.status = Status(state, detail)

    @property
    def has_data(self) -> bool:
        return self._last_data is not None

    # --- ingestion ---------------------------------------------------------------------------
    def ingest(self, kind: str, value: bytes | None) -> bool:
        """kind: trades | alerts. Returns False (and counts it) for a record it cannot use."""
        try:
            record = json.loads(value or b"")
            if not isinstance(record, dict):
                raise TypeError("not an object")
            if kind == "trades":
                self._trade(record)
            else:
                self._alert(record)
        except (ValueError, TypeError, KeyError, InvalidOperation, UnicodeDecodeError):
            with self._lock:
                self._malformed += 1
            return False
        return True

    def _trade(self, t: dict[str, Any]) -> None:
        exchange, symbol = str(t["exchange"]).lower(), str(t["symbol"])
        price = Decimal(str(t["price"]))
        if not price.is_finite() or price <= 0:
            raise ValueError("bad price")
        ts = int(t.get("exchange_ts") or t.get("received_ts") or time.time() * 1000)
        base, quote = split_symbol(symbol)
        with self._lock:
            self._trades += 1
            self._last_data = time.time()
            row = self._prices.get((exchange, symbol))
            if row is None or ts >= row["_ts"]:
                self._prices[(exchange, symbol)] = {
                    "exchange": exchange, "symbol": symbol, "price": str(t["price"]),
                    "size": str(t.get("size", "")), "side": str(t.get("side", "")),
                    "time": datetime.fromtimestamp(ts / 1000, UTC), "_ts": ts,
                    "trades": (row["trades"] if row else 0) + 1,
                }
            else:
                row["trades"] += 1
            if quote not in USD_LIKE or exchange not in (self.first, self.second):
                return
            # Last price per second and exchange; the spread is derived when reading, so trades
            # that arrive out of time order (different partitions, backfill) still line up.
            series = self._series.setdefault((exchange, base), {})
            second = ts // 1000
            prev = series.get(second)
            if prev is None or ts >= prev[1]:
                series[second] = (price, ts)
            if len(series) > SPREAD_POINTS_MAX * 1.1:
                for old in sorted(series)[: len(series) - SPREAD_POINTS_MAX]:
                    del series[old]

    def _alert(self, a: dict[str, Any]) -> None:
        alert_id = str(a.get("alert_id") or json.dumps(a, sort_keys=True, default=str))
        kind = str(a.get("alert_type") or a.get("type") or "unknown")
        when = parse_time(a.get("window_end")) or parse_time(a.get("window_start")) or datetime.now(UTC)
        with self._lock:
            self._last_data = time.time()
            if alert_id in self._alert_ids:
                return
            self._alert_ids[alert_id] = None
            while len(self._alert_ids) > 4 * ALERTS_MAX:
                self._alert_ids.popitem(last=False)
            self._alerts.append({"time": when, "type": kind, "subject": _subject(a), "details": _details(a),
                                 "alert_id": alert_id})

    # --- reading -----------------------------------------------------------------------------
    def snapshot(self) -> Snapshot:
        with self._lock:
            prices = sorted(({k: v for k, v in r.items() if not k.startswith("_")} for r in self._prices.values()),
                            key=lambda r: (r["symbol"], r["exchange"]))
            spreads = self._spread_points()
            alerts = sorted(self._alerts, key=lambda r: r["time"], reverse=True)
            return Snapshot(
                status=self.status, prices=prices, spreads=spreads, alerts=alerts,
                spread_label=f"{self.second} − {self.first} price in USD (USDT and USDC counted as 1 USD)",
                trades_seen=self._trades, malformed=self._malformed, missing_topics=self.missing_topics,
                last_data=self._last_data,
            )


    def _spread_points(self) -> list[dict[str, Any]]:
        """Per asset and second: second-exchange price minus first-exchange price (forward-filled)."""
        points = []
        assets = sorted({base for (ex, base) in self._series if ex == self.first}
                        & {base for (ex, base) in self._series if ex == self.second})
        for base in assets:
            a_series, b_series = self._series[(self.first, base)], self._series[(self.second, base)]
            a = b = None
            for sec in sorted(a_series.keys() | b_series.keys()):
                a = a_series.get(sec, a)
                b = b_series.get(sec, b)
                if a is None or b is None or abs(a[1] - b[1]) > PAIR_MAX_SKEW_MS:
                    continue
                spread = b[0] - a[0]
                mid = (a[0] + b[0]) / 2
                points.append({"time": datetime.fromtimestamp(sec, UTC), "asset": base, "spread_usd": float(spread),
                               "spread_bps": float(spread / mid * 10000) if mid else 0.0})
            if len(points) > SPREAD_POINTS_MAX * len(assets):
                break
        return points


def _subject(a: dict[str, Any]) -> str:
    if _kind(a) == "arbitrage":
        return f"{a.get('asset', '?')}: buy {a.get('buy_exchange', '?')}, sell {a.get('sell_exchange', '?')}"
    if a.get("symbol") or a.get("exchange"):
        return f"{a.get('symbol', '?')} on {a.get('exchange', '?')}"
    return str(a.get("asset") or a.get("alert_type") or a.get("type") or "?")


def _kind(a: dict[str, Any]) -> Any:
    return a.get("alert_type") or a.get("type")


def _details(a: dict[str, Any]) -> str:
    if _kind(a) == "arbitrage":
        text = f"spread {_num(a.get('spread_usd'))} USD ({_num(a.get('spread_bps'))} bps)"
        if a.get("net_spread_usd") is not None:
            text += f", net {_num(a['net_spread_usd'])} USD ({_num(a.get('net_spread_bps'))} bps) after fees"
        return text + f", threshold {_num(a.get('threshold_usd'))} USD"
    if _kind(a) == "volume_anomaly":
        # The anomaly job writes `volume_threshold` (null when only the spike rule fired);
        # `threshold` is the older name.
        threshold = a.get("volume_threshold", a.get("threshold"))
        text = f"volume {_num(a.get('volume'))}"
        if threshold is not None:
            text += f" > threshold {_num(threshold)}"
        if a.get("spike_ratio") is not None:
            text += f", {_num(a['spike_ratio'])}x the recent mean {_num(a.get('baseline_volume'))}"
        return text + f", {a.get('trade_count', '?')} trades, VWAP {_num(a.get('vwap'))}"
    skip = {"alert_id", "type", "alert_type", "schema_version", "job", "window_start", "window_end",
            "window_start_ms", "window_end_ms"}
    return ", ".join(f"{k}={v}" for k, v in a.items() if k not in skip)[:300]


def _num(value: Any) -> str:
    return "?" if value is None else format_decimal(value)


# --- tables: text as shown, and column widths that fit it -----------------------------------

def format_decimal(value: Any) -> str:
    """An exact decimal without trailing zeros and without exponent: `600.23000000` -> `600.23`,
    `43000.00` -> `43000`, `0.00001230` -> `0.0000123`. Anything else is shown as it is."""
    try:
        d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError):
        return str(value)
    if not d.is_finite():
        return str(value)
    text = f"{d.normalize():f}"
    return "0" if text in ("-0", "0") else text


PRICE_COLUMNS = (("exchange", "Exchange"), ("symbol", "Symbol"), ("price", "Price"), ("size", "Size"),
                 ("side", "Taker side"), ("time", "Last trade (UTC)"), ("trades", "Trades seen"))
ALERT_COLUMNS = (("time", "Window end"), ("type", "Type"), ("subject", "Subject"), ("details", "Details"),
                 ("alert_id", "Alert id"))
NUMERIC_COLUMNS = frozenset({"Price", "Size", "Trades seen"})  # right-aligned
PAD_PX, MAX_COLUMN_PX = 28, 900


def price_rows(prices: list[dict[str, Any]]) -> list[dict[str, str]]:
    """The latest-prices table, one row per exchange and symbol, every cell text as shown."""
    rows = []
    for p in prices:
        when = p.get("time")
        rows.append({
            "Exchange": str(p.get("exchange", "")), "Symbol": str(p.get("symbol", "")),
            "Price": format_decimal(p.get("price", "")), "Size": format_decimal(p.get("size", "")),
            "Taker side": str(p.get("side", "")),
            "Last trade (UTC)": when.strftime("%H:%M:%S.%f")[:-3] if isinstance(when, datetime) else str(when or ""),
            "Trades seen": str(p.get("trades", "")),
        })
    return rows


def alert_rows(alerts: list[dict[str, Any]]) -> list[dict[str, str]]:
    rows = []
    for a in alerts:
        when = a.get("time")
        rows.append({
            "Window end": when.strftime("%Y-%m-%d %H:%M:%S UTC") if isinstance(when, datetime) else str(when or ""),
            "Type": str(a.get("type", "")), "Subject": str(a.get("subject", "")),
            "Details": str(a.get("details", "")), "Alert id": str(a.get("alert_id", "")),
        })
    return rows


def text_px(text: str) -> float:
    """A generous width estimate of `text` in Streamlit's grid font (Source Sans, 14 px, measured
    at about 7.3 px a character for lower case and digits); capitals are wider."""
    return sum(9.5 if c.isupper() else 7.5 for c in text)


def column_widths(rows: list[dict[str, str]], columns: tuple[tuple[str, str], ...]) -> dict[str, int]:
    """Pixels per column: wide enough for its label and its longest cell (so nothing is cut at
    Streamlit's default width), capped so one long text cannot push the rest out of view."""
    widths = {}
    for _, label in columns:
        widest = max([text_px(label), *(text_px(r.get(label, "")) for r in rows)])
        widths[label] = min(MAX_COLUMN_PX, round(widest) + PAD_PX)
    return widths
