"""cryptomon quote arbitrage: executable cross-exchange opportunities from top-of-book quotes.

Reads the producers' quotes (`quotes.raw`, issue 14) and keeps, per asset, the latest quote of
every USD-like market of every exchange (USD≈USDT policy: quotes in `--usd-quotes` count as
dollars at par, as in the VWAP job). For every ordered pair of exchanges (buy on A at its
best ask, sell on B at its best bid, each taken over A's / B's fresh markets of the asset):

    net per unit   = bid_sell × (1 − fee_sell) − ask_buy × (1 + fee_buy)      (taker fees)
    size           = min(ask_size_buy, bid_size_sell)                         (executable)
    net bps        = net / ask_buy × 10 000;  profit = net × size;  notional = size × ask_buy

An **episode** opens when net bps > `--min-net-bps` and profit ≥ `--min-profit-usd` and notional
≥ `--min-notional-usd`: one `open` alert. While it stays open nothing more is sent; the job only
tracks the peak. It closes, with one `close` alert carrying its duration and peak, when the net
falls to `--min-net-bps − --hysteresis-bps` or below (or the size below the minimum notional, or
the profit below its minimum): reason `reverted`; or when a side has no fresh quote left:
reason `stale`. Both alerts of an episode share `episode_id`; their `alert_id`s differ by the
kind (`...:open` / `...:close`) so the alerter's dedupe by alert_id keeps both.

Time: a quote is **fresh** while `now − received_ts ≤ max age` of its exchange
(`--max-quote-age-ms`, default 2000, per exchange `--max-quote-ages-ms`), with `now` Flink's
**processing time**. Why processing time and not event time: staleness has to be noticed when
*nothing* arrives (a venue that goes silent), and only a processing-time timer fires without
input; an event-time timer waits for a watermark that a silent venue never moves (and idleness
would just release it at an arbitrary later point). `received_ts` is the producer's wall clock
at reception, so the age includes the producer → Kafka → Flink path: an alert on a quote that
sat in a backlog (lag, restart) would not be actionable, and is not raised. This relies on the
hosts' clocks being NTP-synchronized (a skew adds to or takes from the age; a quote from the
future counts as age 0). Episodes' times (`opened_ms`, `closed_ms`) are data times, not
processing times, so a replay that takes the same decisions gives the same ids: opened_ms is the
newer received_ts of the two quotes that opened it, a reversal closes at the closing quote's
received_ts, staleness at the moment the side turned stale (received_ts + max age).

Bad data never opens an episode: a crossed or locked book (bid ≥ ask), zero or negative sizes or
prices, unparseable numbers, and a quote older than the one held for its market (lower
sequence, or earlier exchange_ts, or earlier received_ts; a held quote that is stale no longer
blocks, so a venue that renumbers after a restart is taken back within max age) are dropped and
counted (Flink metrics `quotesCrossed`, `quotesBadSize`, `quotesMalformed`, `quotesOutOfOrder`
of the operator; of the quotes that the coalescing below lets through), with one log line per
kind and minute. A dropped quote leaves the market's previous quote in place until it turns
stale.

Coalescing (`--coalesce-ms`, default 20): before any Python, Flink SQL keeps per market
(exchange, symbol) only the newest quote of each processing-time window of that many ms
(newest in the venue's order: exchange_ts, then sequence, then received_ts, then arrival), so
the Python function sees at most markets x 1000 / coalesce-ms quotes per second, whatever the
input rate. A quote waits until its window ends (at most coalesce-ms while the job keeps up);
a quote that reaches the book is never older than the one it holds (a late one loses in its
window, or is dropped as out of order in a later one). The quotes a window replaces are never
looked at: a bad one among them is in no drop counter, only in `quotesCoalesced`. 0 = every
quote goes to Python.

Flink: Kafka JSON source (Flink SQL, parsed in Java) → coalescing window (SQL) → keyed by
asset (in Java, no Python key selector) → one PyFlink KeyedProcessFunction (this file's
`AssetBook`) → Flink SQL Kafka sink (JSON, key = alert_id), all in one job. Python runs in
`thread` mode (embedded in the TaskManager's JVM, no Beam bundles: a quote is handled when it
arrives); see the choice and the numbers in docs/benchmarks.md.

Submit with the shared modules (they must also be on the TaskManagers: -pyfs ships them):

    flink run -d -py flink_jobs/quote_arbitrage.py \\
        -pyfs flink_jobs/flink_common.py,flink_jobs/kafka_settings.py [--demo] [--option value ...]

The pipeline is named `cryptomon-quote-arbitrage`; `--help` lists every option and its variable.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Context, Decimal, InvalidOperation

from flink_common import (
    ConfigError,
    EnvDefaults,
    KafkaSettings,
    add_group_and_sink_options,
    create_stream_envs,
    exchange_name,
    json_source_options,
    kafka_env_epilog,
    kafka_settings_with_input,
    parse_bool,
    parse_decimal,
    parse_fee_bps,
    parse_fee_table,
    parse_mapping,
    sink_ddl,
    sql_str,
    with_options,
)
from flink_common import demo_argv as _demo_argv

SCHEMA_VERSION = 1
ALERT_TYPE = "quote_arbitrage"
JOB = "quote-arbitrage"
PIPELINE_NAME = "cryptomon-quote-arbitrage"
PREFIX = "QUOTE_ARBITRAGE"
INPUT_VAR = "KAFKA_QUOTES_TOPIC"
INPUT_DEFAULT = "quotes.raw"  # the producers' QuoteSettings.topic
OUTPUT_VAR = "KAFKA_ARBITRAGE_TOPIC"
DEFAULT_OTHER_FEE_BPS = Decimal("10")
DEFAULT_MAX_AGE_MS = 2000
MAX_AGE_LIMIT_MS = 60_000
# Demo mode: any net gain after fees opens an episode, from $1 of executable size, so the mock
# feed's divergence (MOCK_DIVERGE_BPS) and the replay servers' scripted books alert at once.
DEMO_MIN_NET_BPS = Decimal(0)
DEMO_MIN_PROFIT_USD = Decimal(0)
DEMO_MIN_NOTIONAL_USD = Decimal(1)
EXECUTION_MODES = ("thread", "process")

log = logging.getLogger("quote_arbitrage")

# Exact decimal arithmetic with room to spare: prices and sizes have up to 24 digits, products
# of two of them 48; the default context (28 digits) would round them.
_DEC = Context(prec=80)
_BPS = Decimal(10000)
_BPS_PLACES = Decimal("0.01")
_USD_PLACES = Decimal("1e-10")


# --- pure logic (no Flink): quotes, pairs, episodes ------------------------------------------

@dataclass(frozen=True)
class Rules:
    """Thresholds, fees and ages; pickled into the job with the process function."""

    min_net_bps: Decimal = Decimal(10)
    min_profit_usd: Decimal = Decimal(0)
    min_notional_usd: Decimal = Decimal(100)
    hysteresis_bps: Decimal = Decimal(0)
    fees_bps: Mapping[str, Decimal] = field(default_factory=dict)
    default_fee_bps: Decimal = DEFAULT_OTHER_FEE_BPS
    max_age_ms: Mapping[str, int] = field(default_factory=dict)
    default_max_age_ms: int = DEFAULT_MAX_AGE_MS
    demo: bool = False

    def fee(self, exchange: str) -> Decimal:
        return self.fees_bps.get(exchange, self.default_fee_bps)

    def max_age(self, exchange: str) -> int:
        return self.max_age_ms.get(exchange, self.default_max_age_ms)


class Quote:
    """One market's top of book, parsed: Decimal prices and sizes, the raw strings kept."""

    __slots__ = ("exchange", "symbol", "bid", "bid_size", "ask", "ask_size", "received_ts", "exchange_ts",
                 "sequence", "raw")

    def __init__(self, exchange: str, symbol: str, raw: tuple[str, str, str, str], received_ts: int,
                 exchange_ts: int | None, sequence: int | None) -> None:
        self.exchange, self.symbol, self.raw = exchange, symbol, raw
        self.bid, self.bid_size = Decimal(raw[0]), Decimal(raw[1])
        self.ask, self.ask_size = Decimal(raw[2]), Decimal(raw[3])
        self.received_ts, self.exchange_ts, self.sequence = received_ts, exchange_ts, sequence


