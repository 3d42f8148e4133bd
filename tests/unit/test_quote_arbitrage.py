"""The quote arbitrage job's pure parts (no JVM): quote checks, pair arithmetic, episodes,
staleness, settings and the generated SQL."""

from __future__ import annotations

import importlib.util
import inspect
import re
import sys
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import pytest

REPO = Path(__file__).resolve().parents[2]
JOBS = REPO / "flink_jobs"
sys.path.insert(0, str(JOBS))

import flink_common  # noqa: E402
import kafka_settings  # noqa: E402


def load(name: str) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"job_{name}", JOBS / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


qa = load("quote_arbitrage")
T = 1_800_000_000_000  # processing time "now" of the scenarios


def quote(exchange: str, bid: str, ask: str, bid_size: str = "1", ask_size: str = "1", ts: int = T,
          symbol: str = "BTC-USDT", exchange_ts: int | None = None, sequence: int | None = None):
    q = qa.parse_quote(exchange, symbol, bid, bid_size, ask, ask_size, ts, exchange_ts, sequence)
    assert not isinstance(q, str), q
    return q


def rules(**kw) -> qa.Rules:
    base = {"min_net_bps": Decimal(10), "min_profit_usd": Decimal(0), "min_notional_usd": Decimal(100),
            "fees_bps": {"a": Decimal(0), "b": Decimal(0)}, "default_fee_bps": Decimal(0)}
    return qa.Rules(**{**base, **kw})


# --- quotes -----------------------------------------------------------------------------------

@pytest.mark.parametrize(("bid", "ask", "bid_size", "ask_size", "reason"), [
    ("100", "100", "1", "1", qa.CROSSED),          # locked
    ("100.5", "100", "1", "1", qa.CROSSED),        # crossed
    ("99", "100", "0", "1", qa.BAD_SIZE),
    ("99", "100", "1", "0.000", qa.BAD_SIZE),
    ("99", "100", "-1", "1", qa.BAD_SIZE),
    ("abc", "100", "1", "1", qa.MALFORMED),
    (None, "100", "1", "1", qa.MALFORMED),
    ("NaN", "100", "1", "1", qa.MALFORMED),
    ("Infinity", "1e9999", "1", "1", qa.MALFORMED),
    ("0", "100", "1", "1", qa.MALFORMED),
])
def test_bad_quotes_are_refused_with_their_reason(bid, ask, bid_size, ask_size, reason) -> None:
    assert qa.parse_quote("a", "BTC-USDT", bid, bid_size, ask, ask_size, T, None, None) == reason


@pytest.mark.parametrize(("exchange", "symbol", "received"), [
    (None, "BTC-USDT", T), ("a", "", T), ("a", "BTC-USDT", None), ("a", "BTC-USDT", 0)])
def test_quotes_without_exchange_symbol_or_time_are_malformed(exchange, symbol, received) -> None:
    assert qa.parse_quote(exchange, symbol, "1", "1", "2", "1", received, None, None) == qa.MALFORMED


def test_a_good_quote_keeps_exact_values() -> None:
    q = quote("a", "43250.120000000001", "43250.13", bid_size="0.5", exchange_ts=T - 5, sequence=7)
    assert q.bid == Decimal("43250.120000000001") and q.bid_size == Decimal("0.5")
    assert (q.received_ts, q.exchange_ts, q.sequence) == (T, T - 5, 7)


@pytest.mark.parametrize(("new", "held", "older"), [
    ({"exchange_ts": 10, "sequence": 9}, {"exchange_ts": 11, "sequence": 1}, True),    # venue time first
    ({"exchange_ts": 12, "sequence": 1}, {"exchange_ts": 11, "sequence": 9}, False),   # renumbered, later
    ({"sequence": 4}, {"sequence": 5}, True),
    ({"sequence": 6, "ts": T - 10}, {"sequence": 5}, False),                          # sequence beats receive time
    ({"exchange_ts": 11, "sequence": 4}, {"exchange_ts": 11, "sequence": 5}, True),
    ({"ts": T - 1}, {}, True),                                                         # receive time, nothing else
    ({}, {}, False),                                                                   # the same quote again
])
def test_is_older(new: dict, held: dict, older: bool) -> None:
    assert qa.is_older(quote("a", "1", "2", **new), quote("a", "1", "2", **held)) is older


