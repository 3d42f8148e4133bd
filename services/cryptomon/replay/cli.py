"""`python -m cryptomon.replay binance|coinbase --port N --rate R [--script FILE]`."""

from __future__ import annotations

import argparse
import json
import logging
import signal
import threading

from . import ReplayServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cryptomon-replay", description=__doc__)
    parser.add_argument("exchange", choices=("binance", "coinbase"))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--rate", type=float, default=10.0, help="trades per second per market")
    parser.add_argument("--symbols", default="", help="markets to pre-create (others appear on subscribe)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--ping-interval", type=float, default=None, help="seconds between server pings")
    parser.add_argument("--max-age", type=float, default=86_400.0, help="binance: cut connections after N s")
    parser.add_argument("--script", help="JSON list of timed faults, e.g. "
                        '[{"at":30,"do":"drop"},{"every":300,"do":"shutdown"},{"every":120,"do":"gap","n":3}]')
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    server: ReplayServer
    if args.exchange == "binance":
        from .binance import BinanceReplay

        server = BinanceReplay(symbols, host=args.host, port=args.port, rate=args.rate, seed=args.seed,
                               ping_interval=args.ping_interval or 20.0, max_age=args.max_age)
    else:
        from .coinbase import CoinbaseReplay

        server = CoinbaseReplay(symbols, host=args.host, port=args.port, rate=args.rate, seed=args.seed,
                                ping_interval=args.ping_interval or 0.0)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"listening on {server.url}", flush=True)
    if args.script:
        with open(args.script) as f:
            server.run_script(json.load(f))
    stop.wait()
    server.stop()
    return 0