# Why a quote is dropped (the metric names of the operator).
CROSSED, BAD_SIZE, MALFORMED, OUT_OF_ORDER = "quotesCrossed", "quotesBadSize", "quotesMalformed", "quotesOutOfOrder"
DROP_REASONS = (CROSSED, BAD_SIZE, MALFORMED, OUT_OF_ORDER)
# Replaced by a newer quote of their market in the coalescing stage, never looked at (so a bad
# one among them is in none of the drop counters).
COALESCED = "quotesCoalesced"
COUNTER_FLUSH_MS = 100


def parse_quote(exchange: str | None, symbol: str | None, bid: str | None, bid_size: str | None,
                ask: str | None, ask_size: str | None, received_ts: int | None, exchange_ts: int | None,
                sequence: int | None) -> Quote | str:
    """A usable Quote, or the reason (one of DROP_REASONS) it is not one."""
    if not exchange or not symbol or received_ts is None or received_ts <= 0:
        return MALFORMED
    raw = (bid, bid_size, ask, ask_size)
    try:
        quote = Quote(exchange, symbol, raw, received_ts, exchange_ts, sequence)  # type: ignore[arg-type]
    except (InvalidOperation, TypeError, ValueError):
        return MALFORMED
    if not all(v.is_finite() for v in (quote.bid, quote.bid_size, quote.ask, quote.ask_size)):
        return MALFORMED
    if quote.bid <= 0 or quote.ask <= 0:
        return MALFORMED
    if quote.bid_size <= 0 or quote.ask_size <= 0:
        return BAD_SIZE
    if quote.bid >= quote.ask:
        return CROSSED
    return quote


def is_older(new: Quote, held: Quote) -> bool:
    """`new` is behind the quote held for the same market: the venue's order first (exchange
    time, then sequence), the producer's receive time when the venue gives neither."""
    if new.exchange_ts is not None and held.exchange_ts is not None and new.exchange_ts != held.exchange_ts:
        return new.exchange_ts < held.exchange_ts
    if new.sequence is not None and held.sequence is not None and new.sequence != held.sequence:
        return new.sequence < held.sequence
    return new.received_ts < held.received_ts


@dataclass(frozen=True)
class Opportunity:
    """One ordered pair's numbers for a buy quote and a sell quote (exact decimals)."""

    buy: Quote
    sell: Quote
    buy_fee_bps: Decimal
    sell_fee_bps: Decimal
    size: Decimal
    gross: Decimal      # per unit: bid_sell - ask_buy
    net: Decimal        # per unit, after both taker fees
    net_bps: Decimal    # relative to ask_buy (unrounded)
    profit: Decimal     # net * size
    notional: Decimal   # size * ask_buy


def evaluate_pair(buy: Quote, sell: Quote, buy_fee_bps: Decimal, sell_fee_bps: Decimal) -> Opportunity:
    """net = bid_sell × (1 − fee_sell) − ask_buy × (1 + fee_buy), size = min of the two sides."""
    ask, bid = buy.ask, sell.bid
    net = _DEC.divide(_DEC.subtract(_DEC.multiply(bid, _BPS - sell_fee_bps),
                                    _DEC.multiply(ask, _BPS + buy_fee_bps)), _BPS)
    size = min(buy.ask_size, sell.bid_size)
    return Opportunity(buy, sell, buy_fee_bps, sell_fee_bps, size, _DEC.subtract(bid, ask), net,
                       _DEC.divide(_DEC.multiply(net, _BPS), ask), _DEC.multiply(net, size),
                       _DEC.multiply(size, ask))


def opens(opp: Opportunity, rules: Rules) -> bool:
    return (opp.net_bps > rules.min_net_bps and opp.profit >= rules.min_profit_usd
            and opp.notional >= rules.min_notional_usd)


