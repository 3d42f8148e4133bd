"""Kafka connection settings shared by every service, parsed once from the environment."""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_PROTOCOLS = ("PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL")
_MECHANISMS = ("PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512")


class ConfigError(ValueError):
    """A configuration value is invalid; the message names the variable and the problem."""


@dataclass(frozen=True)
class KafkaSettings:
    bootstrap_servers: str = "localhost:9092"
    trades_topic: str = "trades.raw"
    alerts_topic: str = "signals.alerts"
    arbitrage_topic: str = "signals.arbitrage"
    security_protocol: str = "PLAINTEXT"
    sasl_mechanism: str | None = None
    username: str | None = None
    # Never in a repr or a log line.
    password: str | None = field(default=None, repr=False)
    # Where the password came from, when it was read from a file (KAFKA_PASSWORD_FILE, e.g. a
    # systemd credential): the Flink jobs hand Kafka this path instead of the password.
    password_file: str | None = None
    # CA bundle (PEM) to verify the brokers' certificates (KAFKA_SSL_CA_LOCATION); None = the
    # system's CAs.
    ssl_ca_location: str | None = None

    @classmethod
    def from_env(cls, env: Mapping[str, str] | None = None) -> KafkaSettings:
        env = os.environ if env is None else env

        def get(name: str, default: str | None = None) -> str | None:
            value = env.get(name, "").strip()
            return value or default

        bootstrap = get("KAFKA_BOOTSTRAP_SERVERS", cls.bootstrap_servers)
        assert bootstrap is not None
        for server in bootstrap.split(","):
            host, sep, port = server.strip().rpartition(":")
            if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
                raise ConfigError(
                    f"KAFKA_BOOTSTRAP_SERVERS: {server.strip()!r} is not host:port"
                )
        protocol = (get("KAFKA_SECURITY_PROTOCOL", "") or "").upper()
        username, password = get("KAFKA_USERNAME"), get("KAFKA_PASSWORD")
        password_file = get("KAFKA_PASSWORD_FILE")
        if password_file:
            if password:
                raise ConfigError("KAFKA_PASSWORD_FILE: set KAFKA_PASSWORD or KAFKA_PASSWORD_FILE, not both")
            password = _read_secret("KAFKA_PASSWORD_FILE", password_file)
        mechanism = (get("KAFKA_SASL_MECHANISM", "") or "").upper() or None
        if not protocol:
            protocol = "SASL_SSL" if username else "PLAINTEXT"
        if protocol not in _PROTOCOLS:
            raise ConfigError(
                f"KAFKA_SECURITY_PROTOCOL: {protocol!r} is not one of {', '.join(_PROTOCOLS)}"
            )
        if username and not password:
            raise ConfigError("KAFKA_PASSWORD: required when KAFKA_USERNAME is set")
        if password and not username:
            raise ConfigError("KAFKA_USERNAME: required when KAFKA_PASSWORD is set")
        if protocol.startswith("SASL_"):
            if not username:
                raise ConfigError(f"KAFKA_USERNAME: required with KAFKA_SECURITY_PROTOCOL={protocol}")
            mechanism = mechanism or "SCRAM-SHA-512"
            if mechanism not in _MECHANISMS:
                raise ConfigError(
                    f"KAFKA_SASL_MECHANISM: {mechanism!r} is not one of {', '.join(_MECHANISMS)}"
                )
        elif username:
            raise ConfigError(
                f"KAFKA_USERNAME is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use SASL"
            )
        ca = get("KAFKA_SSL_CA_LOCATION")
        if ca:
            if not protocol.endswith("SSL"):
                raise ConfigError(
                    f"KAFKA_SSL_CA_LOCATION is set but KAFKA_SECURITY_PROTOCOL={protocol} does not use TLS"
                )
            if not os.path.isfile(ca) or not os.access(ca, os.R_OK):
                raise ConfigError(f"KAFKA_SSL_CA_LOCATION: {ca!r} is not a readable file")
        topics = {}
        for var, attr in (
            ("KAFKA_TRADES_TOPIC", "trades_topic"),
            ("KAFKA_ALERTS_TOPIC", "alerts_topic"),
            ("KAFKA_ARBITRAGE_TOPIC", "arbitrage_topic"),
        ):
            name = get(var, getattr(cls, attr))
            assert name is not None
            if not all(c.isalnum() or c in "._-" for c in name) or len(name) > 249:
                raise ConfigError(f"{var}: {name!r} is not a valid Kafka topic name")
            topics[attr] = name
        return cls(
            bootstrap_servers=bootstrap,
            security_protocol=protocol,
            sasl_mechanism=mechanism if protocol.startswith("SASL_") else None,
            username=username,
            password=password,
            password_file=password_file,
            ssl_ca_location=ca,
            **topics,
        )

    def client_config(self) -> dict[str, str]:
        """librdkafka settings common to producers, consumers and admin clients."""
        conf = {
            "bootstrap.servers": self.bootstrap_servers,
            "security.protocol": self.security_protocol,
        }
        if self.sasl_mechanism:
            conf["sasl.mechanism"] = self.sasl_mechanism
            conf["sasl.username"] = self.username or ""
            conf["sasl.password"] = self.password or ""
        if self.ssl_ca_location:
            conf["ssl.ca.location"] = self.ssl_ca_location
        return conf

    def redacted(self) -> str:
        """One line for start-up logs, without the password."""
        auth = f" sasl={self.sasl_mechanism} user={self.username}" if self.sasl_mechanism else ""
        ca = f" ca={self.ssl_ca_location}" if self.ssl_ca_location else ""
        return f"bootstrap={self.bootstrap_servers} protocol={self.security_protocol}{auth}{ca}"


