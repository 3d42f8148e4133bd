"""logging_setup.LogThrottle: one log line per key per interval, and the three places that use it
(the producer's Kafka sink, the alerter's consumer loop, the dashboard's feed) log a repeated
Kafka client error once per interval without a broker: librdkafka's errors are faked."""

from __future__ import annotations

import logging
import threading
from typing import Any

import confluent_kafka
import pytest
from confluent_kafka import KafkaError
from cryptomon.alerter import service
from cryptomon.alerter.config import AlerterConfig
from cryptomon.alerter.dedupe import SentIds
from cryptomon.alerter.service import AlertProcessor
from cryptomon.dashboard import feed as dashboard_feed
from cryptomon.dashboard.state import MarketState
from cryptomon.kafka_settings import KafkaSettings
from cryptomon.logging_setup import LogThrottle
from cryptomon.producer import sink as producer_sink

# What librdkafka hands error_cb when a SASL_SSL client reaches a PLAINTEXT listener
# (test_listener_mismatch.NO_TLS): listener_mismatch turns it into one explaining line.
NO_TLS = ("sasl_ssl://127.0.0.1:57989/bootstrap: SSL handshake failed: Disconnected: SSL connection closed "
          "by peer: connecting to a PLAINTEXT broker listener? (after 123ms in state SSL_HANDSHAKE)")
BROKERS_DOWN = "1/1 brokers are down"