def stays_open(opp: Opportunity, rules: Rules) -> bool:
    return (opp.net_bps > rules.min_net_bps - rules.hysteresis_bps and opp.profit >= rules.min_profit_usd
            and opp.notional >= rules.min_notional_usd)


def dec_text(value: Decimal, places: Decimal | None = None) -> str:
    """A decimal as the jobs write it: rounded half-up to `places`, no trailing zeros."""
    if places is not None:
        value = value.quantize(places, rounding=ROUND_HALF_UP, context=_DEC)
    text = format(value.normalize(_DEC), "f")
    return "0" if text in ("-0", "") else text


def episode_id(asset: str, buy_exchange: str, sell_exchange: str, opened_ms: int) -> str:
    return f"{ALERT_TYPE}:{asset}:{buy_exchange}:{sell_exchange}:{opened_ms}"


def alert_id(episode: str, state: str) -> str:
    """One id per message kind of an episode: `<episode_id>:open` / `<episode_id>:close`."""
    return f"{episode}:{state}"


def opportunity_fields(opp: Opportunity) -> dict[str, object]:
    return {
        "buy_exchange": opp.buy.exchange, "buy_symbol": opp.buy.symbol,
        "buy_price": dec_text(opp.buy.ask), "buy_size": dec_text(opp.buy.ask_size),
        "buy_fee_bps": dec_text(opp.buy_fee_bps), "buy_quote_ms": opp.buy.received_ts,
        "sell_exchange": opp.sell.exchange, "sell_symbol": opp.sell.symbol,
        "sell_price": dec_text(opp.sell.bid), "sell_size": dec_text(opp.sell.bid_size),
        "sell_fee_bps": dec_text(opp.sell_fee_bps), "sell_quote_ms": opp.sell.received_ts,
        "size": dec_text(opp.size), "notional_usd": dec_text(opp.notional, _USD_PLACES),
        "gross_spread_usd": dec_text(opp.gross), "net_spread_usd": dec_text(opp.net, _USD_PLACES),
        "net_spread_bps": dec_text(opp.net_bps, _BPS_PLACES), "net_profit_usd": dec_text(opp.profit, _USD_PLACES),
    }


ALERT_FIELDS: tuple[tuple[str, str], ...] = (
    # (name, SQL type) in the order of the Kafka record; every field is always present.
    ("alert_id", "STRING"), ("alert_type", "STRING"), ("schema_version", "INT"), ("job", "STRING"),
    ("episode_id", "STRING"), ("episode_state", "STRING"), ("close_reason", "STRING"), ("asset", "STRING"),
    ("buy_exchange", "STRING"), ("buy_symbol", "STRING"), ("buy_price", "STRING"), ("buy_size", "STRING"),
    ("buy_fee_bps", "STRING"), ("buy_quote_ms", "BIGINT"),
    ("sell_exchange", "STRING"), ("sell_symbol", "STRING"), ("sell_price", "STRING"), ("sell_size", "STRING"),
    ("sell_fee_bps", "STRING"), ("sell_quote_ms", "BIGINT"),
    ("size", "STRING"), ("notional_usd", "STRING"), ("gross_spread_usd", "STRING"), ("net_spread_usd", "STRING"),
    ("net_spread_bps", "STRING"), ("net_profit_usd", "STRING"),
    ("peak_net_spread_bps", "STRING"), ("peak_net_profit_usd", "STRING"), ("peak_ms", "BIGINT"),
    ("opened_ms", "BIGINT"), ("closed_ms", "BIGINT"), ("duration_ms", "BIGINT"), ("event_ms", "BIGINT"),
    ("min_net_bps", "STRING"), ("min_profit_usd", "STRING"), ("min_notional_usd", "STRING"),
    ("demo_mode", "BOOLEAN"), ("summary", "STRING"),
)


def usd(text: object) -> str:
    """`$1.5`, `-$0.5`."""
    text = str(text)
    return f"-${text[1:]}" if text.startswith("-") else f"${text}"


def summary(alert: Mapping[str, object]) -> str:
    head = (f"{alert['asset']}: buy {alert['buy_exchange']} {alert['buy_symbol']} at {alert['buy_price']}, "
            f"sell {alert['sell_exchange']} {alert['sell_symbol']} at {alert['sell_price']}, "
            f"net {alert['net_spread_bps']} bps after fees, {usd(alert['net_profit_usd'])} on {alert['size']} "
            f"({usd(alert['notional_usd'])})")
    if alert["episode_state"] == "open":
        return f"{head}: opportunity open"
    return (f"{head}: closed ({alert['close_reason']}) after {alert['duration_ms']} ms, "
            f"peak {alert['peak_net_spread_bps']} bps")


class StepResult:
    """What one quote or timer did: the alerts to send, and whether the episodes changed."""

    __slots__ = ("alerts", "episodes_changed")

    def __init__(self) -> None:
        self.alerts: list[dict[str, object]] = []
        self.episodes_changed = False


def _side_ms(episode: dict, side: int) -> int:
    """received_ts of the buy (0) or sell (1) quote an episode was last evaluated with."""
    return episode["last"]["buy_quote_ms" if side == 0 else "sell_quote_ms"]  # type: ignore[return-value]


