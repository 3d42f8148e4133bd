"""kafka_settings.listener_mismatch: librdkafka's error texts that mean the listener at the
address speaks another protocol become one line naming KAFKA_BOOTSTRAP_SERVERS and
KAFKA_SECURITY_PROTOCOL (issue 9, "Bad input"). The texts are what confluent-kafka 2.16.1
(librdkafka 2.16.0) handed error_cb against the harness's secure Kafka 4 node."""

from __future__ import annotations

import pytest
from cryptomon.kafka_settings import KafkaSettings, listener_mismatch

# SASL_SSL (or SSL without a certificate) at the INTERNAL or CONTROLLER listener (mTLS).
BAD_CERT = ("sasl_ssl://127.0.0.1:45053/bootstrap: Receive failed: error:0A000412:SSL routines::ssl/tls "
            "alert bad certificate: SSL alert number 42 (after 50ms in state APIVERSION_QUERY)")
BAD_CERT_LONG = ("sasl_ssl://127.0.0.1:45053/bootstrap: Receive failed: ssl/record/rec_layer_s3.c:918:"
                 "ssl3_read_bytes error:0A000412:SSL routines::ssl/tls alert bad certificate: SSL alert "
                 "number 42 (after 0ms in state APIVERSION_QUERY, 1 identical error(s) suppressed)")
# SASL_SSL at a PLAINTEXT listener.
NO_TLS = ("sasl_ssl://127.0.0.1:57989/bootstrap: SSL handshake failed: Disconnected: SSL connection closed "
          "by peer: connecting to a PLAINTEXT broker listener? (after 123ms in state SSL_HANDSHAKE)")
# SASL_PLAINTEXT at a PLAINTEXT listener.
NO_SASL = ("sasl_plaintext://127.0.0.1:57989/bootstrap: SASL SCRAM-SHA-512 mechanism handshake failed: "
           "Broker: Request not valid in current SASL state: broker's supported mechanisms:  "
           "(after 14ms in state AUTH_HANDSHAKE)")
# Not a listener mismatch: the services report these as they are.
OTHERS = [
    "1/1 brokers are down",
    "sasl_ssl://127.0.0.1:38921/bootstrap: SASL authentication error: Authentication failed during "
    "authentication due to invalid credentials with SASL mechanism SCRAM-SHA-512 (after 348ms in state AUTH_REQ)",
    "sasl_ssl://127.0.0.1:48365/bootstrap: Connect to ipv4#127.0.0.1:48365 failed: Connection refused "
    "(after 0ms in state CONNECT)",
    "sasl_ssl://127.0.0.1:57989/bootstrap: Disconnected: SSL connection closed by peer "
    "(after 1ms in state SSL_HANDSHAKE)",
]


def settings(protocol: str, bootstrap: str = "127.0.0.1:45053") -> KafkaSettings:
    env = {"KAFKA_BOOTSTRAP_SERVERS": bootstrap, "KAFKA_SECURITY_PROTOCOL": protocol}
    if protocol.startswith("SASL_"):
        env |= {"KAFKA_USERNAME": "cryptomon-producer", "KAFKA_PASSWORD": "x"}
    return KafkaSettings.from_env(env)


@pytest.mark.parametrize("text", [BAD_CERT, BAD_CERT_LONG])
def test_sasl_ssl_at_a_listener_wanting_a_client_certificate(text: str) -> None:
    line = listener_mismatch(settings("SASL_SSL", "kbrk-1:9094"), text)
    assert line is not None
    assert line.startswith("KAFKA_BOOTSTRAP_SERVERS=kbrk-1:9094 with KAFKA_SECURITY_PROTOCOL=SASL_SSL: "
                           "the listener at 127.0.0.1:45053 wants a client certificate")
    assert "internal or controller listener" in line
    assert "connect to the brokers' client listener" in line
    assert "\n" not in line


def test_ssl_without_a_certificate_is_named_too() -> None:
    line = listener_mismatch(settings("SSL"), BAD_CERT.replace("sasl_ssl://", "ssl://"))
    assert line is not None and "KAFKA_SECURITY_PROTOCOL=SSL" in line


def test_tls_client_at_a_plaintext_listener() -> None:
    line = listener_mismatch(settings("SASL_SSL", "127.0.0.1:57989"), NO_TLS)
    assert line is not None
    assert "the listener at 127.0.0.1:57989 wants no TLS (a PLAINTEXT listener)" in line


def test_sasl_plaintext_client_at_a_listener_without_sasl() -> None:
    line = listener_mismatch(settings("SASL_PLAINTEXT", "127.0.0.1:57989"), NO_SASL)
    assert line is not None
    assert "KAFKA_SECURITY_PROTOCOL=SASL_PLAINTEXT: the listener at 127.0.0.1:57989 wants no SASL" in line


@pytest.mark.parametrize("text", OTHERS)
def test_other_errors_are_not_a_mismatch(text: str) -> None:
    assert listener_mismatch(settings("SASL_SSL"), text) is None


def test_the_protocol_decides_what_a_text_means() -> None:
    # A certificate alert can only reach a TLS client; a PLAINTEXT client never gets one.
    assert listener_mismatch(settings("PLAINTEXT"), BAD_CERT) is None
    assert listener_mismatch(settings("SASL_SSL"), NO_SASL) is None
