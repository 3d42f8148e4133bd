"""`python -m cryptomon.replay <exchange> [--port N] [--rate R] [--script FILE]`: a local
stand-in for one exchange (WebSocket stream and REST symbol list on one port). The exchanges
and their default ports come from the producer's registry."""

from __future__ import annotations

import argparse
import json
import signal
import threading

from cryptomon.logging_setup import setup_logging
from cryptomon.producer.registry import adapter_class, exchange_names, replay_class

from . import ReplayServer


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="cryptomon-replay", description=__doc__)
    parser.add_argument("exchange", choices=exchange_names(real_only=True))
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=None, help="default: the exchange's replay port in the registry")
    parser.add_argument("--rate", type=float, default=10.0, help="trades per second per market")
    parser.add_argument("--symbols", default="", help="markets to pre-create (others appear on subscribe)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=int, default=50_000, help="trades kept per market for replays")
    parser.add_argument("--ping-interval", type=float, default=None, help="seconds between server pings")
    parser.add_argument("--max-age", type=float, default=None, help="cut connections after N s")
    parser.add_argument("--script", help="JSON list of timed faults, e.g. "
                        '[{"at":30,"do":"drop"},{"every":300,"do":"shutdown"},{"every":120,"do":"gap","n":3}]')
    args = parser.parse_args(argv)
    setup_logging("INFO")
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    port = adapter_class(args.exchange).replay_port if args.port is None else args.port  # type: ignore[attr-defined]
    options = {k: v for k, v in (("ping_interval", args.ping_interval), ("max_age", args.max_age)) if v is not None}
    server: ReplayServer = replay_class(args.exchange)(symbols, host=args.host, port=port, rate=args.rate,
                                                       seed=args.seed, keep=args.keep, **options)
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