class AssetBook:
    """Every market's latest quote of one asset, and the asset's open episodes.

    Pure Python (no Flink): the process function feeds it quotes and timer ticks and persists
    the episodes (when StepResult.episodes_changed); the quotes live in memory only.
    """

    def __init__(self, asset: str, rules: Rules) -> None:
        self.asset = asset
        self.rules = rules
        self.quotes: dict[str, dict[str, Quote]] = {}         # exchange -> symbol -> quote
        self.episodes: dict[tuple[str, str], dict] = {}       # (buy, sell) -> open episode
        self.last_opened: dict[tuple[str, str], int] = {}     # (buy, sell) -> opened_ms of the last
        self._ages: dict[str, int] = {}                       # exchange -> max age (rules, cached)

    # -- state --

    def episode_state(self) -> dict:
        return {"episodes": self.episodes, "last_opened": self.last_opened}

    def load_episode_state(self, saved: dict | None) -> None:
        if saved:
            self.episodes = saved["episodes"]
            self.last_opened = saved["last_opened"]

    # -- input --

    def on_quote(self, quote: Quote, now: int) -> StepResult | str:
        """Take a quote (the latest of its market unless OUT_OF_ORDER is returned) and step every
        pair it takes part in. The hot path of the job: pairs without an episode and without a
        gross spread are skipped before any arithmetic."""
        exchange = quote.exchange
        markets = self.quotes.get(exchange)
        if markets is None:
            markets = self.quotes[exchange] = {}
        held = markets.get(quote.symbol)
        if held is not None and now - held.received_ts <= self._age(exchange) and is_older(quote, held):
            return OUT_OF_ORDER
        markets[quote.symbol] = quote
        result = StepResult()
        if len(self.quotes) < 2:
            return result
        my_ask, my_bid = self._best(exchange, now)
        episodes = self.episodes
        for other in self.quotes:
            if other == exchange:
                continue
            their_ask, their_bid = self._best(other, now)
            pair = (exchange, other)
            if (episodes and pair in episodes) or (
                    my_ask is not None and their_bid is not None and their_bid.bid > my_ask.ask):
                self._step(pair, my_ask, their_bid, quote.received_ts, now, result)
            pair = (other, exchange)
            if (episodes and pair in episodes) or (
                    their_ask is not None and my_bid is not None and my_bid.bid > their_ask.ask):
                self._step(pair, their_ask, my_bid, quote.received_ts, now, result)
        return result

    def on_timer(self, now: int) -> StepResult:
        """Re-check the open episodes only: staleness can close one, never open one (a stale
        quote is already left out when quotes arrive)."""
        result = StepResult()
        for pair in list(self.episodes):
            buy, sell = pair
            self._step(pair, self._best(buy, now)[0], self._best(sell, now)[1], None, now, result)
        return result

    def next_deadline(self, now: int) -> int | None:
        """When the first fresh quote of an open episode's exchanges turns stale (processing
        time, ms); None without open episodes. Early rather than late: the timer re-checks and
        asks again."""
        deadline = None
        for pair, episode in self.episodes.items():
            for side, exchange in enumerate(pair):
                age = self._age(exchange)
                times = [q.received_ts for q in self.quotes.get(exchange, {}).values()] or [_side_ms(episode, side)]
                for ts in times:
                    at = ts + age + 1
                    if at > now and (deadline is None or at < deadline):
                        deadline = at
        return deadline

    # -- internals --

    def _age(self, exchange: str) -> int:
        age = self._ages.get(exchange)
        if age is None:
            age = self._ages[exchange] = self.rules.max_age(exchange)
        return age

    def _fresh(self, quote: Quote, now: int) -> bool:
        return now - quote.received_ts <= self._age(quote.exchange)

    def _best(self, exchange: str, now: int) -> tuple[Quote | None, Quote | None]:
        """(lowest ask, highest bid) over the exchange's fresh markets of the asset."""
        markets = self.quotes.get(exchange)
        if not markets:
            return None, None
        oldest = now - self._age(exchange)
        if len(markets) == 1:  # the common case: one USD-like market per venue
            for q in markets.values():
                return (q, q) if q.received_ts >= oldest else (None, None)
        best_ask = best_bid = None
        for q in markets.values():
            if q.received_ts < oldest:
                continue
            if best_ask is None or q.ask < best_ask.ask:
                best_ask = q
            if best_bid is None or q.bid > best_bid.bid:
                best_bid = q
        return best_ask, best_bid

    def _stale_since(self, exchange: str, episode: dict, side: int) -> int:
        """When the exchange's last fresh quote of the asset turned stale (from the episode's
        record of its quote when the book holds none, as right after a restore)."""
        times = [q.received_ts for q in self.quotes.get(exchange, {}).values()] or [_side_ms(episode, side)]
        return max(times) + self._age(exchange) + 1

    def _step(self, pair: tuple[str, str], buy: Quote | None, sell: Quote | None, quote_ts: int | None,
              now: int, result: StepResult) -> None:
        episode = self.episodes.get(pair)
        if buy is None or sell is None:
            if episode is not None:
                stale = [self._stale_since(ex, episode, side)
                         for side, (ex, q) in enumerate(zip(pair, (buy, sell), strict=True)) if q is None]
                if min(stale) <= now:  # else: no quote in memory yet (a restore) and the last one still fresh
                    self._close(pair, episode, "stale", min(stale), result)
            return
        if episode is None and sell.bid <= buy.ask:
            return  # no gross spread: nothing can open (fees and thresholds are never negative)
        opp = evaluate_pair(buy, sell, self.rules.fee(pair[0]), self.rules.fee(pair[1]))
        if episode is None:
            if opens(opp, self.rules):
                self._open(pair, opp, result)
            return
        if stays_open(opp, self.rules):
            episode["last"] = opportunity_fields(opp)
            if opp.net_bps > episode["peak_bps"]:
                episode["peak_bps"], episode["peak_profit"] = opp.net_bps, opp.profit
                episode["peak_ms"] = max(buy.received_ts, sell.received_ts)
            result.episodes_changed = True
            return
        closed = quote_ts if quote_ts is not None else now
        episode["last"] = opportunity_fields(opp)  # the numbers that closed it
        self._close(pair, episode, "reverted", closed, result)

    def _open(self, pair: tuple[str, str], opp: Opportunity, result: StepResult) -> None:
        opened = max(opp.buy.received_ts, opp.sell.received_ts)
        last = self.last_opened.get(pair)
        if last is not None and opened <= last:
            opened = last + 1  # two episodes of one pair never share an id
        self.last_opened[pair] = opened
        fields = opportunity_fields(opp)
        episode = {"id": episode_id(self.asset, pair[0], pair[1], opened), "opened_ms": opened,
                   "peak_bps": opp.net_bps, "peak_profit": opp.profit, "peak_ms": opened, "last": fields}
        self.episodes[pair] = episode
        result.episodes_changed = True
        result.alerts.append(self._alert(episode, "open", fields, None, None))

    def _close(self, pair: tuple[str, str], episode: dict, reason: str, closed_ms: int,
               result: StepResult) -> None:
        del self.episodes[pair]
        result.episodes_changed = True
        closed_ms = max(closed_ms, episode["opened_ms"])
        result.alerts.append(self._alert(episode, "close", episode["last"], reason, closed_ms))

    def _alert(self, episode: dict, state: str, fields: Mapping[str, object], reason: str | None,
               closed_ms: int | None) -> dict[str, object]:
        rules = self.rules
        alert: dict[str, object] = {
            "alert_id": alert_id(episode["id"], state), "alert_type": ALERT_TYPE,
            "schema_version": SCHEMA_VERSION, "job": JOB, "episode_id": episode["id"],
            "episode_state": state, "close_reason": reason, "asset": self.asset, **fields,
            "peak_net_spread_bps": dec_text(episode["peak_bps"], _BPS_PLACES),
            "peak_net_profit_usd": dec_text(episode["peak_profit"], _USD_PLACES),
            "peak_ms": episode["peak_ms"], "opened_ms": episode["opened_ms"], "closed_ms": closed_ms,
            "duration_ms": None if closed_ms is None else closed_ms - episode["opened_ms"],
            "event_ms": episode["opened_ms"] if closed_ms is None else closed_ms,
            "min_net_bps": dec_text(rules.min_net_bps), "min_profit_usd": dec_text(rules.min_profit_usd),
            "min_notional_usd": dec_text(rules.min_notional_usd), "demo_mode": rules.demo,
        }
        alert["summary"] = summary(alert)
        return alert