class FakeClock:
    def __init__(self, now: float = 1000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeError:
    """The parts of confluent_kafka.KafkaError the services read."""

    def __init__(self, code: int, text: str) -> None:
        self._code, self._text = code, text

    def code(self) -> int:
        return self._code

    def str(self) -> str:
        return self._text

    def fatal(self) -> bool:
        return False

    def __str__(self) -> str:
        return f"KafkaError{{code={self._code},str=\"{self._text}\"}}"


@pytest.fixture
def clock(monkeypatch: pytest.MonkeyPatch) -> FakeClock:
    """A fake clock for every throttle the three services create during the test."""
    fake = FakeClock()
    for module in (producer_sink, service, dashboard_feed):
        monkeypatch.setattr(module, "LogThrottle", lambda interval_s: LogThrottle(interval_s, fake))
    return fake


def messages(caplog: pytest.LogCaptureFixture, logger: str) -> list[tuple[int, str]]:
    return [(r.levelno, r.getMessage()) for r in caplog.records if r.name == logger]


# --- the throttle itself ------------------------------------------------------------------------

def test_first_line_of_a_key_is_logged_then_one_per_interval() -> None:
    clock = FakeClock()
    throttle = LogThrottle(30, clock)
    seen = []
    for step in (0, 10, 19.9, 0.1, 29.999, 0.001, 45):  # seconds since the previous call
        clock.advance(step)
        seen.append(throttle.should_log("down"))
    # Logged at 0, suppressed at 10 and 29.9, logged at exactly 30, suppressed at 59.999,
    # logged at 60 and, 45 s later, again.
    assert seen == [True, False, False, True, False, True, True]


def test_the_interval_counts_from_the_last_logged_line_not_the_last_call() -> None:
    clock = FakeClock()
    throttle = LogThrottle(30, clock)
    assert throttle.should_log("down")
    clock.advance(20)
    assert not throttle.should_log("down")
    clock.advance(20)  # 40 s after the logged line, 20 s after the suppressed one
    assert throttle.should_log("down")


def test_each_key_has_its_own_interval() -> None:
    clock = FakeClock()
    throttle = LogThrottle(60, clock)
    assert throttle.should_log("cb:-195")
    assert throttle.should_log("cb:listener")  # another problem is news at once
    assert throttle.should_log(-187)  # any hashable key
    clock.advance(59)
    assert [throttle.should_log(k) for k in ("cb:-195", "cb:listener", -187)] == [False, False, False]
    clock.advance(1)
    assert [throttle.should_log(k) for k in ("cb:-195", "cb:listener", -187)] == [True, True, True]


def test_default_clock_is_monotonic_and_real() -> None:
    throttle = LogThrottle(3600)
    assert throttle.should_log("x") and not throttle.should_log("x")
    assert throttle.interval_s == 3600.0


@pytest.mark.parametrize("interval", [0, -1, float("nan"), float("inf"), "30", None, True])
def test_an_interval_that_is_not_a_positive_number_of_seconds_is_refused(interval: Any) -> None:
    with pytest.raises(ValueError, match=r"LogThrottle interval_s must be a positive number of seconds, got "):
        LogThrottle(interval)


# --- producer: KafkaSink's error_cb, 30 s -------------------------------------------------------

class FakeProducer:
    def __init__(self, conf: dict[str, Any]) -> None:
        self.conf = conf

    def produce(self, *args: Any, **kwargs: Any) -> None:
        raise AssertionError("not used here")

    def poll(self, timeout: float) -> int:
        return 0


def sasl_ssl_settings() -> KafkaSettings:
    return KafkaSettings.from_env({"KAFKA_BOOTSTRAP_SERVERS": "kbrk-1:9094", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
                                   "KAFKA_USERNAME": "cryptomon-producer", "KAFKA_PASSWORD": "x"})


def test_producer_logs_a_repeated_client_error_once_per_30_s(monkeypatch, clock, caplog) -> None:
    monkeypatch.setattr(producer_sink, "Producer", FakeProducer)
    sink = producer_sink.KafkaSink(sasl_ssl_settings(), "test")
    error_cb = sink._producer.conf["error_cb"]
    down = FakeError(KafkaError._ALL_BROKERS_DOWN, BROKERS_DOWN)
    resolve = FakeError(KafkaError._RESOLVE, "kbrk-1:9094/bootstrap: Failed to resolve 'kbrk-1:9094'")
    with caplog.at_level(logging.WARNING, logger="cryptomon.producer.kafka"):
        for step in (0, 5, 24.9):  # up to 29.9 s after the first
            clock.advance(step)
            error_cb(down)
        error_cb(resolve)
        clock.advance(0.1)
        error_cb(down)  # 30 s after the first: logged again
    assert messages(caplog, "cryptomon.producer.kafka") == [
        (logging.WARNING, f"Kafka client error (retrying): {down}"),
        (logging.WARNING, f"Kafka client error (retrying): {resolve}"),
        (logging.WARNING, f"Kafka client error (retrying): {down}"),
    ]


def test_producer_logs_a_listener_mismatch_once_per_30_s_and_keeps_it(monkeypatch, clock, caplog) -> None:
    monkeypatch.setattr(producer_sink, "Producer", FakeProducer)
    sink = producer_sink.KafkaSink(sasl_ssl_settings(), "test")
    error_cb = sink._producer.conf["error_cb"]
    with caplog.at_level(logging.WARNING, logger="cryptomon.producer.kafka"):
        for _ in range(5):
            error_cb(FakeError(KafkaError._SSL, NO_TLS))
            clock.advance(7)  # 35 s in all: the fifth call, 28 s after the first, is suppressed
        error_cb(FakeError(KafkaError._SSL, NO_TLS))
    lines = messages(caplog, "cryptomon.producer.kafka")
    assert [level for level, _ in lines] == [logging.ERROR, logging.ERROR]
    assert lines[0][1] == lines[1][1] == sink.listener_problem
    assert "wants no TLS" in sink.listener_problem


# --- alerter: run_kafka, 60 s, error_cb and errors handed out by poll ---------------------------

class ErrorMessage:
    def __init__(self, err: FakeError) -> None:
        self._err = err

    def error(self) -> FakeError:
        return self._err


class ScriptedConsumer:
    """poll() plays the script: (seconds to advance the clock, an error for error_cb or a message)."""

    def __init__(self, conf: dict[str, Any], script: list[tuple[float, Any]], clock: FakeClock,
                 stop: threading.Event) -> None:
        self.conf, self.script, self.clock, self.stop = conf, list(script), clock, stop

    def subscribe(self, topics: list[str], on_assign: Any = None) -> None:
        pass

    def poll(self, timeout: float) -> ErrorMessage | None:
        while self.script:
            step, item = self.script.pop(0)
            self.clock.advance(step)
            if isinstance(item, ErrorMessage):
                return item
            self.conf["error_cb"](item)
        self.stop.set()
        return None

    def assignment(self) -> list[Any]:
        return []

    def close(self) -> None:
        pass


def run_alerter(monkeypatch: pytest.MonkeyPatch, clock: FakeClock, script: list[tuple[float, Any]],
                env: dict[str, str] | None = None) -> None:
    stop = threading.Event()
    monkeypatch.setattr(confluent_kafka, "Consumer", lambda conf: ScriptedConsumer(conf, script, clock, stop))
    service.run_kafka(AlerterConfig.from_env(env or {}), AlertProcessor(None, SentIds(10)), stop)


def test_alerter_logs_a_repeated_error_once_a_minute_per_kind(monkeypatch, clock, caplog) -> None:
    down = FakeError(KafkaError._ALL_BROKERS_DOWN, BROKERS_DOWN)
    no_topic = ErrorMessage(FakeError(KafkaError.UNKNOWN_TOPIC_OR_PART, "Subscribed topic not available"))
    broken = ErrorMessage(FakeError(KafkaError._TRANSPORT, "Disconnected"))
    script = [(0, down), (0, no_topic), (0, broken),
              (30, down), (0, no_topic), (0, broken),
              (29.9, down), (0, no_topic), (0, broken),  # 59.9 s after the first lines: all suppressed
              (0.1, down), (0, no_topic)]  # 60 s: logged again
    with caplog.at_level(logging.WARNING, logger="cryptomon.alerter"):
        run_alerter(monkeypatch, clock, script)
    assert messages(caplog, "cryptomon.alerter") == [
        (logging.WARNING, f"Kafka: {BROKERS_DOWN}"),
        (logging.WARNING, "Kafka: Subscribed topic not available"),
        (logging.ERROR, "Kafka: Disconnected"),
        (logging.WARNING, f"Kafka: {BROKERS_DOWN}"),
        (logging.WARNING, "Kafka: Subscribed topic not available"),
    ]


def test_alerter_logs_a_listener_mismatch_once_a_minute(monkeypatch, clock, caplog) -> None:
    env = {"KAFKA_BOOTSTRAP_SERVERS": "kbrk-1:9094", "KAFKA_SECURITY_PROTOCOL": "SASL_SSL",
           "KAFKA_USERNAME": "cryptomon-alerter", "KAFKA_PASSWORD": "x"}
    mismatch = FakeError(KafkaError._SSL, NO_TLS)
    with caplog.at_level(logging.WARNING, logger="cryptomon.alerter"):
        run_alerter(monkeypatch, clock, [(0, mismatch), (59, mismatch), (1, mismatch)], env)
    lines = messages(caplog, "cryptomon.alerter")
    assert [level for level, _ in lines] == [logging.ERROR, logging.ERROR]
    assert lines[0][1].startswith("KAFKA_BOOTSTRAP_SERVERS=kbrk-1:9094 with KAFKA_SECURITY_PROTOCOL=SASL_SSL: ")


# --- dashboard: KafkaFeed's error_cb, 30 s ------------------------------------------------------

def test_dashboard_logs_a_listener_mismatch_once_per_30_s_but_shows_it_always(clock, caplog) -> None:
    state = MarketState()
    feed = dashboard_feed.KafkaFeed(sasl_ssl_settings(), state)
    mismatch = FakeError(KafkaError._SSL, NO_TLS)
    with caplog.at_level(logging.WARNING, logger="cryptomon.dashboard.feed"):
        feed._on_error(mismatch)
        state.set_status("ok")
        clock.advance(29.9)
        feed._on_error(mismatch)
        assert state.status.state == "unreachable" and "wants no TLS" in state.status.detail
        clock.advance(0.1)
        feed._on_error(mismatch)
    lines = messages(caplog, "cryptomon.dashboard.feed")
    assert [level for level, _ in lines] == [logging.ERROR, logging.ERROR]
    assert lines[0][1] == state.status.detail
