"""What the dashboard shows, built from Kafka records; thread-safe, no Streamlit in here.

Spread policy, the arbitrage job's (flink_jobs/arbitrage_detector.py): the asset is the base of
a `BASE-QUOTE` symbol and every USD-like quote (USD, USDT, USDC) counts as US dollars at par,
so binance BTC-USDT, coinbase BTC-USD and kraken BTC-USD are one asset, BTC. Any number of
exchanges is compared. Per asset and exchange the latest USD-like trade is its price; a price
older than the staleness limit (SpreadPolicy.stale_after_ms, 60 s by default) is shown greyed
and left out. The best spread is the highest fresh price minus the lowest fresh one (best sell
minus best buy), in USD and in bps of the buy price, as the job computes it; it is coloured
against the alert threshold: green below half of it, amber below it, red at or above it.

Opportunities: the quote arbitrage job (flink_jobs/quote_arbitrage.py) writes two messages per
episode to the arbitrage topic, `open` and `close`, sharing `episode_id`. They may arrive in
either order (each is keyed by its own alert_id, so they can sit in different partitions), and
one of them may be missing (read from before the backfill, or expired): the table joins what
it has, one row per episode.
"""

from __future__ import annotations

import json
import threading
import time
from collections import OrderedDict, deque
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from enum import StrEnum
from typing import Any

from cryptomon.alerter.formatting import duration_text, event_time, missing_fields

USD_LIKE = ("USD", "USDT", "USDC")  # the job's default --usd-quotes
_QUOTES = ("USDT", "USDC", "USD", "EUR", "BTC", "ETH")
DEFAULT_STALE_AFTER_MS = 60_000
DEFAULT_THRESHOLD_USD = Decimal(50)  # the job's default --spread-threshold-usd
SPREAD_POINTS_MAX = 3600  # seconds of price history kept per exchange and asset: an hour
CHART_WINDOW_S = 900  # the spread chart shows the last 15 minutes
ALERTS_MAX = 500
QUOTE_ARBITRAGE = "quote_arbitrage"
EPISODES_MAX = 1000  # quote arbitrage episodes remembered, open or closed
CLOSED_SHOWN = 20  # recently closed episodes listed after the open ones
BPS = Decimal(10_000)
BPS_STEP = Decimal("0.01")


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


def usd_asset(symbol: str) -> str | None:
    """The asset a symbol prices in dollars (`BTC-USDT` -> BTC), None for other quotes (ETH-EUR)."""
    base, quote = split_symbol(symbol)
    return base if quote in USD_LIKE and base else None


# --- spread policy and matrix (pure) ----------------------------------------------------------

class Level(StrEnum):
    """An asset's best spread against its alert threshold."""

    NONE = "none"    # fewer than two fresh venues: no spread to judge
    CALM = "calm"    # below half the threshold (green)
    NEAR = "near"    # from half the threshold up to it (amber)
    ALERT = "alert"  # at or above the threshold (red)


@dataclass(frozen=True)
class SpreadPolicy:
    """How prices are compared. Tuples, not dicts, so that it can key Streamlit's cache."""

    stale_after_ms: int = DEFAULT_STALE_AFTER_MS
    threshold_usd: Decimal = DEFAULT_THRESHOLD_USD
    thresholds: tuple[tuple[str, Decimal], ...] = ()  # per-asset overrides, (ASSET, USD)
    exchanges: tuple[str, ...] = ()  # compare only these; empty: every exchange seen

    def __post_init__(self) -> None:
        if self.stale_after_ms <= 0:
            raise ValueError(f"stale_after_ms: {self.stale_after_ms} is not greater than 0")
        for asset, value in (("default", self.threshold_usd), *self.thresholds):
            if not value.is_finite() or value <= 0:
                raise ValueError(f"threshold of {asset}: {value} is not a positive number of dollars")

    def threshold_for(self, asset: str) -> Decimal:
        return dict(self.thresholds).get(asset.upper(), self.threshold_usd)

    def compares(self, exchange: str) -> bool:
        return not self.exchanges or exchange in self.exchanges

    def level(self, spread_usd: Decimal | None, threshold_usd: Decimal) -> Level:
        if spread_usd is None:
            return Level.NONE
        if spread_usd >= threshold_usd:
            return Level.ALERT
        return Level.NEAR if spread_usd * 2 >= threshold_usd else Level.CALM


