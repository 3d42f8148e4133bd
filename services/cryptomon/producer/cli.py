"""`cryptomon-producer <exchange> [--stdout]`: one exchange feed into Kafka (or stdout).

Exit codes: 0 after SIGTERM/SIGINT (trades flushed), 2 for invalid configuration (one line on
stderr), 1 for a fatal Kafka error (systemd restarts the unit).
"""

from __future__ import annotations

import logging
import signal
import sys
import threading

from cryptomon.cli_args import OneLineParser, log_level
from cryptomon.kafka_settings import ConfigError
from cryptomon.logging_setup import setup_logging

from .base import Adapter, WebSocketAdapter
from .config import ProducerConfig, load_env
from .metrics import new_latency, start_metrics
from .registry import adapter_class, exchange_names
from .sink import FatalKafkaError, KafkaSink, StdoutSink

log = logging.getLogger("cryptomon.producer")


def make_adapter(config: ProducerConfig) -> Adapter:
    """The registry's adapter; a WebSocket exchange runs as a sharded Feed."""
    cls = adapter_class(config.exchange)
    if issubclass(cls, WebSocketAdapter):
        from .feed import Feed

        return Feed(config, cls)
    return cls(config)  # type: ignore[call-arg]


def main(argv: list[str] | None = None) -> int:
    parser = OneLineParser(prog="cryptomon-producer",
                                     description="Stream one exchange's trades, normalized, into Kafka.")
    parser.add_argument("exchange", choices=exchange_names(), help="the feed (the systemd instance name)")
    parser.add_argument("--stdout", action="store_true",
                        help="print normalized trades (and quotes, with PRODUCER_QUOTES) as JSON lines instead of "
                             "producing to Kafka")
    args = parser.parse_args(argv)
    try:
        env = load_env()
        setup_logging(log_level(env.get("LOG_LEVEL"), "LOG_LEVEL"))
        config = ProducerConfig.from_env(args.exchange, env)
    except ConfigError as exc:
        print(f"cryptomon-producer: configuration error: {exc}", file=sys.stderr)
        return 2

    stop = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        log.info("%s received: stopping", signal.Signals(signum).name)
        stop.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)

    adapter = make_adapter(config)
    latency = new_latency(config.metrics)
    if args.stdout:
        sink: KafkaSink | StdoutSink = StdoutSink()
    else:
        quotes_topic = config.quotes.topic if config.quotes.enabled else None
        sink = KafkaSink(config.kafka, client_id=f"cryptomon-producer-{config.exchange}",
                         on_stats=latency.update if latency is not None else None, quotes_topic=quotes_topic)
        log.info("kafka %s topic=%s%s", config.kafka.redacted(), config.kafka.trades_topic,
                 f" quotes_topic={quotes_topic}" if quotes_topic else "")
    try:
        # Up before Kafka is: a producer waiting for its topic is worth seeing on a dashboard.
        metrics = start_metrics(config.metrics, config.exchange, adapter, sink, latency)
    except ConfigError as exc:
        print(f"cryptomon-producer: configuration error: {exc}", file=sys.stderr)
        sink.close(0)
        return 2
    quotes_note = ""
    if config.quotes.enabled:
        quotes_note = "; quotes to stdout" if args.stdout else "; " + config.quotes.describe()
    log.info("starting %s producer for %s; metrics %s%s", config.exchange, ", ".join(adapter.markets()),
             config.metrics.describe(), quotes_note)
    try:
        return _run(adapter, sink, stop, quotes=config.quotes.enabled)
    finally:
        if metrics is not None:
            metrics.close()


def _run(adapter: Adapter, sink: KafkaSink | StdoutSink, stop: threading.Event, quotes: bool = False) -> int:
    if not sink.wait_ready(stop):
        return 0
    fatal = threading.Event()
    if isinstance(sink, KafkaSink):
        sink.start_poller(on_fatal=fatal)

        def watch_fatal() -> None:
            fatal.wait()
            stop.set()

        threading.Thread(target=watch_fatal, daemon=True).start()
    code = 0
    try:
        adapter.run(sink.emit, stop, sink.emit_quote if quotes else None)
    except FatalKafkaError as exc:
        log.error("fatal Kafka error, exiting: %s", exc)
        code = 1
    except ConfigError as exc:  # a symbol set that resolves to nothing
        print(f"cryptomon-producer: configuration error: {exc}", file=sys.stderr)
        sink.close()
        return 2
    except BrokenPipeError:
        return 0  # `--stdout | head`
    if fatal.is_set():
        code = 1
    left = sink.close()
    stats = adapter.stats
    log.info("stopped: %s produced=%d undelivered=%d", stats.line(quotes), stats.trades + stats.quotes, left)
    if isinstance(sink, KafkaSink):
        log.info("delivery failures=%d", sink.failed)
    return code


if __name__ == "__main__":
    sys.exit(main())