# --- pair arithmetic --------------------------------------------------------------------------

def test_net_spread_after_both_fees_and_the_executable_size() -> None:
    buy = quote("a", "99", "100", ask_size="2")
    sell = quote("b", "101", "102", bid_size="0.5")
    opp = qa.evaluate_pair(buy, sell, Decimal(10), Decimal(25))
    # 101 * (1 - 0.0025) - 100 * (1 + 0.001) = 100.7475 - 100.1 = 0.6475
    assert opp.net == Decimal("0.6475")
    assert opp.gross == Decimal(1)
    assert opp.size == Decimal("0.5")
    assert opp.net_bps == Decimal("64.75")
    assert opp.profit == Decimal("0.32375")
    assert opp.notional == Decimal(50)


def test_exact_decimals_beyond_float_precision() -> None:
    buy = quote("a", "0.000000000001", "0.000000000002", ask_size="123456789012.123456789012")
    sell = quote("b", "0.000000000003", "0.000000000004", bid_size="223456789012.123456789012")
    opp = qa.evaluate_pair(buy, sell, Decimal(0), Decimal(0))
    assert opp.notional == Decimal("123456789012.123456789012") * Decimal("0.000000000002")
    assert opp.net_bps == Decimal(5000)


@pytest.mark.parametrize(("value", "places", "text"), [
    (Decimal("1.500"), None, "1.5"), (Decimal("100"), None, "100"), (Decimal("1E+2"), None, "100"),
    (Decimal("0.125"), Decimal("0.01"), "0.13"), (Decimal("-0.125"), Decimal("0.01"), "-0.13"),
    (Decimal("-0.0001"), Decimal("0.01"), "0"), (Decimal("0E-10"), None, "0"),
])
def test_dec_text(value: Decimal, places: Decimal | None, text: str) -> None:
    assert qa.dec_text(value, places) == text


# --- episodes ---------------------------------------------------------------------------------

def book(**kw) -> qa.AssetBook:
    return qa.AssetBook("BTC", rules(**kw))


def feed(b: qa.AssetBook, q, now: int = T) -> list[dict]:
    result = b.on_quote(q, now)
    assert not isinstance(result, str), result
    return result.alerts


def test_an_episode_opens_once_tracks_its_peak_and_closes_on_reversal() -> None:
    b = book()
    assert feed(b, quote("a", "99.9", "100", ask_size="5")) == []
    [opened] = feed(b, quote("b", "100.2", "100.3", bid_size="2", ts=T + 5), T + 5)   # 20 bps
    assert opened["episode_state"] == "open" and opened["close_reason"] is None
    assert (opened["buy_exchange"], opened["sell_exchange"]) == ("a", "b")
    assert (opened["buy_price"], opened["sell_price"], opened["size"]) == ("100", "100.2", "2")
    assert (opened["net_spread_bps"], opened["net_profit_usd"], opened["notional_usd"]) == ("20", "0.4", "200")
    assert opened["opened_ms"] == T + 5 and opened["closed_ms"] is None and opened["duration_ms"] is None
    assert opened["alert_id"] == f"quote_arbitrage:BTC:a:b:{T + 5}:open"
    assert opened["episode_id"] == f"quote_arbitrage:BTC:a:b:{T + 5}"
    # Wider, then narrower but still open: no message.
    assert feed(b, quote("b", "100.5", "100.6", bid_size="2", ts=T + 10), T + 10) == []
    assert feed(b, quote("b", "100.15", "100.6", bid_size="2", ts=T + 20), T + 20) == []
    [closed] = feed(b, quote("b", "100.05", "100.6", bid_size="2", ts=T + 30), T + 30)  # 5 bps
    assert closed["episode_state"] == "close" and closed["close_reason"] == "reverted"
    assert closed["episode_id"] == opened["episode_id"] and closed["alert_id"].endswith(":close")
    assert (closed["closed_ms"], closed["duration_ms"]) == (T + 30, 25)
    assert (closed["peak_net_spread_bps"], closed["peak_ms"]) == ("50", T + 10)
    assert closed["net_spread_bps"] == "5"  # the numbers that closed it
    assert "closed (reverted) after 25 ms, peak 50 bps" in closed["summary"]
    assert "net 5 bps after fees, $0.1 on 2 ($200)" in closed["summary"]
    assert qa.usd("-0.553") == "-$0.553"
    assert b.episodes == {}