@dataclass(frozen=True)
class VenuePrice:
    """The latest USD-like trade of an asset on one exchange."""

    exchange: str
    asset: str
    symbol: str
    price: Decimal
    ts_ms: int


@dataclass(frozen=True)
class MatrixCell:
    venue: VenuePrice
    age_ms: int
    stale: bool
    # Above the cheapest fresh price of the asset; None when stale (never compared).
    deviation_usd: Decimal | None
    deviation_bps: Decimal | None


@dataclass(frozen=True)
class AssetSpread:
    asset: str
    cells: Mapping[str, MatrixCell]  # by exchange
    threshold_usd: Decimal
    buy: VenuePrice | None   # the cheapest fresh venue
    sell: VenuePrice | None  # the dearest other fresh venue; None with fewer than two
    level: Level

    @property
    def spread_usd(self) -> Decimal | None:
        return None if self.buy is None or self.sell is None else self.sell.price - self.buy.price

    @property
    def spread_bps(self) -> Decimal | None:
        spread = self.spread_usd
        return None if spread is None or self.buy is None else bps(spread, self.buy.price)

    @property
    def fresh_venues(self) -> tuple[str, ...]:
        return tuple(ex for ex, c in sorted(self.cells.items()) if not c.stale)

    @property
    def stale_venues(self) -> tuple[str, ...]:
        return tuple(ex for ex, c in sorted(self.cells.items()) if c.stale)


@dataclass(frozen=True)
class SpreadMatrix:
    exchanges: tuple[str, ...]  # columns, sorted
    assets: tuple[AssetSpread, ...]  # rows, sorted by asset
    stale_after_ms: int


def bps(amount: Decimal, of: Decimal) -> Decimal:
    return (amount / of * BPS).quantize(BPS_STEP)


def latest_per_venue(prices: Iterable[VenuePrice]) -> dict[tuple[str, str], VenuePrice]:
    """(exchange, asset) -> its newest price (the later one in the input on equal times)."""
    latest: dict[tuple[str, str], VenuePrice] = {}
    for p in prices:
        key = (p.exchange, p.asset)
        if key not in latest or p.ts_ms >= latest[key].ts_ms:
            latest[key] = p
    return latest


def pick_buy_sell(quotes: Iterable[tuple[Decimal, str]]) -> tuple[tuple[Decimal, str] | None,
                                                              tuple[Decimal, str] | None]:
    """(price, exchange) pairs -> (cheapest, dearest of the others). Ties go to the first
    exchange name, as in the job, so the page does not flicker between equal venues."""
    ordered = sorted(quotes)
    if not ordered:
        return None, None
    rest = ordered[1:]
    return ordered[0], (min(rest, key=lambda q: (-q[0], q[1])) if rest else None)


def asset_spread(asset: str, venues: Iterable[VenuePrice], now_ms: int, policy: SpreadPolicy) -> AssetSpread:
    """One row of the matrix: every venue's price, the stale ones flagged, the fresh ones
    compared with the cheapest fresh one."""
    by_exchange = {v.exchange: v for v in venues}
    # A price stamped slightly in the future (an exchange clock ahead of ours) is simply fresh.
    ages = {ex: max(0, now_ms - v.ts_ms) for ex, v in by_exchange.items()}
    fresh = [(v.price, ex) for ex, v in by_exchange.items() if ages[ex] <= policy.stale_after_ms]
    low, high = pick_buy_sell(fresh)
    buy = by_exchange[low[1]] if low else None
    sell = by_exchange[high[1]] if high else None
    cells = {}
    for ex, v in by_exchange.items():
        stale = ages[ex] > policy.stale_after_ms
        dev = None if stale or buy is None else v.price - buy.price
        cells[ex] = MatrixCell(v, ages[ex], stale, dev,
                               None if dev is None or buy is None else bps(dev, buy.price))
    threshold = policy.threshold_for(asset)
    spread = None if buy is None or sell is None else sell.price - buy.price
    return AssetSpread(asset, cells, threshold, buy, sell, policy.level(spread, threshold))