# --- settings --------------------------------------------------------------------------------

def parse_max_ages(text: str, what: str = "--max-quote-ages-ms") -> dict[str, int]:
    out = {}
    for key, value in parse_mapping(text, what):
        name = exchange_name(key, what)
        out[name] = max_age_value(value, f"{what}[{name}]")
    return out


def max_age_value(value: object, what: str) -> int:
    try:
        ms = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"{what}: {value!r} is not a whole number of milliseconds") from None
    if not 0 < ms <= MAX_AGE_LIMIT_MS:
        raise ConfigError(f"{what}: {value!r} must be in 1..{MAX_AGE_LIMIT_MS} ms")
    return ms


def parse_args(argv: Sequence[str], env: Mapping[str, str] | None = None) -> argparse.Namespace:
    env = os.environ if env is None else env
    p = EnvDefaults(env, prog="quote_arbitrage.py", description=__doc__.split("\n\n")[0])
    p.opt("--bootstrap-servers", "KAFKA_BOOTSTRAP_SERVERS", KafkaSettings.bootstrap_servers,
          "Kafka bootstrap servers")
    p.opt("--quotes-topic", INPUT_VAR, INPUT_DEFAULT, "input topic (the producers' top-of-book quotes)")
    p.opt("--output-topic", OUTPUT_VAR, KafkaSettings.arbitrage_topic, "alert topic")
    add_group_and_sink_options(p, PREFIX, JOB)
    p.opt("--checkpoint-interval-ms", f"{PREFIX}_CHECKPOINT_INTERVAL_MS", 2000,
          "checkpoint interval (exactly-once alerts become visible at checkpoints)", type=int)
    p.opt("--parallelism", f"{PREFIX}_PARALLELISM", 0, "job parallelism (0 = cluster default)", type=int)
    p.opt("--demo", f"{PREFIX}_DEMO_MODE", "false",
          f"demo mode: open on any net gain after fees (min net {DEMO_MIN_NET_BPS} bps, profit "
          f"${DEMO_MIN_PROFIT_USD}, notional ${DEMO_MIN_NOTIONAL_USD}), whatever the thresholds say")
    p.opt("--min-net-bps", f"{PREFIX}_MIN_NET_BPS", "10",
          "an episode opens when the net spread after both taker fees exceeds this many basis points "
          "of the buy price")
    p.opt("--min-profit-usd", f"{PREFIX}_MIN_PROFIT_USD", "0",
          "... and the net profit on the executable size is at least this many dollars")
    p.opt("--min-notional-usd", f"{PREFIX}_MIN_NOTIONAL_USD", "100",
          "... and the executable size is worth at least this many dollars at the buy price")
    p.opt("--hysteresis-bps", f"{PREFIX}_HYSTERESIS_BPS", "0",
          "an open episode closes only when the net falls to min-net-bps minus this (0: at min-net-bps)")
    fees = ",".join(f"{k}={v}" for k, v in parse_fee_table("", "fees").items())
    p.opt("--taker-fees-bps", f"{PREFIX}_TAKER_FEES_BPS", "",
          f"taker fee per exchange in basis points, 'kraken=26,okx=8' or JSON, laid over the built-in "
          f"lowest-tier fees {fees}")
    p.opt("--default-taker-fee-bps", f"{PREFIX}_DEFAULT_TAKER_FEE_BPS", str(DEFAULT_OTHER_FEE_BPS),
          "taker fee in basis points of an exchange not in the fee table")
    p.opt("--max-quote-age-ms", f"{PREFIX}_MAX_QUOTE_AGE_MS", DEFAULT_MAX_AGE_MS,
          "a quote older than this (processing time - received_ts) is stale: not used, and an episode "
          "relying on it closes")
    p.opt("--max-quote-ages-ms", f"{PREFIX}_MAX_QUOTE_AGES_MS", "",
          "per-exchange max quote ages, 'kraken=3000' or JSON, over --max-quote-age-ms")
    p.opt("--exchanges", f"{PREFIX}_EXCHANGES", "",
          "compare only these exchanges, 'binance,kraken,okx' (empty: every exchange in the topic)")
    p.opt("--usd-quotes", f"{PREFIX}_USD_QUOTES", "USD,USDT,USDC", "quote currencies counted as US dollars at par")
    p.opt("--coalesce-ms", f"{PREFIX}_COALESCE_MS", DEFAULT_COALESCE_MS,
          "per market, only the newest quote of each window of this many ms (processing time) reaches "
          f"the Python function; 0 = every quote (max {MAX_COALESCE_MS})", type=int)
    p.opt("--python-execution-mode", f"{PREFIX}_PYTHON_EXECUTION_MODE", "thread",
          "PyFlink execution mode of the process function: thread (embedded, per-record) or process "
          "(Beam worker, bundled)", choices=EXECUTION_MODES)
    p.add_argument("--explain", action="store_true", help="print the plan instead of submitting")
    p.epilog = kafka_env_epilog()
    args = p.parse_args(list(argv))
    _validate(args, env)
    return args