def test_exactly_at_the_threshold_does_not_open_and_thresholds_combine() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    assert feed(b, quote("b", "100.1", "100.2", bid_size="5")) == []       # exactly 10 bps
    b = book(min_notional_usd=Decimal(1000))
    feed(b, quote("a", "99", "100", ask_size="5"))
    assert feed(b, quote("b", "101", "102", bid_size="9")) == []           # $500 executable
    b = book(min_profit_usd=Decimal(6))
    feed(b, quote("a", "99", "100", ask_size="5"))
    assert feed(b, quote("b", "101", "102", bid_size="5")) == []           # $5 profit


def test_fees_turn_a_gross_spread_into_nothing() -> None:
    b = book(fees_bps={"a": Decimal(10), "b": Decimal(10)})
    feed(b, quote("a", "99", "100", ask_size="5"))
    # Gross 25 bps, net 100.25*0.999 - 100*1.001 = 0.04975 -> 4.975 bps < 10.
    assert feed(b, quote("b", "100.25", "100.3", bid_size="5")) == []
    assert feed(b, quote("b", "100.35", "100.4", bid_size="5")) != []      # net 14.965 bps


def test_both_directions_are_pairs_of_their_own() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    [first] = feed(b, quote("b", "101", "102", bid_size="5"))
    assert (first["buy_exchange"], first["sell_exchange"]) == ("a", "b")
    # a's new book ends a->b (ask 104 > bid 101) and opens b->a (ask 102 < bid 103).
    closed, opened = feed(b, quote("a", "103", "104", bid_size="5", ts=T + 1), T + 1)
    assert (closed["episode_state"], closed["buy_exchange"], closed["sell_exchange"]) == ("close", "a", "b")
    assert (opened["episode_state"], opened["buy_exchange"], opened["sell_exchange"]) == ("open", "b", "a")
    assert opened["buy_price"] == "102" and opened["sell_price"] == "103"


def test_a_crossed_book_is_dropped_and_raises_nothing() -> None:
    b = book()
    feed(b, quote("b", "99.9", "100", bid_size="5"))
    assert qa.parse_quote("a", "BTC-USDT", "101", "5", "100.5", "5", T, None, None) == qa.CROSSED
    assert b.on_quote(quote("a", "99", "99.5", ask_size="0.1"), T).alerts == []   # $10 < min notional


def test_out_of_order_quote_is_dropped_while_the_held_one_is_fresh() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5", sequence=10))
    assert b.on_quote(quote("a", "99", "99.5", ask_size="5", sequence=9), T) == qa.OUT_OF_ORDER
    assert b.quotes["a"]["BTC-USDT"].sequence == 10
    # Once the held one is stale, a renumbered venue is taken back.
    assert not isinstance(b.on_quote(quote("a", "99", "99.5", ask_size="5", sequence=1, ts=T + 2500), T + 2500), str)


def test_an_old_quote_never_opens() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    assert feed(b, quote("b", "101", "102", bid_size="5", ts=T - 2001)) == []  # stale on arrival
    assert feed(b, quote("b", "101", "102", bid_size="5", ts=T - 2000)) != []  # exactly max age: fresh


def test_staleness_closes_at_the_moment_the_side_turned_stale() -> None:
    b = book(max_age_ms={"b": 500})
    feed(b, quote("a", "99", "100", ask_size="5"))
    feed(b, quote("b", "101", "102", bid_size="5", ts=T + 100), T + 100)
    assert b.next_deadline(T + 100) == T + 601          # b's quote, 500 ms + 1
    assert b.on_timer(T + 600).alerts == []             # not yet
    # a keeps quoting: the episode stays, b goes silent.
    feed(b, quote("a", "99", "100", ask_size="5", ts=T + 550), T + 550)
    [closed] = b.on_timer(T + 601).alerts
    assert closed["close_reason"] == "stale" and closed["closed_ms"] == T + 601
    assert closed["duration_ms"] == 501
    assert b.next_deadline(T + 601) is None