def _read_secret(var: str, path: str) -> str:
    """The first line of a secret file (trailing newline dropped); errors name the variable,
    never the content."""
    try:
        with open(path, encoding="utf-8") as f:
            value = f.read().rstrip("\r\n")
    except OSError as exc:
        raise ConfigError(f"{var}: cannot read {path!r} ({exc.strerror})") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{var}: {path!r} is not UTF-8 text") from None
    if not value:
        raise ConfigError(f"{var}: {path!r} is empty")
    return value


# librdkafka's own words when the listener at the address speaks another protocol than
# KAFKA_SECURITY_PROTOCOL (librdkafka 2.x against Kafka 4; tests/unit/test_listener_mismatch.py
# holds the full texts). A PLAINTEXT or SASL_PLAINTEXT client at a TLS listener gets no error of
# its own: the broker just closes the connection and the client reports "brokers are down".
_WANTS_CLIENT_CERT = ("alert bad certificate", "certificate required")
_NO_TLS = "connecting to a PLAINTEXT broker listener?"
_NO_SASL = re.compile(r"mechanism handshake failed: .*broker's supported mechanisms:\s*(\(|$)")
# "sasl_ssl://host:9094/bootstrap: ..." or "sasl_ssl://host:9094/1: ...": the address tried.
_ADDRESS = re.compile(r"^[a-z_]+://(?P<address>[^/\s]+)/")


def listener_mismatch(settings: KafkaSettings, error: str) -> str | None:
    """One line naming KAFKA_BOOTSTRAP_SERVERS and KAFKA_SECURITY_PROTOCOL when librdkafka's
    error text means the listener at the address wants another protocol; None otherwise
    (broker down, wrong password, ACLs: the services report those as they are)."""
    protocol = settings.security_protocol
    if protocol.endswith("SSL") and any(text in error for text in _WANTS_CLIENT_CERT):
        wants = ("a client certificate (TLS with client certificates, no SASL: a broker's internal "
                 "or controller listener)")
    elif protocol.endswith("SSL") and _NO_TLS in error:
        wants = "no TLS (a PLAINTEXT listener)"
    elif protocol == "SASL_PLAINTEXT" and _NO_SASL.search(error):
        wants = "no SASL (a PLAINTEXT or SSL listener)"
    else:
        return None
    match = _ADDRESS.match(error)
    address = match["address"] if match else "the bootstrap address"
    return (f"KAFKA_BOOTSTRAP_SERVERS={settings.bootstrap_servers} with KAFKA_SECURITY_PROTOCOL="
            f"{protocol}: the listener at {address} wants {wants}; connect to the brokers' client "
            f"listener instead (port 9092 unless cryptomon_kafka_port says otherwise) "
            f"[librdkafka: {error}]")