def _validate(args: argparse.Namespace, env: Mapping[str, str]) -> None:
    for name in ("checkpoint_interval_ms", "parallelism"):
        if int(getattr(args, name)) < 0:
            raise ConfigError(f"--{name.replace('_', '-')}: must not be negative")
    if not 0 <= int(args.coalesce_ms) <= MAX_COALESCE_MS:
        raise ConfigError(f"--coalesce-ms: {args.coalesce_ms} must be in 0..{MAX_COALESCE_MS} ms "
                          f"(0 = no coalescing)")
    if int(args.checkpoint_interval_ms) < 100:
        raise ConfigError("--checkpoint-interval-ms: checkpointing is required (>= 100)")
    args.kafka = kafka_settings_with_input(args, env, "quotes_topic", INPUT_VAR, OUTPUT_VAR)
    args.quotes_topic = args.quotes_topic.strip()
    args.demo = parse_bool(args.demo, "--demo")
    args.min_net_bps = parse_decimal(args.min_net_bps, "--min-net-bps", positive=False)
    args.min_profit_usd = parse_decimal(args.min_profit_usd, "--min-profit-usd", positive=False)
    args.min_notional_usd = parse_decimal(args.min_notional_usd, "--min-notional-usd", positive=False)
    args.hysteresis_bps = parse_decimal(args.hysteresis_bps, "--hysteresis-bps", positive=False)
    if args.hysteresis_bps > args.min_net_bps:
        raise ConfigError(f"--hysteresis-bps: {args.hysteresis_bps} is more than --min-net-bps "
                          f"{args.min_net_bps} (an episode would close only at a net loss)")
    args.taker_fees_bps = parse_fee_table(args.taker_fees_bps, "--taker-fees-bps")
    args.default_taker_fee_bps = parse_fee_bps(args.default_taker_fee_bps, "--default-taker-fee-bps")
    args.max_quote_age_ms = max_age_value(args.max_quote_age_ms, "--max-quote-age-ms")
    args.max_quote_ages_ms = parse_max_ages(args.max_quote_ages_ms)
    shortest = min([args.max_quote_age_ms, *args.max_quote_ages_ms.values()])
    if int(args.coalesce_ms) >= shortest:
        raise ConfigError(f"--coalesce-ms: {args.coalesce_ms} ms is not below the shortest max quote age "
                          f"({shortest} ms): quotes would wait in the window until they are stale")
    names = [exchange_name(e, "--exchanges") for e in str(args.exchanges).split(",") if e.strip()]
    if str(args.exchanges).strip() and len(set(names)) < 2:
        raise ConfigError(f"--exchanges: {args.exchanges!r} names fewer than two exchanges (empty = every exchange)")
    args.exchanges = sorted(set(names))
    quotes = [q.strip().upper() for q in str(args.usd_quotes).split(",") if q.strip()]
    if not quotes or not all(q.isalnum() for q in quotes):
        raise ConfigError(f"--usd-quotes: {args.usd_quotes!r} is not a list like USD,USDT")
    args.usd_quotes = quotes


def rules_from_args(args: argparse.Namespace) -> Rules:
    demo = bool(args.demo)
    return Rules(
        min_net_bps=DEMO_MIN_NET_BPS if demo else args.min_net_bps,
        min_profit_usd=DEMO_MIN_PROFIT_USD if demo else args.min_profit_usd,
        min_notional_usd=DEMO_MIN_NOTIONAL_USD if demo else args.min_notional_usd,
        hysteresis_bps=Decimal(0) if demo else args.hysteresis_bps,
        fees_bps=dict(args.taker_fees_bps), default_fee_bps=args.default_taker_fee_bps,
        max_age_ms=dict(args.max_quote_ages_ms), default_max_age_ms=args.max_quote_age_ms, demo=demo,
    )


# --- Flink ------------------------------------------------------------------------------------

# --- coalescing (Flink SQL, before any Python) --------------------------------------------------
#
# Every quote crosses into Python at most once, and most never do: per market (exchange,
# symbol) the SQL stage keeps, in processing-time tumbling windows of --coalesce-ms, only the
# newest quote, and hands the process function one string per market and window:
#
#   count | k_exchange_ts | k_sequence | k_received_ts | k_offset | asset | exchange | symbol |
#   bid | bid_size | ask | ask_size | received_ts | exchange_ts | sequence
#
# `count` is how many quotes of the market arrived in the window (the others were replaced
# without being looked at); the four k_ fields are the order key, zero-padded to 19 digits so
# that the string maximum (MAX, a plain aggregate on one column, so a null in one field cannot
# mix two quotes as LAST_VALUE per column would) is the quote newest in the venue's order:
# exchange_ts, then sequence, then received_ts, then the Kafka offset (arrival order within the
# market's partition), a missing or negative value counting as 0. The rest is parse_quote's
# arguments in its order, '' for a missing value. A '|' inside a field (no valid quote has one)
# changes the number of fields, and the quote is dropped as malformed.

PAYLOAD_SEP = "|"
ORDER_KEY_COLUMNS = ("exchange_ts", "sequence", "received_ts", "offset")
QUOTE_COLUMNS = ("exchange", "symbol", "bid", "bid_size", "ask", "ask_size", "received_ts", "exchange_ts",
                 "sequence")  # parse_quote's parameters, in its order
PAYLOAD_FIELDS = 1 + len(ORDER_KEY_COLUMNS) + 1 + len(QUOTE_COLUMNS)
ORDER_KEY_DIGITS = 19  # a positive BIGINT has at most 19 digits
DEFAULT_COALESCE_MS = 20
MAX_COALESCE_MS = 500
_INT_COLUMNS = {"received_ts", "exchange_ts", "sequence"}