def test_a_stale_side_noticed_by_a_quote_also_closes_as_stale() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    feed(b, quote("b", "101", "102", bid_size="5"))
    [closed] = feed(b, quote("a", "99", "100", ask_size="5", ts=T + 3000), T + 3000)
    assert (closed["close_reason"], closed["closed_ms"]) == ("stale", T + 2001)


def test_best_side_over_an_exchanges_usd_like_markets() -> None:
    b = book()
    feed(b, quote("a", "99", "100.5", ask_size="5", symbol="BTC-USDT"))
    feed(b, quote("a", "99", "100", ask_size="5", symbol="BTC-USDC"))
    [opened] = feed(b, quote("b", "100.3", "100.4", bid_size="5", symbol="BTC-USD"))
    assert (opened["buy_symbol"], opened["buy_price"], opened["sell_symbol"]) == ("BTC-USDC", "100", "BTC-USD")


def test_reopening_in_the_same_millisecond_gets_a_new_id() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    [first] = feed(b, quote("b", "101", "102", bid_size="5"))
    [closed] = feed(b, quote("b", "100", "102", bid_size="5"))
    [again] = feed(b, quote("b", "101", "102", bid_size="5"))
    assert closed["episode_id"] == first["episode_id"]
    assert again["episode_id"] != first["episode_id"] and again["opened_ms"] == T + 1


def test_hysteresis_keeps_an_episode_open_below_the_opening_threshold() -> None:
    b = book(hysteresis_bps=Decimal(5))
    feed(b, quote("a", "99", "100", ask_size="5"))
    assert feed(b, quote("b", "100.2", "100.3", bid_size="5"))                 # 20 bps: open
    assert feed(b, quote("b", "100.06", "100.3", bid_size="5")) == []          # 6 bps: still open
    [closed] = feed(b, quote("b", "100.05", "100.3", bid_size="5"))            # 5 bps: closes
    assert closed["close_reason"] == "reverted"


def restored(b: qa.AssetBook) -> qa.AssetBook:
    """What a restore gives: the checkpointed episodes (pickled), no quotes."""
    import pickle

    again = book()
    again.load_episode_state(pickle.loads(pickle.dumps(b.episode_state())))
    return again


def test_after_a_restore_an_episode_waits_for_its_sides_then_closes_on_reversal() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    [opened] = feed(b, quote("b", "101", "102", bid_size="5", ts=T + 5), T + 5)
    again = restored(b)
    # Only b quotes again: a's side is not in memory, but its recorded quote is still fresh.
    assert feed(again, quote("b", "101.5", "102", bid_size="5", ts=T + 500), T + 500) == []
    assert again.next_deadline(T + 500) == T + 2001
    feed(again, quote("a", "99", "100", ask_size="5", ts=T + 600), T + 600)
    [closed] = feed(again, quote("b", "99.5", "102", bid_size="5", ts=T + 700), T + 700)
    assert closed["episode_id"] == opened["episode_id"]
    assert (closed["close_reason"], closed["duration_ms"], closed["peak_net_spread_bps"]) == ("reverted", 695, "150")


def test_after_a_restore_an_episode_whose_sides_stay_silent_closes_as_stale() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    [opened] = feed(b, quote("b", "101", "102", bid_size="5", ts=T + 5), T + 5)
    again = restored(b)
    assert again.on_timer(T + 1000).alerts == []
    [closed] = again.on_timer(T + 3000).alerts
    assert (closed["episode_id"], closed["close_reason"], closed["closed_ms"]) == (opened["episode_id"], "stale",
                                                                                 T + 2001)


def test_every_alert_field_is_present_in_the_sink_schema_order() -> None:
    b = book()
    feed(b, quote("a", "99", "100", ask_size="5"))
    [opened] = feed(b, quote("b", "101", "102", bid_size="5"))
    assert list(opened) == [name for name, _ in qa.ALERT_FIELDS]


# --- settings ---------------------------------------------------------------------------------

