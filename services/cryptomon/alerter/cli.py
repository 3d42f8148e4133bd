"""cryptomon-alerter: Kafka alerts -> Discord.

    cryptomon-alerter [run]            consume signals.alerts + signals.arbitrage (default)
    cryptomon-alerter run --stdin      read alerts as JSON lines from stdin instead of Kafka
    cryptomon-alerter send-test        post one test message to check the webhook

Exit codes: 0 done/stopped, 1 runtime failure, 2 configuration error,
78 (EX_CONFIG) the webhook is invalid (401/403/404): restarting will not help.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading
from types import FrameType

from cryptomon.alerter.config import AlerterConfig, ConfigError, Webhook
from cryptomon.alerter.dedupe import SentIds
from cryptomon.alerter.discord import (
    DiscordWebhookClient,
    Rejected,
    Stopped,
    WebhookDead,
)
from cryptomon.alerter.formatting import send_test_payload
from cryptomon.alerter.metrics import AlerterMetrics, ConsumerLag
from cryptomon.alerter.service import AlertProcessor, run_kafka, run_stdin
from cryptomon.cli_args import OneLineParser, log_level, positive_float
from cryptomon.logging_setup import setup_logging
from cryptomon.metrics import MetricsServer, new_registry, start

log = logging.getLogger("cryptomon.alerter")

EXIT_RUNTIME = 1
EXIT_CONFIG = 2
EXIT_WEBHOOK_INVALID = 78


class RedactingFilter(logging.Filter):
    """Last line of defence: replace the webhook URL/token in any record, from any library."""

    def __init__(self, secrets: tuple[str, ...]) -> None:
        super().__init__()
        self.secrets = tuple(sorted(secrets, key=len, reverse=True))

    def filter(self, record: logging.LogRecord) -> bool:
        if not self.secrets:
            return True
        msg = record.getMessage()
        clean = msg
        for s in self.secrets:
            clean = clean.replace(s, "***")
        if clean != msg:
            record.msg, record.args = clean, None
        return True


def setup_alerter_logging(level: str, webhook: Webhook | None) -> None:
    setup_logging(level, filters=[RedactingFilter(webhook.secrets if webhook else ())])
    # urllib3 logs request lines (the webhook path, token included) at DEBUG.
    logging.getLogger("urllib3").setLevel(logging.WARNING)


def _dead_message(exc: WebhookDead, webhook: Webhook) -> str:
    reason = {401: "the token is invalid", 403: "access is forbidden", 404: "the webhook does not exist"}
    return (f"Discord webhook unusable: HTTP {exc.status} code {exc.code} ({reason.get(exc.status, 'refused')}) "
            f"for {webhook.redacted()}; no more posts to it. Fix DISCORD_WEBHOOK_URL/DISCORD_WEBHOOK_FILE "
            f"and restart. Unposted alerts stay uncommitted in Kafka.")


def _install_signals(stop: threading.Event, interrupt_reads: bool) -> None:
    def handler(signum: int, _frame: FrameType | None) -> None:
        log.info("signal %s: stopping", signal.Signals(signum).name)
        stop.set()
        if interrupt_reads:
            raise KeyboardInterrupt  # unblocks a pending stdin read

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def cmd_run(config: AlerterConfig, use_stdin: bool) -> int:
    stop = threading.Event()
    _install_signals(stop, interrupt_reads=use_stdin)
    log.info("starting: %s%s", "stdin " if use_stdin else "", config.describe())
    if config.webhook is None:
        log.warning("no DISCORD_WEBHOOK_URL/DISCORD_WEBHOOK_FILE set: log-only mode, alerts are only logged")
    client = DiscordWebhookClient(config.webhook, stop, max_backoff=config.max_backoff) if config.webhook else None
    try:
        sent = SentIds(config.dedupe_size, config.state_file)
    except OSError as exc:  # checked at start, but the disk may still say no (permissions, read-only)
        log.error("configuration error: ALERTER_STATE_FILE: cannot use %s: %s", config.state_file,
                  exc.strerror or exc)
        if client is not None:
            client.close()
        return EXIT_CONFIG
    processor = AlertProcessor(client, sent, config.username, max_age_s=config.max_alert_age_s)
    lag = None if use_stdin else ConsumerLag()
    try:
        metrics = _start_metrics(config, processor, client, lag)
    except ConfigError as exc:
        log.error("configuration error: %s", exc)
        if client is not None:
            client.close()
        return EXIT_CONFIG
    try:
        if use_stdin:
            run_stdin(processor, sys.stdin, stop)
        else:
            run_kafka(config, processor, stop, lag)
    except WebhookDead as exc:
        assert config.webhook is not None
        log.error(_dead_message(exc, config.webhook))
        return EXIT_WEBHOOK_INVALID
    except (Stopped, KeyboardInterrupt):
        pass
    except Exception as exc:
        log.error("alerter failed: %s: %s", type(exc).__name__, client.scrub(str(exc)) if client else exc)
        log.debug("details", exc_info=True)
        return EXIT_RUNTIME
    finally:
        if client is not None:
            client.close()
        if metrics is not None:
            metrics.close()
    counts = ", ".join(f"{k.value}={v}" for k, v in processor.counts.items())
    log.info("stopped: %s", counts)
    return 0


def _start_metrics(config: AlerterConfig, processor: AlertProcessor, client: DiscordWebhookClient | None,
                   lag: ConsumerLag | None) -> MetricsServer | None:
    """The /metrics endpoint if METRICS_PORT asks for one (ConfigError if it cannot listen)."""
    if not config.metrics.enabled:
        return None
    registry = new_registry()
    AlerterMetrics(registry, processor, client, lag)
    return start(config.metrics, registry)


def cmd_send_test(config: AlerterConfig, timeout: float) -> int:
    if config.webhook is None:
        log.error("send-test: no webhook configured (set DISCORD_WEBHOOK_URL or DISCORD_WEBHOOK_FILE)")
        return EXIT_CONFIG
    stop = threading.Event()
    timer = threading.Timer(timeout, stop.set)
    timer.daemon = True
    timer.start()
    client = DiscordWebhookClient(config.webhook, stop, max_backoff=min(config.max_backoff, 10.0))
    try:
        result = client.post(send_test_payload(config.username))
    except WebhookDead as exc:
        log.error(_dead_message(exc, config.webhook))
        return EXIT_WEBHOOK_INVALID
    except Rejected as exc:
        log.error("send-test: Discord rejected the test message: %s", exc)
        return EXIT_RUNTIME
    except Stopped:
        log.error("send-test: no answer from Discord within %.0fs", timeout)
        return EXIT_RUNTIME
    finally:
        timer.cancel()
        client.close()
    log.info("send-test: Discord accepted the test message (id %s) on %s", result.message_id,
             config.webhook.redacted())
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = OneLineParser(prog="cryptomon-alerter", description="Post cryptomon alerts to Discord")
    ap.add_argument("--stdin", action="store_true", help="read alerts as JSON lines from stdin, not Kafka")
    ap.add_argument("--log-level", help="override ALERTER_LOG_LEVEL")
    sub = ap.add_subparsers(dest="command")
    run_p = sub.add_parser("run", help="consume alerts and post them (default)")
    run_p.add_argument("--stdin", action="store_true", dest="stdin_run", help=argparse.SUPPRESS)
    test_p = sub.add_parser("send-test", help="post one test message to the configured webhook")
    test_p.add_argument("--timeout", type=positive_float, default=60.0, help="give up after this many seconds")
    args = ap.parse_args(argv)

    try:
        config = AlerterConfig.from_env()
        level = log_level(args.log_level, "--log-level", config.log_level)
    except ConfigError as exc:
        setup_logging("INFO")
        log.error("configuration error: %s", exc)
        return EXIT_CONFIG
    setup_alerter_logging(level, config.webhook)
    if args.command == "send-test":
        return cmd_send_test(config, args.timeout)
    return cmd_run(config, bool(args.stdin or getattr(args, "stdin_run", False)))


if __name__ == "__main__":
    sys.exit(main())