def _optional_int(text: str) -> int | None:
    return int(text) if text else None


def parse_payload(payload: str) -> tuple[int, str, Quote | str]:
    """(quotes of the market in the window, asset, the Quote or the reason it is dropped) of one
    row of the coalescing stage (see the layout above)."""
    parts = payload.split(PAYLOAD_SEP)
    count = int(parts[0])  # written by SQL: always a number
    if len(parts) != PAYLOAD_FIELDS:
        return count, "", MALFORMED
    try:
        received_ts, exchange_ts, sequence = (_optional_int(parts[12]), _optional_int(parts[13]),
                                              _optional_int(parts[14]))
    except ValueError:
        return count, parts[5], MALFORMED
    return count, parts[5], parse_quote(parts[6], parts[7], parts[8], parts[9], parts[10], parts[11],
                                        received_ts, exchange_ts, sequence)


def source_ddl(args: argparse.Namespace) -> str:
    """The quotes topic as a table of strings, with the Kafka offset and a processing-time
    attribute. Everything stays a string here: the process function parses the numbers exactly
    and counts what it drops (a SQL filter would drop bad quotes without a trace)."""
    options = json_source_options(args, args.kafka, args.quotes_topic)
    return f"""
CREATE TABLE quotes (
  `exchange` STRING,
  `symbol` STRING,
  `bid` STRING,
  `bid_size` STRING,
  `ask` STRING,
  `ask_size` STRING,
  `exchange_ts` BIGINT,
  `received_ts` BIGINT,
  `sequence` BIGINT,
  `offset` BIGINT METADATA VIRTUAL,
  `proc_time` AS PROCTIME()
) {with_options(options)}"""


def _order_key_sql(column: str) -> str:
    value = f"`{column}`"
    return (f"LPAD(CAST(CASE WHEN {value} > 0 THEN {value} ELSE 0 END AS STRING), {ORDER_KEY_DIGITS}, '0')")


def _field_sql(column: str, exprs: Mapping[str, str]) -> str:
    """A payload field: never NULL (CONCAT of a NULL is NULL), '' for a missing value."""
    expr = exprs.get(column, f"`{column}`")
    if column in _INT_COLUMNS:
        expr = f"CAST({expr} AS STRING)"
    return f"COALESCE({expr}, '')"


def usd_quotes_view(args: argparse.Namespace) -> str:
    """USD-like markets only (and only --exchanges), names trimmed, each quote packed into the
    payload string without its count: `order key | asset | parse_quote's arguments`."""
    exprs = {"asset": "UPPER(SPLIT_INDEX(TRIM(`symbol`), '-', 0))", "exchange": "LOWER(TRIM(`exchange`))",
             "symbol": "UPPER(TRIM(`symbol`))"}
    fields = [_order_key_sql(c) for c in ORDER_KEY_COLUMNS]
    fields += [_field_sql(c, exprs) for c in ("asset", *QUOTE_COLUMNS)]
    sep = f", {sql_str(PAYLOAD_SEP)},\n    "
    usd = ", ".join(sql_str(q) for q in args.usd_quotes)
    only = (f" AND LOWER(TRIM(`exchange`)) IN ({', '.join(sql_str(e) for e in args.exchanges)})"
            if args.exchanges else "")
    return f"""
CREATE TEMPORARY VIEW usd_quotes AS
SELECT
  {exprs['asset']} AS `asset`,
  {exprs['exchange']} AS `exchange`,
  {exprs['symbol']} AS `symbol`,
  CONCAT(
    {sep.join(fields)}) AS `packed`,
  `proc_time`
FROM quotes
WHERE `exchange` IS NOT NULL AND `symbol` IS NOT NULL
  AND UPPER(SPLIT_INDEX(TRIM(`symbol`), '-', 1)) IN ({usd}){only}"""


def coalesce_query(coalesce_ms: int) -> str:
    """(asset, payload) rows for the process function: per market and window of `coalesce_ms`
    (processing time) the newest quote and the count; 0 = every quote, count 1."""
    if coalesce_ms == 0:
        return f"SELECT `asset`, CONCAT('1', {sql_str(PAYLOAD_SEP)}, `packed`) AS `payload` FROM usd_quotes"
    return f"""
SELECT `asset`, CONCAT(CAST(COUNT(*) AS STRING), {sql_str(PAYLOAD_SEP)}, MAX(`packed`)) AS `payload`
FROM TABLE(TUMBLE(TABLE usd_quotes, DESCRIPTOR(`proc_time`), {sql_interval_ms(coalesce_ms)}))
GROUP BY `window_start`, `window_end`, `asset`, `exchange`, `symbol`"""


def sql_interval_ms(ms: int) -> str:
    """INTERVAL '0.020' SECOND: a window of ms milliseconds (below 1 s: two digits suffice)."""
    if not 0 < ms < 1000:
        raise ValueError(f"{ms} ms: only windows of 1..999 ms")
    return f"INTERVAL '{ms / 1000:.3f}' SECOND"


def source_statements(args: argparse.Namespace) -> tuple[str, str, str]:
    """The quotes table, the view of packed USD-like quotes, and the query the process function
    reads (coalesced unless --coalesce-ms is 0)."""
    return source_ddl(args), usd_quotes_view(args), coalesce_query(int(args.coalesce_ms))


def sink_columns() -> str:
    return ",\n".join(f"  `{name}` {sql_type}" for name, sql_type in ALERT_FIELDS)


