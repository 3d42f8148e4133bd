"""The replay servers' scripted arbitrage opportunities (what makes the quote arbitrage job fire
in a sandbox): venues of an asset stay close (their walks are pulled back to a shared start),
and for a few seconds of every period one venue's books sit far enough below its walk that
buying there and selling on any other venue clears both venues' taker fees (the job's own fee
table). Each venue dips at its own phase, so two never dip together; a live adapter reads the
dipped book and then the book back on the walk."""

from __future__ import annotations

import itertools
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from cryptomon.cli_args import EXIT_CONFIG
from cryptomon.producer.config import ProducerConfig
from cryptomon.producer.quote import Quote
from cryptomon.producer.registry import adapter_class, exchange_names, replay_class
from cryptomon.replay import REVERSION_TRADES, Market, Opportunity
from cryptomon.replay.cli import main, opportunity_of

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO / "flink_jobs"))
from flink_common import DEFAULT_TAKER_FEES_BPS  # noqa: E402  (the jobs' fee table)

BTC = {"binance": "BTCUSDT", "coinbase": "BTC-USD", "kraken": "BTC/USD", "okx": "BTC-USDT", "bybit": "BTCUSDT"}
DEFAULT_BPS = 200  # cryptomon-replay --opportunity-bps


def net_bps(buy: Market, buy_exchange: str, sell: Market, sell_exchange: str) -> Decimal:
    """Buy at `buy`'s ask, sell at `sell`'s bid, after both taker fees, in bps of the ask."""
    ask, bid = Decimal(buy.quote().ask), Decimal(sell.quote().bid)
    fee_buy, fee_sell = DEFAULT_TAKER_FEES_BPS[buy_exchange], DEFAULT_TAKER_FEES_BPS[sell_exchange]
    return (bid * (1 - fee_sell / 10_000) - ask * (1 + fee_buy / 10_000)) / ask * 10_000


def test_walks_of_an_asset_stay_close_and_come_back_when_far() -> None:
    a, b = Market("BTCUSDT", 7), Market("BTC-USD", 7)
    widest = Decimal(0)
    for i in range(60_000):
        a.make()
        b.make()
        if i % 100 == 0:
            widest = max(widest, abs(Decimal(a.price - b.price)) / a.anchor * 10_000)
    assert widest < 60  # bps; without the pull two walks this long drift apart ~70 bps (1 sd)
    far = Market("ETH-USD", 3)
    far.price = far.anchor * 105 // 100  # 5 % off
    for _ in range(5 * REVERSION_TRADES):
        far.make()
    assert abs(far.price - far.anchor) < far.anchor // 200  # back within 0.5 %


def test_a_dipped_venue_beats_every_other_venue_after_both_fees() -> None:
    """Every ordered pair of the five venues, over many walks: a margin, not luck."""
    worst = Decimal(10_000)
    for seed in range(8):
        markets = {ex: Market(sym, seed + i) for i, (ex, sym) in enumerate(BTC.items())}
        for step in range(12_000):
            for m in markets.values():
                m.make()
            if step % 1_000 != 999:
                continue
            for buy, sell in itertools.permutations(markets, 2):
                markets[buy].set_shift(DEFAULT_BPS)
                worst = min(worst, net_bps(markets[buy], buy, markets[sell], sell))
                markets[buy].set_shift(0)
                # not dipped, nothing to find (the fees are above the venues' disagreement)
                assert net_bps(markets[buy], buy, markets[sell], sell) < 0 or buy in ("binance", "okx", "bybit")
    assert worst > 20  # bps, even coinbase/kraken (100 bps of fees)