def build_matrix(prices: Iterable[VenuePrice], now_ms: int, policy: SpreadPolicy) -> SpreadMatrix:
    """The spread matrix: a row per asset, a column per exchange seen (of those compared)."""
    latest = [p for p in latest_per_venue(prices).values() if policy.compares(p.exchange)]
    by_asset: dict[str, list[VenuePrice]] = {}
    for p in latest:
        by_asset.setdefault(p.asset, []).append(p)
    rows = tuple(asset_spread(a, by_asset[a], now_ms, policy) for a in sorted(by_asset))
    return SpreadMatrix(tuple(sorted({p.exchange for p in latest})), rows, policy.stale_after_ms)


def best_spread_points(series: Mapping[tuple[str, str], Mapping[int, tuple[Decimal, int]]], stale_after_ms: int,
                       since_s: int | None = None) -> list[dict[str, Any]]:
    """The spread chart: per asset and second, the best spread among the venues whose last
    price (carried forward) is at most stale_after_ms older than the newest one of that second.

    series: (exchange, asset) -> {epoch second: (last price in that second, its time in ms)}.
    Points start at since_s; the last prices before it are carried into it.
    """
    assets: dict[str, list[str]] = {}
    for exchange, asset in series:
        assets.setdefault(asset, []).append(exchange)
    points = []
    for asset in sorted(assets):
        exchanges = sorted(assets[asset])
        if len(exchanges) < 2:
            continue
        current: dict[str, tuple[Decimal, int]] = {}
        seconds: set[int] = set()
        for ex in exchanges:
            s = series[(ex, asset)]
            earlier = [sec for sec in s if since_s is not None and sec < since_s]
            if earlier:
                current[ex] = s[max(earlier)]
            seconds.update(sec for sec in s if since_s is None or sec >= since_s)
        for sec in sorted(seconds):
            for ex in exchanges:
                if sec in series[(ex, asset)]:
                    current[ex] = series[(ex, asset)][sec]
            point = _best_of_second(asset, sec, current, stale_after_ms)
            if point is not None:
                points.append(point)
    return points


def _best_of_second(asset: str, sec: int, current: Mapping[str, tuple[Decimal, int]],
                    stale_after_ms: int) -> dict[str, Any] | None:
    newest = max((ts for _, ts in current.values()), default=0)
    low, high = pick_buy_sell((price, ex) for ex, (price, ts) in current.items() if newest - ts <= stale_after_ms)
    if low is None or high is None:
        return None
    spread = high[0] - low[0]
    return {"time": datetime.fromtimestamp(sec, UTC), "asset": asset, "spread_usd": float(spread),
            "spread_bps": float(bps(spread, low[0])), "buy": low[1], "sell": high[1]}


# --- quote arbitrage episodes (pure) ---------------------------------------------------------

@dataclass(frozen=True)
class Episode:
    """One row of the opportunities table: an episode's open and close messages joined."""

    episode_id: str
    asset: str
    buy_exchange: str
    buy_price: str
    sell_exchange: str
    sell_price: str
    net_bps: str  # at the opening while open; the episode's peak once closed
    size: str
    notional_usd: str
    opened_ms: int | None
    closed: bool
    closed_ms: int | None
    duration_ms: int | None
    close_reason: str | None
    open_seen: bool  # False: only the close was read, so the prices are those at the close


def quote_arbitrage_problem(a: Mapping[str, Any]) -> str | None:
    """Why a quote_arbitrage message cannot be shown, or None: the alerter's rules for its state
    (it would not post it either), and the episode id that joins the two messages."""
    missing = missing_fields(dict(a))
    if not (isinstance(a.get("episode_id"), str) and a["episode_id"].strip()):
        missing.append("episode_id")
    return f"a quote_arbitrage alert needs {', '.join(missing)}" if missing else None