def make_process_function(rules: Rules):
    """The KeyedProcessFunction (keyed by asset) around AssetBook, with its state and timers."""
    from pyflink.common import Row
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import KeyedProcessFunction
    from pyflink.datastream.state import ValueStateDescriptor

    names = [name for name, _ in ALERT_FIELDS]

    class QuoteArbitrage(KeyedProcessFunction):
        def open(self, runtime_context) -> None:
            # Checkpointed: the open episodes (and each pair's last opened_ms) per asset. Not
            # checkpointed: the quotes. A quote is useful for max age (<= 60 s) only, less than
            # a restore takes, and writing each one to state would cost more than the rest of
            # its handling; after a restore the books fill again from the next quotes, and an
            # open episode is judged by the quote times it recorded until they arrive.
            self.episode_state = runtime_context.get_state(
                ValueStateDescriptor("episodes", Types.PICKLED_BYTE_ARRAY()))
            self.timer_state = runtime_context.get_state(ValueStateDescriptor("timer", Types.LONG()))
            self.books: dict[str, AssetBook] = {}
            group = runtime_context.get_metrics_group()
            self.counters = {reason: group.counter(reason) for reason in (*DROP_REASONS, COALESCED)}
            self.logged: dict[str, float] = {}
            # Quotes replaced in the coalescing stage: added up here and handed to the Flink
            # counter at most every COUNTER_FLUSH_MS (each inc() is a call into the JVM).
            self.coalesced = 0
            self.coalesced_flushed_ms = 0

        def _book(self, asset: str) -> AssetBook:
            book = self.books.get(asset)
            if book is None:
                book = self.books[asset] = AssetBook(asset, rules)
                book.load_episode_state(self.episode_state.value())
            return book

        def _dropped(self, reason: str, row) -> None:
            self.counters[reason].inc()
            now = time.monotonic()
            if now - self.logged.get(reason, -1e9) >= 60:
                self.logged[reason] = now
                log.warning("quote dropped (%s; further ones this minute only counted): %s", reason, row)

        def process_element(self, payload, ctx):
            count, asset, quote = parse_payload(payload)
            # Flink's processing time is this host's wall clock: reading it here saves a call
            # into the JVM per quote.
            now = int(time.time() * 1000)
            if count > 1:
                self.coalesced += count - 1
            if self.coalesced and now - self.coalesced_flushed_ms >= COUNTER_FLUSH_MS:
                self.counters[COALESCED].inc(self.coalesced)
                self.coalesced, self.coalesced_flushed_ms = 0, now
            if isinstance(quote, str):
                self._dropped(quote, payload)
                return
            book = self._book(asset)
            result = book.on_quote(quote, now)
            if isinstance(result, str):
                self._dropped(result, payload)
                return
            yield from self._emit(book, result, ctx, now, result.episodes_changed)

        def on_timer(self, timestamp: int, ctx):
            self.timer_state.clear()
            now = ctx.timer_service().current_processing_time()
            book = self._book(ctx.get_current_key())
            yield from self._emit(book, book.on_timer(now), ctx, now, True)

        def _emit(self, book: AssetBook, result: StepResult, ctx, now: int, rearm: bool):
            if result.episodes_changed:
                self.episode_state.update(book.episode_state())
            if rearm:
                # One timer per asset, at the first moment an open episode's quote can turn
                # stale; quotes that arrive meanwhile only move that moment later, so the timer
                # re-checks and re-arms itself rather than being moved on every quote.
                deadline = book.next_deadline(now)
                pending = self.timer_state.value()
                if deadline is not None and (pending is None or deadline < pending):
                    ctx.timer_service().register_processing_time_timer(deadline)
                    self.timer_state.update(deadline)
            for alert in result.alerts:
                yield Row(*[alert[name] for name in names])

    return QuoteArbitrage()


def alert_type_info():
    from pyflink.common.typeinfo import Types

    types = {"STRING": Types.STRING(), "BIGINT": Types.LONG(), "INT": Types.INT(), "BOOLEAN": Types.BOOLEAN()}
    return Types.ROW_NAMED([n for n, _ in ALERT_FIELDS], [types[t] for _, t in ALERT_FIELDS])


def run(args: argparse.Namespace) -> None:
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import KeyedStream
    from pyflink.java_gateway import get_gateway

    env, t_env = create_stream_envs(args, PIPELINE_NAME)
    conf = t_env.get_config()
    conf.set("python.execution-mode", args.python_execution_mode)
    if args.python_execution_mode == "process" and not conf.get("python.fn-execution.bundle.time", ""):
        # A Beam bundle is handed back after 1 s by default: an alert would wait for it.
        conf.set("python.fn-execution.bundle.time", "10")
    ddl, view, query = source_statements(args)
    t_env.execute_sql(ddl)
    t_env.execute_sql(view)
    # Rows (asset, payload) keyed by their first field in Java, as DataStream.key_by does after
    # its Python key selector: that selector would be a Python operator of its own, every
    # record crossing into Python twice. The Python keyed operator reads its input as a
    # RowTypeInfo (key, value), which to_data_stream does not give (its rows are typed
    # ExternalTypeInfo): hence the older to_append_stream with the type spelled out.
    rows = t_env.to_append_stream(t_env.sql_query(query), Types.ROW_NAMED(["asset", "payload"],
                                                                          [Types.STRING(), Types.STRING()]))
    keyed = KeyedStream(rows._j_data_stream.keyBy(get_gateway().jvm.KeyByKeySelector(),
                                                  Types.ROW([Types.STRING()]).get_java_type_info()),
                        Types.STRING(), rows)
    alerts = (keyed.process(make_process_function(rules_from_args(args)), output_type=alert_type_info())
              .name("quote-arbitrage").uid("quote-arbitrage-episodes"))
    t_env.create_temporary_view("quote_arbitrage_alerts", t_env.from_data_stream(alerts))
    t_env.execute_sql(sink_ddl("arbitrage_alerts", sink_columns(), args.kafka.arbitrage_topic, args, args.kafka))
    insert = "INSERT INTO arbitrage_alerts SELECT * FROM quote_arbitrage_alerts"
    if args.explain:
        print(t_env.explain_sql(insert))
        return
    job = t_env.execute_sql(insert).get_job_client()
    name = t_env.get_config().get("pipeline.name", PIPELINE_NAME)
    print(f"submitted {name}: JobID {job.get_job_id() if job else '?'}", flush=True)


def main(argv: Sequence[str] | None = None) -> int:
    try:
        args = parse_args(_demo_argv(sys.argv[1:] if argv is None else argv))
    except ConfigError as exc:
        print(f"quote_arbitrage: {exc}", file=sys.stderr)
        return 2
    run(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