def test_a_shift_is_a_new_book_state_and_leaves_the_trades_alone() -> None:
    m, twin = Market("BTCUSDT", 1), Market("BTCUSDT", 1)
    m.make()
    twin.make()
    before = m.quote()
    m.set_shift(200)
    dipped = m.quote()
    assert dipped.update_id > before.update_id  # every venue's writer sends on a new update id
    assert Decimal(dipped.ask) < Decimal(before.bid) * Decimal("0.981")
    assert Decimal(dipped.bid) < Decimal(dipped.ask)
    m.set_shift(0)
    assert m.quote().bid == before.bid and m.quote().update_id > dipped.update_id
    assert [m.make().price_cents for _ in range(50)] == [twin.make().price_cents for _ in range(50)]


def test_each_venue_dips_at_its_own_phase() -> None:
    names = exchange_names(real_only=True)
    opps = {ex: opportunity_of(ex, 60, 5, DEFAULT_BPS) for ex in names}
    assert len({o.offset_s for o in opps.values()}) == len(names)
    for t in range(0, 600):
        assert sum(o.active(1_800_000_000 + t) for o in opps.values()) <= 1, t
    assert sum(opps["binance"].active(1_800_000_000 + t) for t in range(60)) == 5
    assert opportunity_of("binance", 0, 5, DEFAULT_BPS) is None  # off


@pytest.mark.parametrize("every, for_s, bps, message", [
    (10, 10, 200, "less than its period"), (10, 0, 200, "more than 0 s"), (60, 5, 5000, "1..4999 bps"),
])
def test_bad_opportunity_settings_are_named(every, for_s, bps, message) -> None:
    with pytest.raises(ValueError, match=message):
        Opportunity(every, for_s, bps)


def test_the_cli_refuses_an_opportunity_as_long_as_its_period(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["binance", "--port", "0", "--opportunity-every", "5", "--opportunity-for", "5"]) == EXIT_CONFIG
    err = capsys.readouterr().err
    assert "--opportunity-every/--opportunity-for/--opportunity-bps" in err and "less than its period" in err


@pytest.mark.parametrize("exchange", ["binance", "coinbase"])
def test_a_producer_reads_the_dipped_book_and_then_the_book_back(exchange: str) -> None:
    raw = BTC[exchange]
    now = time.time()
    # on now, for the next 6 s of a long period: enough for the producer to connect and read
    # the dipped book on a loaded machine (1.5 s was not, with the whole unit tier beside it)
    opp = Opportunity(every_s=1000, for_s=6, bps=DEFAULT_BPS, offset_s=now % 1000)
    with replay_class(exchange)([raw], rate=0, opportunity=opp) as srv:
        srv.publish(3)
        cls = adapter_class(exchange)
        cfg = ProducerConfig.from_env(exchange, {cls.symbols_var: raw, cls.url_var: srv.url + cls.replay_path,
                                                 "PRODUCER_QUOTES": "true", "PRODUCER_BACKOFF_INITIAL_S": "0.05"})
        quotes: list[Quote] = []
        dipped: Quote | None = None
        stop = threading.Event()
        t = threading.Thread(target=cls(cfg).run, args=(lambda _t: None, stop, quotes.append), daemon=True)
        t.start()
        try:
            walk = srv.markets[raw].price
            deadline = time.monotonic() + 60
            # first a quote ~2 % below the walk (a quote of the book before the dip may come
            # first), then one back on the walk after it
            while time.monotonic() < deadline:
                if dipped is None:
                    dipped = next((q for q in list(quotes) if Decimal(q.ask) * 100 < walk * Decimal("0.985")), None)
                elif Decimal(quotes[-1].ask) * 100 > walk * Decimal("0.99"):
                    break
                srv.publish(1)  # Coinbase's ticker moves with trades
                time.sleep(0.05)
        finally:
            stop.set()
            t.join(10)
        assert dipped is not None, (f"no quote ~2 % below the walk ({walk}) while the opportunity was on; "
                                    f"{len(quotes)} quotes read, the last {quotes[-1:] or 'none'}")
        assert Decimal(dipped.ask) * 100 < walk * Decimal("0.985")  # read while on: ~2 % below the walk
        assert Decimal(quotes[-1].ask) * 100 > walk * Decimal("0.99")  # and back on the walk after it