def args(*argv: str, env: dict[str, str] | None = None):
    return qa.parse_args(qa._demo_argv(list(argv)), env or {})


def test_defaults_and_environment() -> None:
    a = args(env={"QUOTE_ARBITRAGE_MIN_NET_BPS": "7.5", "KAFKA_QUOTES_TOPIC": "q.x",
                  "QUOTE_ARBITRAGE_MAX_QUOTE_AGES_MS": "kraken=3000"})
    r = qa.rules_from_args(a)
    assert (r.min_net_bps, r.min_notional_usd, r.default_max_age_ms) == (Decimal("7.5"), Decimal(100), 2000)
    assert r.max_age("kraken") == 3000 and r.max_age("binance") == 2000
    assert r.fee("coinbase") == Decimal(60) and r.fee("unknown") == Decimal(10)
    assert a.quotes_topic == "q.x" and a.kafka.arbitrage_topic == "signals.arbitrage"
    assert a.group_id == "cryptomon-flink-quote-arbitrage"
    assert a.python_execution_mode == "thread"
    assert a.coalesce_ms == qa.DEFAULT_COALESCE_MS == 20
    assert args(env={"QUOTE_ARBITRAGE_COALESCE_MS": "0"}).coalesce_ms == 0


def test_demo_mode_lowers_the_thresholds() -> None:
    r = qa.rules_from_args(args("--demo", "--min-net-bps", "50", "--min-notional-usd", "1000"))
    assert (r.min_net_bps, r.min_profit_usd, r.min_notional_usd, r.demo) == (Decimal(0), Decimal(0), Decimal(1), True)
    assert qa.rules_from_args(args(env={"QUOTE_ARBITRAGE_DEMO_MODE": "true"})).demo


@pytest.mark.parametrize(("argv", "message"), [
    (["--quotes-topic", "bad topic"], "KAFKA_QUOTES_TOPIC: 'bad topic' is not a valid Kafka topic name"),
    (["--quotes-topic", " "], "--quotes-topic: must not be empty"),
    (["--min-net-bps", "-1"], "--min-net-bps"),
    (["--min-net-bps", "x"], "is not a decimal number"),
    (["--hysteresis-bps", "20"], "more than --min-net-bps"),
    (["--taker-fees-bps", "kraken=1000"], "10 % or more"),
    (["--max-quote-age-ms", "0"], "--max-quote-age-ms: '0' must be in 1..60000"),
    (["--max-quote-ages-ms", "kraken=2.5"], "not a whole number"),
    (["--exchanges", "binance"], "fewer than two"),
    (["--usd-quotes", "US D"], "--usd-quotes"),
    (["--checkpoint-interval-ms", "50"], "checkpointing is required"),
    (["--bootstrap-servers", "nohost"], "is not host:port"),
    (["--coalesce-ms", "501"], "--coalesce-ms: 501 must be in 0..500 ms"),
    (["--coalesce-ms", "-1"], "--coalesce-ms: -1 must be in 0..500"),
    (["--coalesce-ms", "100", "--max-quote-ages-ms", "kraken=100"],
     "--coalesce-ms: 100 ms is not below the shortest max quote age (100 ms)"),
])
def test_bad_settings_name_the_problem(argv: list[str], message: str) -> None:
    with pytest.raises(kafka_settings.ConfigError, match=None) as err:
        args(*argv)
    assert message in str(err.value)


