"""`python -m cryptomon.replay <exchange> [--port N] [--rate R] [--script FILE]
[--opportunity-every S]`: a local stand-in for one exchange (WebSocket stream and REST symbol
list on one port). The exchanges and their default ports come from the producer's registry."""

from __future__ import annotations

import json
import math
import signal
import sys
import threading
from typing import Any

from cryptomon.cli_args import (
    EXIT_CONFIG,
    OneLineParser,
    listen_address,
    non_negative_float,
    port_or_zero,
    positive_float,
    positive_int,
)
from cryptomon.kafka_settings import ConfigError
from cryptomon.logging_setup import setup_logging
from cryptomon.producer.registry import adapter_class, exchange_names, replay_class

from . import _NUMBER, Opportunity, ReplayServer


def _check_quote_step(n: int, step: dict[str, Any]) -> None:
    """A `quote` step: a symbol, and a book to set (bid and ask), `release` or `silent`."""
    if not isinstance(step.get("symbol"), str) or not step["symbol"]:
        raise ConfigError(f"--script: step {n}: a quote step needs a \"symbol\" (the venue's own, e.g. BTCUSDT)")
    book = [k for k in ("bid", "ask", "bid_size", "ask_size") if k in step]
    if not book and not step.get("release") and "silent" not in step:
        raise ConfigError(f"--script: step {n}: a quote step needs bid and ask, \"release\" or \"silent\"")
    if book and not {"bid", "ask"} <= set(book):
        raise ConfigError(f"--script: step {n}: a quote step sets both bid and ask")
    for key in book:
        if not isinstance(step[key], str) or not _NUMBER.fullmatch(step[key]):
            raise ConfigError(f"--script: step {n}: {key} {step[key]!r} must be a number as text, e.g. \"101.25\"")


def load_script(path: str) -> list[dict[str, Any]]:
    """--script: a JSON list of steps, each with a `do` and a non-negative `at` or `every`."""
    try:
        with open(path, encoding="utf-8") as f:
            steps = json.load(f)
    except OSError as exc:
        raise ConfigError(f"--script: cannot read {path!r}: {exc.strerror or exc}") from None
    except (ValueError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--script: {path!r} is not JSON: {exc}") from None
    if not isinstance(steps, list):
        raise ConfigError(f"--script: {path!r} must hold a JSON list of steps")
    for n, step in enumerate(steps, 1):
        if not isinstance(step, dict) or not isinstance(step.get("do"), str):
            raise ConfigError(f"--script: step {n} is not an object with a \"do\" action")
        for key in ("at", "every"):
            value = step.get(key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int | float)
                                      or not math.isfinite(value) or value < 0 or (key == "every" and value == 0)):
                raise ConfigError(f"--script: step {n}: {key!r} must be a number of seconds (every > 0)")
        if step["do"] == "quote":
            _check_quote_step(n, step)
    return steps


def opportunity_of(exchange: str, every_s: float, for_s: float, bps: int) -> Opportunity | None:
    """--opportunity-*: None when off (every 0). Each exchange dips at its own place in the
    registry's list, spread over the period, so no two venues are cheap at once (as long as
    an opportunity lasts less than period / number of exchanges)."""
    if every_s == 0:
        return None
    names = exchange_names(real_only=True)
    try:
        return Opportunity(every_s, for_s, bps, offset_s=every_s * names.index(exchange) / len(names))
    except ValueError as exc:
        raise ConfigError(f"--opportunity-every/--opportunity-for/--opportunity-bps: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="cryptomon-replay", description=__doc__)
    parser.add_argument("exchange", choices=exchange_names(real_only=True))
    parser.add_argument("--host", type=listen_address, default="127.0.0.1")
    parser.add_argument("--port", type=port_or_zero, default=None,
                        help="default: the exchange's replay port in the registry; 0 = any free port")
    parser.add_argument("--rate", type=non_negative_float, default=10.0,
                        help="trades per second per market (0: none)")
    parser.add_argument("--symbols", default="", help="markets to pre-create (others appear on subscribe)")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--keep", type=positive_int, default=50_000, help="trades kept per market for replays")
    parser.add_argument("--ping-interval", type=positive_float, default=None, help="seconds between server pings")
    parser.add_argument("--max-age", type=positive_float, default=None, help="cut connections after N s")
    parser.add_argument("--script", help="JSON list of timed faults and books, e.g. "
                        '[{"at":30,"do":"drop"},{"every":300,"do":"shutdown"},{"every":120,"do":"gap","n":3},'
                        '{"at":10,"do":"quote","symbol":"BTCUSDT","bid":"60000.10","ask":"60000.20"}]')
    parser.add_argument("--opportunity-every", type=non_negative_float, default=0.0, metavar="S",
                        help="scripted arbitrage opportunities: every S seconds this venue's books dip below "
                             "its price walk (0: never); each exchange at its own phase")
    parser.add_argument("--opportunity-for", type=positive_float, default=5.0, metavar="S",
                        help="how long each opportunity lasts, seconds")
    parser.add_argument("--opportunity-bps", type=positive_int, default=200, metavar="BPS",
                        help="how far the books dip, basis points (200 clears the highest built-in taker "
                             "fees of two venues, 100 bps, plus the venues' usual disagreement)")
    args = parser.parse_args(argv)
    setup_logging("INFO")
    symbols = [s.strip() for s in args.symbols.split(",") if s.strip()]
    port = adapter_class(args.exchange).replay_port if args.port is None else args.port  # type: ignore[attr-defined]
    options = {k: v for k, v in (("ping_interval", args.ping_interval), ("max_age", args.max_age)) if v is not None}
    try:
        script = load_script(args.script) if args.script else None
        opportunity = opportunity_of(args.exchange, args.opportunity_every, args.opportunity_for,
                                     args.opportunity_bps)
        try:
            server: ReplayServer = replay_class(args.exchange)(symbols, host=args.host, port=port, rate=args.rate,
                                                               seed=args.seed, keep=args.keep,
                                                               opportunity=opportunity, **options)
        except OSError as exc:  # address in use, unknown host, not ours to bind
            raise ConfigError(f"--host/--port: cannot listen on {args.host}:{port}: {exc.strerror or exc}") from None
    except ConfigError as exc:
        print(f"cryptomon-replay: configuration error: {exc}", file=sys.stderr)
        return EXIT_CONFIG
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    server.start()
    print(f"listening on {server.url}", flush=True)
    if script is not None:
        server.run_script(script)
    stop.wait()
    server.stop()
    return 0