def _ms(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def join_episode(opening: Mapping[str, Any] | None, closing: Mapping[str, Any] | None) -> Episode:
    """The row of an episode from whichever of its messages were read (at least one). Prices,
    size and notional are the opening's; the close supplies them only when the opening is lost."""
    first = opening if opening is not None else closing
    if first is None:
        raise ValueError("an episode needs its open or its close message")
    net = closing.get("peak_net_spread_bps") if closing is not None else first.get("net_spread_bps")
    opened = _ms(first.get("opened_ms"))
    if opened is None and opening is not None:
        opened = _ms(opening.get("event_ms"))
    closed_ms = None if closing is None else _ms(closing.get("closed_ms")) or _ms(closing.get("event_ms"))
    return Episode(
        episode_id=str(first["episode_id"]), asset=str(first.get("asset", "")),
        buy_exchange=str(first.get("buy_exchange", "")), buy_price=str(first.get("buy_price", "")),
        sell_exchange=str(first.get("sell_exchange", "")), sell_price=str(first.get("sell_price", "")),
        net_bps=str(net), size=str(first.get("size", "")), notional_usd=str(first.get("notional_usd", "")),
        opened_ms=opened, closed=closing is not None, closed_ms=closed_ms,
        duration_ms=None if closing is None else _ms(closing.get("duration_ms")),
        close_reason=None if closing is None else str(closing.get("close_reason")),
        open_seen=opening is not None,
    )


def order_episodes(episodes: Iterable[Episode], closed_shown: int = CLOSED_SHOWN) -> list[Episode]:
    """Open episodes first, newest opened first; then the `closed_shown` most recently closed.
    Ties go to the episode id, so the table does not reshuffle between refreshes."""
    items = list(episodes)
    open_ = sorted((e for e in items if not e.closed), key=lambda e: (-(e.opened_ms or 0), e.episode_id))
    closed = sorted((e for e in items if e.closed),
                    key=lambda e: (-(e.closed_ms or e.opened_ms or 0), e.episode_id))
    return open_ + closed[:max(0, closed_shown)]


# --- the live state ---------------------------------------------------------------------------

@dataclass
class Status:
    state: str = "connecting"  # connecting | unreachable | waiting | live
    detail: str = ""
    since: float = field(default_factory=time.time)


@dataclass(frozen=True)
class Snapshot:
    status: Status
    prices: list[dict[str, Any]]  # latest trade per exchange and symbol, any quote
    matrix: SpreadMatrix
    spreads: list[dict[str, Any]]  # best spread per asset and second (best_spread_points)
    alerts: list[dict[str, Any]]
    opportunities: list[Episode]  # quote arbitrage episodes, as order_episodes lists them
    policy: SpreadPolicy
    trades_seen: int
    malformed: int
    missing_topics: tuple[str, ...]
    last_data: float | None
    now_ms: int = 0  # when it was taken: an open episode's age is measured from here


class MarketState:
    def __init__(self, policy: SpreadPolicy | None = None) -> None:
        self.policy = policy or SpreadPolicy()
        self._lock = threading.Lock()
        self._prices: dict[tuple[str, str], dict[str, Any]] = {}
        # (exchange, asset) -> the latest USD-like trade: the matrix is built from these.
        self._venues: dict[tuple[str, str], VenuePrice] = {}
        # (exchange, asset) -> {epoch second: (last price in that second, its ts in ms)}
        self._series: dict[tuple[str, str], dict[int, tuple[Decimal, int]]] = {}
        self._alerts: deque[dict[str, Any]] = deque(maxlen=ALERTS_MAX)
        self._alert_ids: OrderedDict[str, None] = OrderedDict()
        # episode_id -> {"open": message, "close": message}, oldest episode first
        self._episodes: OrderedDict[str, dict[str, dict[str, Any]]] = OrderedDict()
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
        exchange, symbol = str(t["exchange"]).strip().lower(), str(t["symbol"]).strip()
        if not exchange or not symbol:
            raise ValueError("no exchange or symbol")
        price = Decimal(str(t["price"]))
        if not price.is_finite() or price <= 0:
            raise ValueError("bad price")
        ts = int(t.get("exchange_ts") or t.get("received_ts") or time.time() * 1000)
        asset = usd_asset(symbol)
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
            if asset is None or not self.policy.compares(exchange):
                return
            # BTC-USDT and BTC-USDC on one exchange are one venue: its newest trade counts.
            venue = self._venues.get((exchange, asset))
            if venue is None or ts >= venue.ts_ms:
                self._venues[(exchange, asset)] = VenuePrice(exchange, asset, symbol.upper(), price, ts)
            # Last price per second and venue; spreads are derived when reading, so trades that
            # arrive out of time order (different partitions, backfill) still line up.
            series = self._series.setdefault((exchange, asset), {})
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
        if kind == QUOTE_ARBITRAGE:
            problem = quote_arbitrage_problem(a)
            if problem:
                raise ValueError(problem)
        when = event_time(a) or datetime.now(UTC)
        with self._lock:
            self._last_data = time.time()
            if kind == QUOTE_ARBITRAGE:
                self._episode(a)
            if alert_id in self._alert_ids:
                return
            self._alert_ids[alert_id] = None
            while len(self._alert_ids) > 4 * ALERTS_MAX:
                self._alert_ids.popitem(last=False)
            self._alerts.append({"time": when, "type": kind, "subject": _subject(a), "details": _details(a),
                                 "alert_id": alert_id})

    def _episode(self, a: dict[str, Any]) -> None:
        """Under the lock. A repeated message (a replay) replaces its twin: same content."""
        self._episodes.setdefault(str(a["episode_id"]), {})[str(a["episode_state"])] = a
        while len(self._episodes) > EPISODES_MAX:
            self._episodes.popitem(last=False)

    # --- reading -----------------------------------------------------------------------------
    def snapshot(self, now_ms: int | None = None) -> Snapshot:
        """Everything the page shows; ages (staleness) are measured at now_ms, default now."""
        now_ms = int(time.time() * 1000) if now_ms is None else now_ms
        with self._lock:
            prices = sorted(({k: v for k, v in r.items() if not k.startswith("_")} for r in self._prices.values()),
                            key=lambda r: (r["symbol"], r["exchange"]))
            newest = max((max(s) for s in self._series.values() if s), default=0)
            return Snapshot(
                status=self.status, prices=prices,
                matrix=build_matrix(self._venues.values(), now_ms, self.policy),
                spreads=best_spread_points(self._series, self.policy.stale_after_ms, newest - CHART_WINDOW_S),
                alerts=sorted(self._alerts, key=lambda r: r["time"], reverse=True),
                opportunities=order_episodes(join_episode(m.get("open"), m.get("close"))
                                             for m in self._episodes.values()),
                policy=self.policy, trades_seen=self._trades, malformed=self._malformed,
                missing_topics=self.missing_topics, last_data=self._last_data, now_ms=now_ms,
            )


def _subject(a: dict[str, Any]) -> str:
    if _kind(a) in ("arbitrage", QUOTE_ARBITRAGE):
        return f"{a.get('asset', '?')}: buy {a.get('buy_exchange', '?')}, sell {a.get('sell_exchange', '?')}"
    if a.get("symbol") or a.get("exchange"):
        return f"{a.get('symbol', '?')} on {a.get('exchange', '?')}"
    return str(a.get("asset") or a.get("alert_type") or a.get("type") or "?")


def _kind(a: dict[str, Any]) -> Any:
    return a.get("alert_type") or a.get("type")


def _details(a: dict[str, Any]) -> str:
    if _kind(a) == QUOTE_ARBITRAGE:
        if a.get("episode_state") == "close":
            return (f"closed ({a.get('close_reason')}) after {duration_text(a.get('duration_ms'))}, "
                    f"peak net {_num(a.get('peak_net_spread_bps'))} bps")
        return (f"open: buy at {_num(a.get('buy_price'))}, sell at {_num(a.get('sell_price'))}, "
                f"net {_num(a.get('net_spread_bps'))} bps, {_num(a.get('net_profit_usd'))} USD "
                f"on {_num(a.get('size'))} ({_num(a.get('notional_usd'))} USD)")
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


# --- the spread matrix and its summary as text and CSS ----------------------------------------

# Explicit text colours too, so the cells stay readable in Streamlit's dark theme.
LEVEL_CSS = {
    Level.CALM: "background-color: #c9ecd3; color: #0b3a1b",
    Level.NEAR: "background-color: #ffe2a0; color: #4a3400",
    Level.ALERT: "background-color: #f5b5b5; color: #5c0909",
    Level.NONE: "",
}
STALE_CSS = "background-color: #ececec; color: #8c8c8c"
MISSING = "–"


@dataclass(frozen=True)
class StyledTable:
    """Cell text as shown and one CSS declaration list per cell ("" = unstyled)."""

    columns: tuple[str, ...]
    rows: tuple[tuple[str, ...], ...]
    styles: tuple[tuple[str, ...], ...]

    def cell(self, row: int, column: str) -> str:
        return self.rows[row][self.columns.index(column)]

    def style(self, row: int, column: str) -> str:
        return self.styles[row][self.columns.index(column)]


def format_age(ms: int) -> str:
    """45000 -> `45s`, 60000 -> `1m`, 125000 -> `2m 05s`, 11040000 -> `3h 04m`, 183600000 -> `2d 3h`
    (whole seconds, rounded down; a zero second part is left out)."""
    s = max(0, ms) // 1000
    if s < 60:
        return f"{s}s"
    if s < 3600:
        big, small = f"{s // 60}m", f"{s % 60:02d}s" if s % 60 else ""
    elif s < 86400:
        big, small = f"{s // 3600}h", f"{s // 60 % 60:02d}m" if s // 60 % 60 else ""
    else:
        big, small = f"{s // 86400}d", f"{s // 3600 % 24}h" if s // 3600 % 24 else ""
    return f"{big} {small}" if small else big


def matrix_cell_text(cell: MatrixCell | None, row: AssetSpread) -> str:
    """`43320.5 USD · +70.4 (+16.28 bps)`: the price, its quote, and how far it is above the
    asset's cheapest fresh price (in USD and bps of that price)."""
    if cell is None:
        return MISSING
    _, quote = split_symbol(cell.venue.symbol)
    price = f"{format_decimal(cell.venue.price)} {quote}"
    if cell.stale:
        return f"{price} · stale, {format_age(cell.age_ms)} old"
    if row.sell is None:
        return f"{price} · only fresh venue"
    if row.buy is not None and cell.venue.exchange == row.buy.exchange:
        return f"{price} · cheapest"
    return f"{price} · +{format_decimal(cell.deviation_usd)} (+{format_decimal(cell.deviation_bps)} bps)"


def matrix_cell_css(cell: MatrixCell | None, row: AssetSpread) -> str:
    if cell is None:
        return ""
    return STALE_CSS if cell.stale else LEVEL_CSS[row.level]


def matrix_table(matrix: SpreadMatrix) -> StyledTable:
    """A row per asset, a column per exchange: the fresh cells coloured by the asset's best
    spread against its threshold, the stale ones grey."""
    rows, styles = [], []
    for a in matrix.assets:
        rows.append((a.asset, *(matrix_cell_text(a.cells.get(ex), a) for ex in matrix.exchanges)))
        styles.append((LEVEL_CSS[a.level], *(matrix_cell_css(a.cells.get(ex), a) for ex in matrix.exchanges)))
    return StyledTable(("Asset", *matrix.exchanges), tuple(rows), tuple(styles))


SUMMARY_COLUMNS = ("Asset", "Best buy → best sell", "Spread USD", "Spread bps", "Threshold USD", "Venues seen")


def _route(a: AssetSpread) -> str:
    if a.buy is None:
        return "no fresh price"
    if a.sell is None:
        return f"needs two fresh venues (only {a.buy.exchange})"
    return (f"{a.buy.exchange} {format_decimal(a.buy.price)} → "
            f"{a.sell.exchange} {format_decimal(a.sell.price)}")


def _venues_seen(a: AssetSpread) -> str:
    fresh, stale = a.fresh_venues, a.stale_venues
    text = f"{len(fresh)} fresh: {', '.join(fresh)}" if fresh else "0 fresh"
    return text + (f"; stale: {', '.join(stale)}" if stale else "")


def summary_table(matrix: SpreadMatrix) -> StyledTable:
    """Per asset: best buy → best sell, the spread in USD and bps, the threshold, the venues."""
    rows, styles = [], []
    for a in matrix.assets:
        spread, spread_bps = a.spread_usd, a.spread_bps
        rows.append((a.asset, _route(a), MISSING if spread is None else format_decimal(spread),
                     MISSING if spread_bps is None else format_decimal(spread_bps),
                     format_decimal(a.threshold_usd), _venues_seen(a)))
        css = LEVEL_CSS[a.level]
        styles.append((css, "", css, css, "", ""))
    return StyledTable(SUMMARY_COLUMNS, tuple(rows), tuple(styles))


OPPORTUNITY_COLUMNS = ("Asset", "Buy", "Sell", "Net bps", "Size", "Notional USD", "Opened (UTC)", "State")
OPEN_CSS = LEVEL_CSS[Level.ALERT]  # as the matrix: red is at or above the alert threshold


def _opened_text(ms: int | None) -> str:
    return MISSING if ms is None else datetime.fromtimestamp(ms / 1000, UTC).strftime("%H:%M:%S")


def episode_state_text(e: Episode, now_ms: int) -> str:
    """`open 2.4 s` (so far, measured at now_ms), `closed after 2.4 s (reverted)`; a close read
    without its opening says that its prices are the closing ones."""
    if not e.closed:
        return "open" if e.opened_ms is None else f"open {duration_text(max(0, now_ms - e.opened_ms))}"
    lasted = MISSING if e.duration_ms is None else duration_text(e.duration_ms)
    text = f"closed after {lasted} ({e.close_reason})"
    return text if e.open_seen else f"{text}; open not seen, prices at close"


def opportunity_table(episodes: Iterable[Episode], now_ms: int) -> StyledTable:
    """The opportunities table, one row per episode in the given order: open rows red, closed
    ones grey; prices, sizes and bps exact without trailing zeros, a closed row's net its peak."""
    rows, styles = [], []
    for e in episodes:
        net = format_decimal(e.net_bps)
        rows.append((e.asset, f"{e.buy_exchange} {format_decimal(e.buy_price)}",
                     f"{e.sell_exchange} {format_decimal(e.sell_price)}", f"{net} peak" if e.closed else net,
                     format_decimal(e.size), format_decimal(e.notional_usd), _opened_text(e.opened_ms),
                     episode_state_text(e, now_ms)))
        styles.append(((STALE_CSS if e.closed else OPEN_CSS),) * len(OPPORTUNITY_COLUMNS))
    return StyledTable(OPPORTUNITY_COLUMNS, tuple(rows), tuple(styles))


def policy_caption(policy: SpreadPolicy) -> str:
    """The matrix legend: the quote policy, what a cell says, the colours, the staleness limit."""
    overrides = ", ".join(f"{asset} {format_decimal(usd)}" for asset, usd in policy.thresholds)
    threshold = f"{format_decimal(policy.threshold_usd)} USD" + (f" ({overrides})" if overrides else "")
    return (f"Per asset and exchange, the latest price (USD, USDT and USDC counted as 1 USD) and how far it is "
            f"above the asset's cheapest fresh price, in USD and bps. Colour: the asset's best spread against "
            f"the alert threshold {threshold}: green below half of it, amber below it, red at or above it. "
            f"Grey: no trade for more than {format_age(policy.stale_after_ms)}, not compared.")


_MARKDOWN_SPECIAL = frozenset("\\`*_{}[]<>()#+-.!|~$")


def markdown_escape(text: str) -> str:
    """st.table renders cells as Markdown (and `$...$` as LaTeX): shown text must be escaped,
    or an exchange called `a_b_c_` or a `$` would change what the cell says."""
    return "".join(f"\\{c}" if c in _MARKDOWN_SPECIAL else c for c in text)


_INLINE_MARKS = frozenset("\\`*_[]<>$~|")


def markdown_inline_escape(text: str) -> str:
    """For a line of text in a banner or caption: only the inline marks are escaped (a job name
    like arbitrage_detector_1_4 would turn italic), not `.` or `-` as in table cells, so that a
    URL in the text stays one link (an escaped `.` would become part of the link)."""
    return "".join(f"\\{c}" if c in _INLINE_MARKS else c for c in text)