def test_main_exits_2_with_one_line_on_bad_settings(capsys: pytest.CaptureFixture[str]) -> None:
    assert qa.main(["--min-notional-usd", "lots"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("quote_arbitrage: --min-notional-usd") and err.count("\n") == 1


def test_fee_table_is_the_vwap_jobs_table() -> None:
    arbitrage = load("arbitrage_detector")
    assert flink_common.DEFAULT_TAKER_FEES_BPS == arbitrage.DEFAULT_TAKER_FEES_BPS
    assert qa.DEFAULT_OTHER_FEE_BPS == arbitrage.DEFAULT_OTHER_FEE_BPS


def test_source_sql_reads_strings_and_filters_usd_like_markets() -> None:
    a = args("--exchanges", "binance,coinbase", "--quotes-topic", "quotes.x", "--startup-mode", "earliest-offset")
    ddl, view, _ = qa.source_statements(a)
    assert "CREATE TABLE quotes" in ddl and "'topic' = 'quotes.x'" in ddl
    assert "'scan.startup.mode' = 'earliest-offset'" in ddl and "'json.ignore-parse-errors' = 'true'" in ddl
    assert "`bid` STRING" in ddl and "DECIMAL" not in ddl
    assert "`offset` BIGINT METADATA VIRTUAL" in ddl and "`proc_time` AS PROCTIME()" in ddl
    assert "CREATE TEMPORARY VIEW usd_quotes" in view
    assert "IN ('USD', 'USDT', 'USDC')" in view and "IN ('binance', 'coinbase')" in view
    assert "IN ('binance'" not in qa.source_statements(args())[1]


def packed_columns(view: str) -> list[str]:
    """The columns of the payload CONCAT, in order (the expression of asset/exchange/symbol
    names the raw column it is made from)."""
    concat = view[view.index("CONCAT("):view.index(") AS `packed`")]
    names = []
    for field in concat.split("'|'"):
        cols = re.findall(r"`(\w+)`", field)
        assert cols, field
        names.append("asset" if "SPLIT_INDEX" in field else cols[0])
    return names


def test_payload_fields_are_the_order_key_the_asset_and_parse_quotes_arguments() -> None:
    view = qa.usd_quotes_view(args())
    assert packed_columns(view) == [*qa.ORDER_KEY_COLUMNS, "asset", *qa.QUOTE_COLUMNS]
    assert qa.QUOTE_COLUMNS == tuple(inspect.signature(qa.parse_quote).parameters)
    assert qa.PAYLOAD_FIELDS == 1 + len(packed_columns(view))
    # CONCAT is NULL as soon as one argument is: every field has a fallback.
    fields = view[view.index("CONCAT("):view.index(") AS `packed`")].split("'|'")
    assert all("COALESCE(" in f for f in fields[len(qa.ORDER_KEY_COLUMNS):])
    assert all("ELSE 0 END AS STRING), 19, '0')" in f for f in fields[:len(qa.ORDER_KEY_COLUMNS)])


def test_coalescing_query_keeps_the_newest_quote_per_market_and_window() -> None:
    query = qa.coalesce_query(20)
    assert "TUMBLE(TABLE usd_quotes, DESCRIPTOR(`proc_time`), INTERVAL '0.020' SECOND)" in query
    assert "GROUP BY `window_start`, `window_end`, `asset`, `exchange`, `symbol`" in query
    assert "CAST(COUNT(*) AS STRING), '|', MAX(`packed`)" in query
    assert query.strip().startswith("SELECT `asset`, CONCAT(")
    assert qa.source_statements(args("--coalesce-ms", "5"))[2] == qa.coalesce_query(5)


def test_without_coalescing_every_quote_goes_through_with_count_1() -> None:
    query = qa.coalesce_query(0)
    assert "TUMBLE" not in query and "GROUP BY" not in query
    assert query == "SELECT `asset`, CONCAT('1', '|', `packed`) AS `payload` FROM usd_quotes"


@pytest.mark.parametrize(("ms", "literal"), [(1, "INTERVAL '0.001' SECOND"), (20, "INTERVAL '0.020' SECOND"),
                                             (500, "INTERVAL '0.500' SECOND")])
def test_sql_interval_ms(ms: int, literal: str) -> None:
    assert qa.sql_interval_ms(ms) == literal


@pytest.mark.parametrize("ms", [0, 1000, -5])
def test_sql_interval_ms_refuses_what_it_cannot_write(ms: int) -> None:
    with pytest.raises(ValueError, match="1..999 ms"):
        qa.sql_interval_ms(ms)


# The SQL stage, in Python: what usd_quotes packs (LPAD to 19 digits of max(value, 0); '' for a
# missing value) and what the window aggregate makes of a market's quotes (count | MAX).
def sql_packed(bid: str | None = "99", ask: str | None = "100", *, exchange: str = "a", symbol: str = "BTC-USDT",
               received_ts: int | None = T, exchange_ts: int | None = None, sequence: int | None = None,
               offset: int = 0, bid_size: str | None = "1", ask_size: str | None = "1") -> str:
    key = [str(max(v or 0, 0)).rjust(19, "0") for v in (exchange_ts, sequence, received_ts, offset)]
    values = [symbol.split("-")[0], exchange, symbol, bid, bid_size, ask, ask_size, received_ts, exchange_ts,
              sequence]
    return "|".join(key + ["" if v is None else str(v) for v in values])


def sql_window(*packed: str) -> str:
    return f"{len(packed)}|{max(packed)}"


def test_parse_payload_gives_the_count_the_asset_and_the_quote() -> None:
    count, asset, q = qa.parse_payload(sql_window(sql_packed("99.5", "100.25", exchange_ts=T - 3, sequence=7)))
    assert (count, asset) == (1, "BTC")
    assert (q.exchange, q.symbol, q.bid, q.ask, q.received_ts, q.exchange_ts, q.sequence) == \
        ("a", "BTC-USDT", Decimal("99.5"), Decimal("100.25"), T, T - 3, 7)
    assert qa.parse_payload(sql_window(sql_packed()))[2].exchange_ts is None


@pytest.mark.parametrize(("packed", "reason"), [
    (sql_packed("100", "99"), qa.CROSSED),
    (sql_packed(bid_size="0"), qa.BAD_SIZE),
    (sql_packed(bid=None), qa.MALFORMED),
    (sql_packed(received_ts=None), qa.MALFORMED),
    (sql_packed("9|9", "100"), qa.MALFORMED),            # a '|' in a field: the fields do not line up
    (sql_packed(exchange="bin|ance"), qa.MALFORMED),
])
def test_parse_payload_drops_what_parse_quote_drops(packed: str, reason: str) -> None:
    assert qa.parse_payload(sql_window(packed, packed))[0::2] == (2, reason)


@pytest.mark.parametrize(("quotes", "newest"), [
    # (kwargs of sql_packed in arrival order, index of the quote the window keeps)
    ([{"sequence": 100, "offset": 1, "bid": "1"}, {"sequence": 99, "offset": 2, "bid": "2"}], 0),
    ([{"exchange_ts": T, "sequence": 5, "offset": 1}, {"exchange_ts": T - 1, "sequence": 9, "offset": 2}], 0),
    ([{"received_ts": T + 1, "offset": 1}, {"received_ts": T, "offset": 2}], 0),
    ([{"sequence": 9, "offset": 1}, {"sequence": 10, "offset": 2}], 1),
    ([{"sequence": 99_999_999_999, "offset": 1}, {"sequence": 100_000_000_000, "offset": 2}], 1),  # not as text
    ([{"offset": 1, "bid": "2"}, {"offset": 2, "bid": "1"}], 1),  # all else equal: the later arrival
    ([{"offset": 9, "bid": "1"}, {"offset": 10, "bid": "2"}], 1),
])
def test_the_window_keeps_the_quote_is_older_ranks_newest(quotes: list[dict], newest: int) -> None:
    packed = [sql_packed(**q) for q in quotes]
    _, _, kept = qa.parse_payload(sql_window(*packed))
    parsed = [qa.parse_payload(sql_window(p))[2] for p in packed]
    assert kept.raw == parsed[newest].raw and kept.sequence == parsed[newest].sequence
    # ... and the job's own order agrees: no other quote of the window is newer.
    assert not any(qa.is_older(kept, other) for other in parsed)


def test_coalesced_quotes_are_never_older_than_the_last_window_s() -> None:
    """A late quote in the next window is still dropped by the book (and counted)."""
    b = book()
    _, _, first = qa.parse_payload(sql_window(sql_packed("99", "100", sequence=10)))
    _, _, late = qa.parse_payload(sql_window(sql_packed("150", "151", sequence=9)))
    assert not isinstance(b.on_quote(first, T), str)
    assert b.on_quote(late, T) == qa.OUT_OF_ORDER


def test_sink_columns_follow_the_alert_fields() -> None:
    cols = qa.sink_columns()
    assert cols.splitlines()[0].strip() == "`alert_id` STRING,"
    assert len(cols.splitlines()) == len(qa.ALERT_FIELDS)
